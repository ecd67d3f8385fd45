//! Unit tests of the migration controller (`migration.rs`).

use super::*;

fn labels(pairs: &[&str]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|k| (k.to_string(), "true".to_string()))
        .collect()
}

fn skylake() -> BTreeMap<String, String> {
    labels(&[
        "cpu-vendor.node.kubevirt.io/Intel",
        "host-model-cpu.node.kubevirt.io/Skylake-Client-IBRS",
        "host-model-required-features.node.kubevirt.io/avx2",
        "host-model-required-features.node.kubevirt.io/pcid",
        "cpu-feature.node.kubevirt.io/avx2",
        "cpu-model-migration.node.kubevirt.io/Haswell",
    ])
}

fn vmi(model: &str) -> Value {
    json!({"spec": {"domain": {"cpu": {"model": model}}}, "status": {"nodeName": "n1"}})
}

#[test]
fn host_model_target_from_the_source_node() {
    let sel = target_cpu_selectors(&vmi("host-model"), Some(&skylake()), None, &Map::new()).unwrap();
    let keys: Vec<&str> = sel.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec![
            "cpu-feature.node.kubevirt.io/avx2",
            "cpu-feature.node.kubevirt.io/pcid",
            "cpu-model-migration.node.kubevirt.io/Skylake-Client-IBRS",
            "cpu-vendor.node.kubevirt.io/Intel",
        ]
    );
    assert!(sel.values().all(|v| v == "true"));
}

#[test]
fn host_model_target_inherits_the_source_pods_keys() {
    let pod = json!({"spec": {"nodeSelector": {
        "cpu-feature.node.kubevirt.io/sse4": "true",
        "cpu-model-migration.node.kubevirt.io/Broadwell": "true",
        "kubevirt.io/schedulable": "true",
    }}});
    let sel = target_cpu_selectors(&vmi("host-model"), Some(&skylake()), Some(&pod), &Map::new()).unwrap();
    let keys: Vec<&str> = sel.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec![
            "cpu-feature.node.kubevirt.io/sse4",
            "cpu-model-migration.node.kubevirt.io/Broadwell",
            "cpu-vendor.node.kubevirt.io/Intel",
        ]
    );
}

#[test]
fn named_model_gets_only_the_vendor_and_host_model_needs_the_label() {
    let sel = target_cpu_selectors(&vmi("Haswell"), Some(&skylake()), None, &Map::new()).unwrap();
    assert_eq!(
        sel.keys().collect::<Vec<_>>(),
        vec!["cpu-vendor.node.kubevirt.io/Intel"]
    );
    // No vendor label on the source: no vendor key; a template vendor key is kept.
    assert!(
        target_cpu_selectors(&vmi("Haswell"), None, None, &Map::new())
            .unwrap()
            .is_empty()
    );
    let template = Map::from_iter([("cpu-vendor.node.kubevirt.io/AMD".to_string(), json!("true"))]);
    assert!(
        target_cpu_selectors(&vmi("Haswell"), Some(&skylake()), None, &template)
            .unwrap()
            .is_empty()
    );
    let err = target_cpu_selectors(
        &vmi("host-model"),
        Some(&labels(&["cpu-vendor.node.kubevirt.io/Intel"])),
        None,
        &Map::new(),
    )
    .unwrap_err();
    assert!(
        err.contains("NoSuitableNodesForHostModelMigration")
            && err.contains("host-model-cpu.node.kubevirt.io/"),
        "{err}"
    );
}
