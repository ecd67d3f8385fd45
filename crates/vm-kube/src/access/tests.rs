use super::*;

#[test]
fn a_permission_reads_as_rbac_and_kubectl_spell_it() {
    let eviction = Permission::new("create", "", "pods/eviction");
    assert_eq!(eviction.resource_name(), "pods/eviction");
    assert_eq!(eviction.to_string(), "create pods/eviction at cluster scope");
    assert_eq!(eviction.can_i(), "kubectl auth can-i create pods/eviction -A");
    let lease = Permission::new("update", "coordination.k8s.io", "leases").within(Some("kube-system"));
    assert_eq!(
        lease.to_string(),
        "update leases.coordination.k8s.io in namespace kube-system"
    );
    assert_eq!(
        lease.can_i(),
        "kubectl auth can-i update leases.coordination.k8s.io -n kube-system"
    );
    let status = Permission::new("patch", KUBEVIRT, "virtualmachines/status");
    assert_eq!(status.resource_name(), "virtualmachines.kubevirt.io/status");
}

#[test]
fn a_namespaced_read_keeps_nodes_pods_and_cluster_configuration_cluster_wide() {
    let reads = read_cluster(Some("shop"));
    let scope_of = |resource: &str| {
        reads
            .iter()
            .find(|p| p.resource == resource)
            .map(|p| p.namespace.clone())
            .unwrap()
    };
    assert_eq!(scope_of("virtualmachines"), Some("shop".to_string()));
    assert_eq!(scope_of("poddisruptionbudgets"), Some("shop".to_string()));
    assert_eq!(scope_of("nodes"), None);
    assert_eq!(scope_of("pods"), None);
    assert_eq!(scope_of("kubevirts"), None);
    assert!(reads.iter().all(|p| p.verb == "list"));
}

#[test]
fn all_of_lists_each_permission_once() {
    let both = all_of([edit_node(), edit_node(), stop_vms()]);
    assert_eq!(both.len(), 5);
    assert!(both.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn a_role_is_expanded_rule_by_rule() {
    let role: ClusterRole = serde_yaml::from_str(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: r}
rules:
- apiGroups: [""]
  resources: [pods, pods/eviction]
  verbs: [create]
- apiGroups: [kubevirt.io]
  resources: [virtualmachines]
  verbs: [get, patch]
"#,
    )
    .unwrap();
    let granted = granted_by(&role);
    assert_eq!(granted.len(), 4);
    assert!(granted.contains(&("create".into(), String::new(), "pods/eviction".into())));
    assert!(grants(&[Permission::new("create", "", "pods/eviction")]).is_subset(&granted));
    assert!(
        !grants(&stop_vms()).is_subset(&granted),
        "delete VMIs is not granted"
    );
}

#[test]
fn the_refusal_names_every_missing_permission() {
    let err = MissingPermissions(vec![
        Permission::new("create", KUBEVIRT, MIGRATIONS),
        Permission::new("patch", "", "nodes"),
    ]);
    assert_eq!(
        err.to_string(),
        "missing permissions: create virtualmachineinstancemigrations.kubevirt.io at cluster scope, patch nodes at cluster scope"
    );
    let one = MissingPermissions(vec![Permission::new("patch", "", "nodes")]);
    assert_eq!(
        one.to_string(),
        "missing permission: patch nodes at cluster scope"
    );
}
