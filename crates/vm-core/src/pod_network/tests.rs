//! The default pod network and the interface check, after `pkg/network/vmispec/defaults.go`
//! (`SetDefaultNetworkInterface`) and `pkg/network/vmispec/interface.go` (`VerifyVMIMigratable`).

use super::*;
use crate::kubevirt::KubeVirt;

fn spec(yaml: &str) -> VirtualMachineInstanceSpec {
    serde_yaml::from_str(yaml).unwrap()
}

fn cluster(configuration: &str) -> ClusterConfig {
    let kv: KubeVirt = serde_yaml::from_str(&format!(
        "metadata: {{name: kubevirt, namespace: kubevirt}}\nspec: {{configuration: {configuration}}}"
    ))
    .unwrap();
    ClusterConfig::from_crs(&[kv], &[])
}

fn blocker(yaml: &str, annotations: &[&str], cluster: &ClusterConfig) -> Option<InterfaceBlocker> {
    let annotations = annotations
        .iter()
        .map(|a| ((*a).to_string(), String::new()))
        .collect();
    interface_blocker(&spec(yaml), &annotations, cluster)
}

#[test]
fn defaults_go_gives_a_vm_without_interfaces_the_clusters_bridge_which_does_not_migrate() {
    let b = blocker("domain: {}", &[], &ClusterConfig::defaults()).expect("bridge by default");
    assert!(
        b.message.contains("cluster's default binding bridge"),
        "{}",
        b.message
    );
    assert!(b.message.contains("KubeVirt's default"), "{}", b.message);
    assert!(b.fix.contains("masquerade: {}"), "{}", b.fix);
    assert!(b.fix.contains("defaultNetworkInterface: masquerade"), "{}", b.fix);
    // The CR says bridge: named as the source.
    let b = blocker(
        "domain: {}",
        &[],
        &cluster("{network: {defaultNetworkInterface: bridge}}"),
    )
    .unwrap();
    assert!(
        b.message.contains("KubeVirt CR kubevirt/kubevirt"),
        "{}",
        b.message
    );
    // The annotation lets the bridge migrate; masquerade as the cluster default migrates.
    assert_eq!(
        blocker(
            "domain: {}",
            &[ALLOW_BRIDGE_MIGRATION],
            &ClusterConfig::defaults()
        ),
        None
    );
    assert_eq!(
        blocker(
            "domain: {}",
            &[],
            &cluster("{network: {defaultNetworkInterface: masquerade}}")
        ),
        None
    );
}

#[test]
fn defaults_go_adds_nothing_without_autoattach_or_with_declared_networks() {
    let defaults = ClusterConfig::defaults();
    assert_eq!(
        blocker(
            "domain: {devices: {autoattachPodInterface: false}}",
            &[],
            &defaults
        ),
        None
    );
    assert!(!gets_default_interface(&spec(
        "domain: {devices: {autoattachPodInterface: false}}"
    )));
    // A multus-only VM: no pod network, nothing to check.
    assert_eq!(
        blocker(
            "domain: {devices: {interfaces: [{name: sriov, sriov: {}}]}}\nnetworks: [{name: sriov, multus: {networkName: sriov-net}}]",
            &[],
            &defaults
        ),
        None
    );
}

#[test]
fn interface_go_checks_the_declared_pod_interface() {
    let defaults = ClusterConfig::defaults();
    let pod = "\nnetworks: [{name: default, pod: {}}]";
    let bridge = format!("domain: {{devices: {{interfaces: [{{name: default, bridge: {{}}}}]}}}}{pod}");
    assert!(
        blocker(&bridge, &[], &defaults)
            .unwrap()
            .message
            .contains("bridge binding")
    );
    assert_eq!(blocker(&bridge, &[ALLOW_BRIDGE_MIGRATION], &defaults), None);
    for ok in ["masquerade: {}", "passt: {}"] {
        let s = format!("domain: {{devices: {{interfaces: [{{name: default, {ok}}}]}}}}{pod}");
        assert_eq!(blocker(&s, &[], &defaults), None, "{ok}");
    }
    // A binding plugin migrates only when the CR declares it with migration.
    let plugin =
        format!("domain: {{devices: {{interfaces: [{{name: default, binding: {{name: custom}}}}]}}}}{pod}");
    assert!(blocker(&plugin, &[], &defaults).is_some());
    let with =
        cluster("{network: {binding: {custom: {sidecarImage: x, migration: {method: link-refresh}}}}}");
    assert_eq!(blocker(&plugin, &[], &with), None);
    // The pod network without its interface: KubeVirt refuses.
    let missing = format!("domain: {{devices: {{interfaces: [{{name: other, masquerade: {{}}}}]}}}}{pod}");
    assert!(blocker(&missing, &[], &defaults).is_some());
}
