//! Unit tests of the VMI controller (`vmi.rs`).

use super::*;
use crate::kubevirt::config::ClusterConfig;

fn world(config: ClusterConfig) -> World {
    World {
        config,
        pvcs: Default::default(),
        nodes_down: Default::default(),
        now: "2024-01-01T00:00:00Z".into(),
        pods_expected: Default::default(),
        no_pvcs: Default::default(),
        start_backoff_base_ms: 10_000,
        nads: Default::default(),
        node_labels: Default::default(),
    }
}

#[test]
fn webhook_defaults_cpu_model_architecture_and_machine() {
    let mut v = json!({"metadata": {"name": "v"}, "spec": {"domain": {"resources": {"requests": {"memory": "1Gi"}}}}});
    apply_defaults(&mut v, &world(ClusterConfig::default()));
    assert_eq!(v["spec"]["domain"]["cpu"]["model"], "host-model");
    assert_eq!(v["spec"]["architecture"], "amd64");
    assert_eq!(v["spec"]["domain"]["machine"]["type"], "q35");
    assert_eq!(v["spec"]["domain"]["memory"]["guest"], "1Gi");
    assert_eq!(v["spec"]["evictionStrategy"], "None");

    // What is set stays; the cluster's cpuModel is the default on amd64 ...
    let cfg = ClusterConfig {
        cpu_model: Some("Haswell".into()),
        ..ClusterConfig::default()
    };
    let mut v = json!({"spec": {"domain": {"cpu": {"cores": 2}}}});
    apply_defaults(&mut v, &world(cfg.clone()));
    assert_eq!(
        v["spec"]["domain"]["cpu"],
        json!({"cores": 2, "model": "Haswell"})
    );
    // ... but not on arm64, whose defaults set host-passthrough first.
    let mut v = json!({"spec": {"architecture": "arm64", "domain": {"cpu": {"cores": 2}}}});
    apply_defaults(&mut v, &world(cfg));
    assert_eq!(
        v["spec"]["domain"]["cpu"],
        json!({"cores": 2, "model": "host-passthrough"})
    );
    assert_eq!(v["spec"]["domain"]["machine"]["type"], "virt");
    // No host-model: no obsolete-host-model term, no model selector; +128Mi overhead.
    assert!(launcher::affinity(&v).is_null());
    assert!(
        !launcher::node_selector(&v, &ClusterConfig::default())
            .keys()
            .any(|k| k.starts_with(launcher::CPU_MODEL_PREFIX))
    );
    let mut v =
        json!({"spec": {"domain": {"cpu": {"model": "EPYC"}, "machine": {"type": "pc-q35-rhel9.6.0"}}}});
    apply_defaults(&mut v, &world(ClusterConfig::default()));
    assert_eq!(v["spec"]["domain"]["cpu"]["model"], "EPYC");
    assert_eq!(v["spec"]["domain"]["machine"]["type"], "pc-q35-rhel9.6.0");
    // arm64 without a cluster model: host-passthrough.
    let mut v = json!({"spec": {"architecture": "arm64", "domain": {}}});
    apply_defaults(&mut v, &world(ClusterConfig::default()));
    assert_eq!(v["spec"]["domain"]["cpu"]["model"], "host-passthrough");
}

#[test]
fn webhook_defaults_the_pod_network_and_the_cpu_request() {
    // No interfaces, no networks: the pod network with bridge, not live-migratable.
    let mut v = json!({"metadata": {"name": "v"}, "spec": {"domain": {
        "resources": {"limits": {"cpu": "2", "memory": "2Gi"}}}}});
    apply_defaults(&mut v, &world(ClusterConfig::default()));
    assert_eq!(v["spec"]["domain"]["resources"]["requests"]["cpu"], "2");
    assert_eq!(
        v["spec"]["domain"]["devices"]["interfaces"],
        json!([{"name": "default", "bridge": {}}])
    );
    let pvcs = migratable::PvcAccessModes::new();
    assert_eq!(
        migratable::live_migratable(&v, &pvcs, true).1,
        "InterfaceNotLiveMigratable"
    );
    // ... unless the VMI carries the opt-in annotation.
    v["metadata"]["annotations"]["kubevirt.io/allow-pod-bridge-network-live-migration"] = json!("");
    assert!(migratable::live_migratable(&v, &pvcs, true).0);
    // A cluster default of masquerade: migratable.
    let cfg = ClusterConfig {
        default_network_interface: "masquerade".into(),
        ..ClusterConfig::default()
    };
    let mut v = json!({"metadata": {"name": "v"}, "spec": {"domain": {}}});
    apply_defaults(&mut v, &world(cfg));
    assert!(migratable::live_migratable(&v, &pvcs, true).0);
}
