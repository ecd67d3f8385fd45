//! The permissions each way of running `kubectl vm-recover` needs, checked before the run
//! changes anything (see [`vm_kube::access`]).

use vm_kube::access::{self, Permission};

/// The ClusterRole in `deploy/rbac/` that grants everything any run needs.
pub const ROLE: &str = "vm-recover";

/// The assessment (and `--dry-run`): the whole cluster, the node's Lease, the VolumeAttachments.
#[must_use]
pub fn assess() -> Vec<Permission> {
    access::all_of([access::read_cluster(None), access::read_recovery_evidence()])
}

/// `--cleanup`: the out-of-service taint removed.
#[must_use]
pub fn cleanup() -> Vec<Permission> {
    access::all_of([assess(), access::edit_node()])
}

/// A Ready node: cordoned, its VMs live-migrated under the node's lock.
#[must_use]
pub fn live_migration(lock_namespace: &str) -> Vec<Permission> {
    access::all_of([
        assess(),
        access::hold_lock(lock_namespace),
        access::edit_node(),
        access::migrate(),
    ])
}

/// A node that is down: tainted out-of-service, its launcher pods and volume attachments
/// removed, its VMs followed until they run elsewhere (and started, with `--start-stopped`).
#[must_use]
pub fn fencing(lock_namespace: &str, start_stopped: bool) -> Vec<Permission> {
    access::all_of([
        assess(),
        access::hold_lock(lock_namespace),
        access::edit_node(),
        access::fence(),
        access::follow_restarts(start_stopped),
    ])
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::ClusterRole;

    use super::*;

    /// Everything any run may need: what the ClusterRole `ROLE` grants.
    fn every(lock_namespace: &str) -> Vec<Permission> {
        access::all_of([
            cleanup(),
            live_migration(lock_namespace),
            fencing(lock_namespace, true),
        ])
    }

    #[test]
    fn the_role_grants_exactly_what_the_plugin_needs() {
        let role: ClusterRole =
            serde_yaml::from_str(include_str!("../../../deploy/rbac/vm-recover.yaml")).unwrap();
        access::exact_role(&role, ROLE, &every("kube-system")).unwrap();
    }
}
