//! The permissions a live `kubectl vm-audit` needs, checked before it lists anything (see
//! [`vm_kube::access`]). Manifests (`-f`) need none.

use vm_kube::access::{self, Permission};

/// The ClusterRole in `deploy/rbac/` that grants what any audit needs.
pub const ROLE: &str = "vm-audit";

/// Reading the cluster, with the VM-like objects in `namespace` (`None`: every namespace).
#[must_use]
pub fn audit(namespace: Option<&str>) -> Vec<Permission> {
    access::read_cluster(namespace)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::ClusterRole;

    use super::*;

    #[test]
    fn the_role_grants_exactly_what_the_plugin_needs() {
        let role: ClusterRole =
            serde_yaml::from_str(include_str!("../../../deploy/rbac/vm-audit.yaml")).unwrap();
        access::exact_role(&role, ROLE, &audit(None)).unwrap();
    }
}
