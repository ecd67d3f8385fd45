//! The permissions each way of running `kubectl vm-drain-safe` needs, checked before the run
//! changes anything (see [`vm_kube::access`]).

use vm_kube::access::{self, Permission};

/// The ClusterRole in `deploy/rbac/` that grants everything any run needs.
pub const ROLE: &str = "vm-drain-safe";

/// `--dry-run`: the plan reads the whole cluster.
#[must_use]
pub fn plan() -> Vec<Permission> {
    access::read_cluster(None)
}

/// A drain. It also needs what [`uncordon`] needs: a user who could drain a node but not give
/// it back, nor restart the VMs the drain stopped, is refused before the node is cordoned.
#[must_use]
pub fn drain(lock_namespace: &str) -> Vec<Permission> {
    access::all_of([
        plan(),
        access::hold_lock(lock_namespace),
        access::edit_node(),
        access::migrate(),
        access::evict_pods(),
        access::stop_vms(),
        uncordon(lock_namespace),
    ])
}

/// `--uncordon`: the node schedulable again, the VMs the drain stopped started, under the
/// node's lock (taken, so that a drain still at work is refused, then freed).
#[must_use]
pub fn uncordon(lock_namespace: &str) -> Vec<Permission> {
    access::all_of([
        access::edit_node(),
        access::start_vms(),
        access::hold_lock(lock_namespace),
    ])
}

/// `--rolling --status`: the round's state.
#[must_use]
pub fn status(lock_namespace: &str) -> Vec<Permission> {
    access::read_round(lock_namespace)
}

/// Running a rolling round (or `--continue`, or `--abort`): a drain's rights, the round's
/// record, and labelling nodes for steering (patch, as cordoning; list, to find the labelled
/// ones), which [`drain`] already covers.
#[must_use]
pub fn round(lock_namespace: &str) -> Vec<Permission> {
    access::all_of([drain(lock_namespace), access::record_round(lock_namespace)])
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::ClusterRole;

    use super::*;

    /// Everything any run may need: what the ClusterRole `ROLE` grants.
    fn every(lock_namespace: &str) -> Vec<Permission> {
        access::all_of([
            plan(),
            drain(lock_namespace),
            uncordon(lock_namespace),
            status(lock_namespace),
            round(lock_namespace),
        ])
    }

    #[test]
    fn the_role_grants_exactly_what_the_plugin_needs() {
        let role: ClusterRole =
            serde_yaml::from_str(include_str!("../../../deploy/rbac/vm-drain-safe.yaml")).unwrap();
        access::exact_role(&role, ROLE, &every("kube-system")).unwrap();
    }
}
