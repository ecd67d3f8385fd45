//! The target additions of the reference's §3, row by row.

use super::*;

fn node(name: &str, labels: &[&str]) -> Node {
    let labels: String = labels.iter().map(|l| format!("{l}: 'true', ")).collect();
    serde_yaml::from_str(&format!("metadata: {{name: {name}, labels: {{{labels}}}}}")).unwrap()
}

fn vmi(yaml: &str) -> VirtualMachineInstance {
    serde_yaml::from_str(&format!(
        "metadata: {{name: vm, namespace: ns, uid: u1}}\nstatus: {{nodeName: n1, phase: Running}}\n{yaml}"
    ))
    .unwrap()
}

const SKYLAKE: &[&str] = &[
    "cpu-vendor.node.kubevirt.io/Intel",
    "host-model-cpu.node.kubevirt.io/Skylake-Client-IBRS",
    "host-model-required-features.node.kubevirt.io/avx512f",
];

fn snapshot(nodes: Vec<Node>, pods: Vec<Pod>) -> ClusterSnapshot {
    ClusterSnapshot {
        nodes,
        pods,
        ..Default::default()
    }
}

#[test]
fn a_host_model_target_needs_the_source_vendor_model_and_features() {
    let s = snapshot(vec![node("n1", SKYLAKE)], vec![]);
    let v = vmi("spec: {domain: {resources: {requests: {memory: 1Gi}}}}");
    let (c, _) = migration_target(&s, &v, &ClusterConfig::defaults()).unwrap();
    for key in [
        "cpu-vendor.node.kubevirt.io/Intel",
        "cpu-model-migration.node.kubevirt.io/Skylake-Client-IBRS",
        "cpu-feature.node.kubevirt.io/avx512f",
    ] {
        assert_eq!(
            c.node_selector.get(key).map(String::as_str),
            Some("true"),
            "{key}: {c:?}"
        );
    }
    assert_eq!(
        c.origins["cpu-model-migration.node.kubevirt.io/Skylake-Client-IBRS"],
        "host-model on node n1"
    );
}

#[test]
fn a_named_model_keeps_only_the_vendor_and_its_model() {
    let mut labels = SKYLAKE.to_vec();
    labels.push("cpu-model.node.kubevirt.io/Haswell-noTSX");
    let s = snapshot(vec![node("n1", &labels)], vec![]);
    let v = vmi("spec: {domain: {cpu: {model: Haswell-noTSX}, resources: {requests: {memory: 1Gi}}}}");
    let (c, _) = migration_target(&s, &v, &ClusterConfig::defaults()).unwrap();
    assert!(c.node_selector.contains_key("cpu-vendor.node.kubevirt.io/Intel"));
    assert!(
        c.node_selector
            .contains_key("cpu-model.node.kubevirt.io/Haswell-noTSX")
    );
    assert!(
        !c.node_selector
            .keys()
            .any(|k| k.starts_with(MIGRATION_MODEL_PREFIX)),
        "{c:?}"
    );
}

#[test]
fn selectors_of_an_earlier_migration_are_carried_forward_from_the_pod() {
    // The pod on n1 is itself a former target: its host-model selectors name Cascadelake, and
    // n1's own labels (Skylake) are not consulted.
    let pod: Pod = serde_yaml::from_str(
        "metadata: {name: virt-launcher-vm-abc, namespace: ns, labels: {kubevirt.io/created-by: u1}}
spec:
  nodeName: n1
  nodeSelector: {kubevirt.io/schedulable: 'true', cpu-model-migration.node.kubevirt.io/Cascadelake-Server: 'true'}
  containers: [{name: compute, resources: {requests: {cpu: 100m, memory: 1290Mi}, limits: {devices.kubevirt.io/kvm: '1'}}}]
status: {phase: Running}",
    )
    .unwrap();
    let s = snapshot(vec![node("n1", SKYLAKE)], vec![pod]);
    let v = vmi("spec: {domain: {resources: {requests: {memory: 1Gi}}}}");
    let (c, r) = migration_target(&s, &v, &ClusterConfig::defaults()).unwrap();
    assert!(
        c.node_selector
            .contains_key("cpu-model-migration.node.kubevirt.io/Cascadelake-Server")
    );
    assert!(
        !c.node_selector
            .contains_key("cpu-model-migration.node.kubevirt.io/Skylake-Client-IBRS")
    );
    assert!(c.node_selector.contains_key("cpu-vendor.node.kubevirt.io/Intel"));
    assert_eq!(
        r.get("devices.kubevirt.io/kvm"),
        1.0,
        "a limit alone is the request"
    );
    assert_eq!(r.memory, 1290.0 * 1024.0 * 1024.0, "the pod's own requests");
}

#[test]
fn no_host_model_label_on_the_source_means_no_target_pod() {
    let s = snapshot(vec![node("n1", &[]), node("n2", SKYLAKE)], vec![]);
    let v = vmi("spec: {domain: {resources: {requests: {memory: 1Gi}}}}");
    let err = migration_target(&s, &v, &ClusterConfig::defaults()).unwrap_err();
    assert!(err.contains("NoSuitableNodesForHostModelMigration"), "{err}");
    // A cluster whose nodes carry no labeller labels at all: nothing to check.
    let s = snapshot(vec![node("n1", &[]), node("n2", &[])], vec![]);
    assert!(migration_target(&s, &v, &ClusterConfig::defaults()).is_ok());
}

#[test]
fn rendering_adds_cpu_manager_and_required_features() {
    let v = vmi(
        "spec: {domain: {cpu: {cores: 2, dedicatedCpuPlacement: true, features: [{name: vmx}, {name: pcid, policy: optional}, {name: x2apic, policy: require}]}}}",
    );
    let c = rendered_constraints(&v, &ClusterConfig::defaults());
    assert_eq!(
        c.node_selector.get(CPU_MANAGER_LABEL).map(String::as_str),
        Some("true")
    );
    assert!(c.node_selector.contains_key("cpu-feature.node.kubevirt.io/vmx"));
    assert!(
        c.node_selector
            .contains_key("cpu-feature.node.kubevirt.io/x2apic")
    );
    assert!(!c.node_selector.contains_key("cpu-feature.node.kubevirt.io/pcid"));
}

#[test]
fn selectors_of_label_families_no_node_carries_are_not_checked() {
    // Hand-written nodes without labeller labels: a named model cannot be judged.
    let s = snapshot(vec![node("n1", &[]), node("n2", &[])], vec![]);
    let v = vmi(
        "spec: {domain: {cpu: {model: Haswell-noTSX, dedicatedCpuPlacement: true}, resources: {requests: {memory: 1Gi}}}}",
    );
    let (c, _) = migration_target(&s, &v, &ClusterConfig::defaults()).unwrap();
    assert!(c.node_selector.is_empty(), "{c:?}");
}
