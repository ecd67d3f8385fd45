//! Unit tests of the simulated nodes' Node objects (`nodes.rs`).

use super::*;

fn scenario_node(yaml: &str) -> NodeTemplate {
    let node: Node = serde_yaml::from_str(yaml).unwrap();
    NodeTemplate::from_node(&node, &NodeTemplate::worker("", "32", "128Gi", "110")).unwrap()
}

fn status(t: &NodeTemplate) -> NodeStatus {
    ready_status(&t.to_node(), 1, Time(jiff::Timestamp::UNIX_EPOCH))
}

fn q(m: &Option<BTreeMap<String, Quantity>>, k: &str) -> Option<String> {
    m.as_ref()?.get(k).map(|q| q.0.clone())
}

#[test]
fn default_workers_carry_a_cpu_identity_and_the_kubevirt_devices() {
    let w = NodeTemplate::worker("node-1", "32", "128Gi", "110");
    for l in [
        "cpu-vendor.node.kubevirt.io/Intel",
        "host-model-cpu.node.kubevirt.io/Skylake-Client-IBRS",
        "cpu-model-migration.node.kubevirt.io/Skylake-Client-IBRS",
        "cpu-model.node.kubevirt.io/Skylake-Client-IBRS",
        "host-model-required-features.node.kubevirt.io/vmx",
        "cpu-feature.node.kubevirt.io/vmx",
        "machine-type.node.kubevirt.io/q35",
        "machine-type.node.kubevirt.io/pc-q35-rhel9.6.0",
    ] {
        assert_eq!(w.labels.get(l).map(String::as_str), Some("true"), "{l}");
    }
    let s = status(&w);
    for d in KUBEVIRT_DEVICES {
        assert_eq!(q(&s.capacity, d).as_deref(), Some("1000"));
        assert_eq!(q(&s.allocatable, d).as_deref(), Some("1000"));
    }
    assert_eq!(q(&s.capacity, "cpu").as_deref(), Some("32"));
    assert_eq!(q(&s.allocatable, "ephemeral-storage").as_deref(), Some("100Gi"));
}

#[test]
fn labeller_labels_without_machine_types_get_the_defaults_and_say_so() {
    let amd = scenario_node("metadata: {name: a, labels: {cpu-vendor.node.kubevirt.io/AMD: \"true\"}}");
    assert_eq!(amd.labels["machine-type.node.kubevirt.io/q35"], "true");
    assert_eq!(
        amd.labels["machine-type.node.kubevirt.io/pc-q35-rhel9.6.0"],
        "true"
    );
    assert_eq!(
        amd.annotations[FILLED_LABELS_ANNOTATION],
        "machine-type.node.kubevirt.io/q35,machine-type.node.kubevirt.io/pc-q35-rhel9.6.0"
    );
    let arm = scenario_node(
        "metadata: {name: b, labels: {kubernetes.io/arch: arm64, cpu-feature.node.kubevirt.io/x: \"true\"}}",
    );
    assert_eq!(
        arm.annotations[FILLED_LABELS_ANNOTATION],
        "machine-type.node.kubevirt.io/virt"
    );
    // Written machine types, or a CPU annotation that names them (even none), are kept.
    let written = scenario_node(
        "metadata: {name: c, labels: {cpu-vendor.node.kubevirt.io/AMD: \"true\", machine-type.node.kubevirt.io/q35: \"true\"}}",
    );
    assert!(!written.annotations.contains_key(FILLED_LABELS_ANNOTATION));
    assert!(
        !written
            .labels
            .contains_key("machine-type.node.kubevirt.io/pc-q35-rhel9.6.0")
    );
    let none = scenario_node(
        "metadata: {name: d, annotations: {sandbox.kubevirt-sim.io/cpu: \"vendor=AMD machine-types=\"}}",
    );
    assert!(!none.labels.keys().any(|k| k.starts_with("machine-type.")));
}

#[test]
fn an_arm64_scenario_node_gets_no_intel_identity_but_the_virt_machine_type() {
    let t = scenario_node("metadata:\n  name: arm-1\n  labels: {kubernetes.io/arch: arm64}\n");
    let labels = t.to_node().metadata.labels.unwrap();
    assert_eq!(labels["kubernetes.io/arch"], "arm64");
    assert_eq!(labels["machine-type.node.kubevirt.io/virt"], "true");
    assert!(
        !labels
            .keys()
            .any(|k| k.starts_with("machine-type.node.kubevirt.io/pc-q35")
                || k == "machine-type.node.kubevirt.io/q35")
    );
    assert!(!labels.keys().any(|k| k.starts_with("cpu-model")
        || k.starts_with("cpu-feature.")
        || k.starts_with("cpu-vendor.")
        || k.starts_with("host-model")));
}

#[test]
fn scenario_nodes_keep_what_they_say() {
    let t = scenario_node(
        r#"
metadata:
  name: gpu-1
  labels: {accelerator: a100, cpu-vendor.node.kubevirt.io/AMD: "true"}
  annotations: {team: ml}
spec: {unschedulable: true}
status:
  capacity: {cpu: "64", memory: 512Gi, hugepages-1Gi: 64Gi, nvidia.com/gpu: "8", devices.kubevirt.io/kvm: "0"}
  allocatable: {cpu: "62", memory: 500Gi, hugepages-1Gi: 64Gi, nvidia.com/gpu: "8"}
"#,
    );
    assert!(t.unschedulable);
    let node = t.to_node();
    assert_eq!(node.spec.as_ref().unwrap().unschedulable, Some(true));
    assert_eq!(node.metadata.annotations.as_ref().unwrap()["team"], "ml");
    let labels = node.metadata.labels.clone().unwrap();
    assert_eq!(labels["accelerator"], "a100");
    // It has a labeller label: no default identity is added.
    assert!(!labels.keys().any(|k| k.starts_with("host-model-cpu.")));
    let s = status(&t);
    assert_eq!(q(&s.capacity, "cpu").as_deref(), Some("64"));
    assert_eq!(q(&s.allocatable, "cpu").as_deref(), Some("62"));
    assert_eq!(q(&s.allocatable, "memory").as_deref(), Some("500Gi"));
    assert_eq!(q(&s.capacity, "nvidia.com/gpu").as_deref(), Some("8"));
    assert_eq!(q(&s.allocatable, "hugepages-1Gi").as_deref(), Some("64Gi"));
    assert_eq!(q(&s.capacity, "devices.kubevirt.io/kvm").as_deref(), Some("0"));
    assert_eq!(q(&s.allocatable, "devices.kubevirt.io/kvm").as_deref(), Some("0"));
    assert_eq!(
        q(&s.allocatable, "devices.kubevirt.io/tun").as_deref(),
        Some("1000")
    );
    assert_eq!(q(&s.allocatable, "pods").as_deref(), Some("110"));
}

#[test]
fn cpu_annotation_expands_to_labeller_labels() {
    let t = scenario_node(
        r#"
metadata:
  name: amd-1
  annotations:
    sandbox.kubevirt-sim.io/cpu: "vendor=AMD model=EPYC-Milan features=avx2,sev models=EPYC-Rome"
    sandbox.kubevirt-sim.io/kvm: "false"
  labels: {cpu-feature.node.kubevirt.io/sev: "false"}
"#,
    );
    let l = &t.labels;
    for k in [
        "cpu-vendor.node.kubevirt.io/AMD",
        "host-model-cpu.node.kubevirt.io/EPYC-Milan",
        "cpu-model.node.kubevirt.io/EPYC-Milan",
        "cpu-model-migration.node.kubevirt.io/EPYC-Milan",
        "cpu-model.node.kubevirt.io/EPYC-Rome",
        "cpu-model-migration.node.kubevirt.io/EPYC-Rome",
        "host-model-required-features.node.kubevirt.io/avx2",
        "cpu-feature.node.kubevirt.io/avx2",
        "machine-type.node.kubevirt.io/q35",
    ] {
        assert_eq!(l.get(k).map(String::as_str), Some("true"), "{k}");
    }
    // Written labels win.
    assert_eq!(l["cpu-feature.node.kubevirt.io/sev"], "false");
    assert!(!l.keys().any(|k| k.contains("Intel") || k.contains("Skylake")));
    assert_eq!(t.capacity()["devices.kubevirt.io/kvm"], "0");
    // A plain scenario node looks like a default worker.
    let plain = scenario_node("metadata: {name: n}\n");
    assert!(plain.labels.contains_key("cpu-vendor.node.kubevirt.io/Intel"));
    assert!(cpu_labels("vendor").is_err());
    assert!(cpu_labels("colour=red").is_err());
}

#[test]
fn old_flat_capacity_annotation_is_read() {
    let mut node = NodeTemplate::worker("n", "8", "16Gi", "50").to_node();
    node.metadata.annotations = Some(BTreeMap::from([(
        CAPACITY_ANNOTATION.to_string(),
        r#"{"cpu": "8", "memory": "16Gi", "pods": "50"}"#.to_string(),
    )]));
    let s = ready_status(&node, 1, Time(jiff::Timestamp::UNIX_EPOCH));
    assert_eq!(q(&s.allocatable, "cpu").as_deref(), Some("8"));
}
