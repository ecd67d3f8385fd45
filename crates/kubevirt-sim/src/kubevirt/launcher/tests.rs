//! Unit tests of the launcher pod renderer (`launcher.rs` and its modules).

use super::*;
use crate::quantity;

fn vmi() -> Value {
    json!({
        "metadata": {"name": "db.example", "namespace": "prod", "uid": "u-1", "labels": {"app": "db"},
                      "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "a"}},
        "spec": {
            "domain": {"cpu": {"cores": 2}, "resources": {"requests": {"memory": "2Gi"}}, "devices": {}},
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "k", "operator": "Exists"}],
        }
    })
}

#[test]
fn pod_carries_kubevirt_metadata_and_placement() {
    let pod = render(&vmi(), &ClusterConfig::default(), None);
    assert_eq!(pod["metadata"]["generateName"], "virt-launcher-db.example-");
    let labels = &pod["metadata"]["labels"];
    assert_eq!(labels["kubevirt.io"], "virt-launcher");
    assert_eq!(labels["kubevirt.io/created-by"], "u-1");
    assert_eq!(labels["vm.kubevirt.io/name"], "db");
    assert_eq!(labels["app"], "db");
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["kubevirt.io/domain"], "db.example");
    assert_eq!(ann["team"], "a");
    assert!(
        ann.get("kubectl.kubernetes.io/last-applied-configuration")
            .is_none()
    );
    assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(pod["spec"]["nodeSelector"]["kubevirt.io/schedulable"], "true");
    assert_eq!(pod["spec"]["nodeSelector"]["disk"], "ssd");
    assert_eq!(pod["spec"]["tolerations"][0]["key"], "k");
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 60);
}

#[test]
fn pvc_and_data_volume_disks_are_mounted_as_claims() {
    let mut v = vmi();
    v["spec"]["volumes"] = json!([
        {"name": "root", "containerDisk": {"image": "fedora"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "db-data"}},
        {"name": "boot", "dataVolume": {"name": "db-boot"}},
    ]);
    let pod = render(&v, &ClusterConfig::default(), None);
    let claims: Vec<(&str, &str)> = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| {
            Some((
                v["name"].as_str()?,
                v.pointer("/persistentVolumeClaim/claimName")?.as_str()?,
            ))
        })
        .collect();
    assert_eq!(claims, vec![("data", "db-data"), ("boot", "db-boot")]);
}

#[test]
fn requests_include_overhead() {
    let pod = render(&vmi(), &ClusterConfig::default(), None);
    let req = &pod["spec"]["containers"][0]["resources"]["requests"];
    // Reference §2: 2 vCPUs / cpuAllocationRatio 10 = 200m (IOThreads add nothing unless
    // a supplemental pool is set).
    assert_eq!(req["cpu"], "200m");
    // 2Gi + 4Mi page tables + 240Mi + 16Mi vCPUs + 8Mi IOThread + 32Mi video.
    assert_eq!(req["memory"], "2348Mi");
    assert_eq!(req["ephemeral-storage"], "50M");
}

fn plain(cpu: Value, resources: Value) -> Value {
    json!({"metadata": {"name": "v", "uid": "u"}, "spec": {"architecture": "amd64",
        "domain": {"cpu": cpu, "resources": resources, "devices": {}}}})
}

const MIB: u64 = 1 << 20;

#[test]
fn memory_overhead_matches_the_reference_checks() {
    // hypervisorbackend_test: 1Gi request, 1 vCPU, defaults → 290Mi.
    let v = plain(json!({}), json!({"requests": {"memory": "1Gi"}}));
    assert_eq!(memory_overhead(&v), 290 * MIB);
    // 2 vCPUs with 4Gi → 304Mi + 1 byte.
    let v = plain(json!({"cores": 2}), json!({"requests": {"memory": "4Gi"}}));
    assert_eq!(memory_overhead(&v), 304 * MIB + 1);
    // Instancetype VM: 2 vCPUs, only a guest size → no page tables: 296Mi.
    let mut v = plain(json!({"sockets": 2}), json!({}));
    v["spec"]["domain"]["memory"] = json!({"guest": "4Gi"});
    assert_eq!(memory_overhead(&v), 296 * MIB);
    // ... + 250Mi with passt.
    v["spec"]["domain"]["devices"]["interfaces"] = json!([{"name": "default", "passt": {}}]);
    assert_eq!(memory_overhead(&v), 546 * MIB);
    // Exec probes: 10Mi each + 100Mi once.
    let mut v = plain(json!({}), json!({"requests": {"memory": "1Gi"}}));
    v["spec"]["readinessProbe"] = json!({"exec": {"command": ["true"]}});
    v["spec"]["livenessProbe"] = json!({"exec": {"command": ["true"]}});
    assert_eq!(memory_overhead(&v), 410 * MIB);
    // VFIO (+1Gi), TPM (+53Mi), no video (−32Mi).
    let mut v = plain(json!({}), json!({"requests": {"memory": "1Gi"}}));
    v["spec"]["domain"]["devices"] = json!({"gpus": [{"name": "g", "deviceName": "nvidia.com/A100"}], "tpm": {}, "autoattachGraphicsDevice": false});
    assert_eq!(memory_overhead(&v), (290 + 1024 + 53 - 32) * MIB);
    // arm64: +128Mi.
    let mut v = plain(json!({}), json!({"requests": {"memory": "1Gi"}}));
    v["spec"]["architecture"] = json!("arm64");
    assert_eq!(memory_overhead(&v), 418 * MIB);
}

#[test]
fn plain_vm_requests() {
    // 2Gi, 1 vCPU: 2Gi + 292Mi = 2340Mi; 100m.
    let v = plain(json!({"cores": 1}), json!({"requests": {"memory": "2Gi"}}));
    let r = resources(&v, &ClusterConfig::default());
    assert_eq!(r["requests"]["memory"], "2340Mi");
    assert_eq!(r["requests"]["cpu"], "100m");
    assert_eq!(r["limits"]["devices.kubevirt.io/kvm"], "1");
    assert_eq!(r["limits"]["devices.kubevirt.io/tun"], "1");
    assert_eq!(r["limits"]["devices.kubevirt.io/vhost-net"], "1");
    assert!(r["requests"].get("devices.kubevirt.io/kvm").is_none());
    assert!(r["limits"].get("memory").is_none());
    // 4 vCPUs = 400m, 16 = 1.6.
    let v = plain(
        json!({"sockets": 2, "cores": 2}),
        json!({"requests": {"memory": "1Gi"}}),
    );
    assert_eq!(
        resources(&v, &ClusterConfig::default())["requests"]["cpu"],
        "400m"
    );
    let v = plain(
        json!({"sockets": 2, "cores": 4, "threads": 2}),
        json!({"requests": {"memory": "1Gi"}}),
    );
    assert_eq!(
        resources(&v, &ClusterConfig::default())["requests"]["cpu"],
        "1600m"
    );
    // Supplemental IOThreads count; an explicit request wins.
    let mut v = plain(json!({"cores": 2}), json!({"requests": {"memory": "1Gi"}}));
    v["spec"]["domain"]["ioThreads"] = json!({"supplementalPoolThreadCount": 2});
    assert_eq!(
        resources(&v, &ClusterConfig::default())["requests"]["cpu"],
        "400m"
    );
    let v = plain(
        json!({"cores": 2}),
        json!({"requests": {"memory": "1Gi", "cpu": "1500m"}}),
    );
    assert_eq!(
        resources(&v, &ClusterConfig::default())["requests"]["cpu"],
        "1500m"
    );
    // Another ratio: 1 vCPU / 3 rounds up to 334m.
    let cfg = ClusterConfig {
        cpu_allocation_ratio: 3,
        ..ClusterConfig::default()
    };
    let v = plain(json!({"cores": 1}), json!({"requests": {"memory": "1Gi"}}));
    assert_eq!(resources(&v, &cfg)["requests"]["cpu"], "334m");
    // memoryOvercommit 200: a guest-only VMI requests half its guest memory (+ overhead).
    let cfg = ClusterConfig {
        memory_overcommit: 200,
        ..ClusterConfig::default()
    };
    let mut v = plain(json!({"cores": 1}), json!({}));
    v["spec"]["domain"]["memory"] = json!({"guest": "2Gi"});
    assert_eq!(resources(&v, &cfg)["requests"]["memory"], "1312Mi");
}

#[test]
fn dedicated_cpus_with_hugepages() {
    let mut v = plain(
        json!({"cores": 2, "dedicatedCpuPlacement": true}),
        json!({"requests": {"memory": "4Gi"}}),
    );
    v["spec"]["domain"]["memory"] = json!({"guest": "4Gi", "hugepages": {"pageSize": "1Gi"}});
    let r = resources(&v, &ClusterConfig::default());
    assert_eq!(r["requests"]["cpu"], "2");
    assert_eq!(r["limits"]["cpu"], "2");
    assert_eq!(r["requests"]["hugepages-1Gi"], "4096Mi");
    assert_eq!(r["limits"]["hugepages-1Gi"], "4096Mi");
    // Overhead only: 8Mi + 1 byte page tables + 240 + 16 + 8 + 32 + 100 (dedicated).
    let mem = (404 * MIB + 1).to_string();
    assert_eq!(r["requests"]["memory"], mem);
    assert_eq!(r["limits"]["memory"], mem);
    // isolateEmulatorThread: +1 CPU.
    v["spec"]["domain"]["cpu"]["isolateEmulatorThread"] = json!(true);
    let r = resources(&v, &ClusterConfig::default());
    assert_eq!(r["requests"]["cpu"], "3");
    assert_eq!(r["limits"]["cpu"], "3");
    // A memory request above the guest size adds the difference.
    let mut v = plain(json!({"cores": 1}), json!({"requests": {"memory": "3Gi"}}));
    v["spec"]["domain"]["memory"] = json!({"guest": "2Gi", "hugepages": {"pageSize": "2Mi"}});
    let r = resources(&v, &ClusterConfig::default());
    assert_eq!(r["requests"]["hugepages-2Mi"], "2048Mi");
    assert_eq!(
        quantity::bytes(r["requests"]["memory"].as_str().unwrap()),
        Some(memory_overhead(&v) + 1024 * MIB)
    );
}

#[test]
fn device_plugin_limits() {
    let mut v = plain(json!({}), json!({"requests": {"memory": "1Gi"}}));
    v["spec"]["domain"]["devices"] = json!({
        "interfaces": [{"name": "default", "masquerade": {}, "model": "e1000"}],
        "gpus": [{"name": "a", "deviceName": "nvidia.com/A100"}, {"name": "b", "deviceName": "nvidia.com/A100"}],
        "hostDevices": [{"name": "h", "deviceName": "intel.com/qat"}],
    });
    let r = resources(&v, &ClusterConfig::default());
    assert_eq!(r["limits"]["devices.kubevirt.io/kvm"], "1");
    assert_eq!(r["limits"]["devices.kubevirt.io/tun"], "1");
    assert!(r["limits"].get("devices.kubevirt.io/vhost-net").is_none());
    assert_eq!(r["limits"]["nvidia.com/A100"], "2");
    assert_eq!(r["limits"]["intel.com/qat"], "1");
    // No pod interface at all.
    let mut v = plain(json!({}), json!({"requests": {"memory": "1Gi"}}));
    v["spec"]["domain"]["devices"] = json!({"autoattachPodInterface": false});
    let r = resources(&v, &ClusterConfig::default());
    assert!(r["limits"].get("devices.kubevirt.io/tun").is_none());
    assert!(r["limits"].get("devices.kubevirt.io/vhost-net").is_none());
    // useEmulation: no kvm.
    let cfg = ClusterConfig {
        use_emulation: true,
        ..ClusterConfig::default()
    };
    let r = resources(&plain(json!({}), json!({})), &cfg);
    assert!(r["limits"].get("devices.kubevirt.io/kvm").is_none());
    // ephemeral-storage: the VMI's request + 50M.
    let v = plain(json!({}), json!({"requests": {"ephemeral-storage": "1G"}}));
    let r = resources(&v, &ClusterConfig::default());
    assert_eq!(r["requests"]["ephemeral-storage"], "1050000000");
}

#[test]
fn node_selector_rows() {
    let mut v = plain(
        json!({"model": "Haswell", "dedicatedCpuPlacement": true, "realtime": {},
               "features": [{"name": "avx2"}, {"name": "sse4", "policy": "require"},
                            {"name": "pcid", "policy": "optional"}, {"name": "svm", "policy": "forbid"}]}),
        json!({}),
    );
    v["spec"]["domain"]["machine"] = json!({"type": "q35"});
    v["spec"]["architecture"] = json!("AMD64");
    v["spec"]["nodeSelector"] = json!({"zone": "mine", "kubevirt.io/schedulable": "maybe"});
    let cfg = ClusterConfig {
        node_selectors: [
            ("zone".to_string(), "cluster".to_string()),
            ("rack".into(), "r1".into()),
        ]
        .into(),
        ..ClusterConfig::default()
    };
    let sel = node_selector(&v, &cfg);
    let t = json!("true");
    assert_eq!(sel["kubernetes.io/arch"], "amd64");
    assert_eq!(sel["kubevirt.io/cpumanager"], t);
    assert_eq!(sel["cpu-model.node.kubevirt.io/Haswell"], t);
    assert_eq!(sel["cpu-feature.node.kubevirt.io/avx2"], t);
    assert_eq!(sel["cpu-feature.node.kubevirt.io/sse4"], t);
    assert!(sel.get("cpu-feature.node.kubevirt.io/pcid").is_none());
    assert!(sel.get("cpu-feature.node.kubevirt.io/svm").is_none());
    assert_eq!(sel["machine-type.node.kubevirt.io/q35"], t);
    assert_eq!(sel["kubevirt.io/realtime"], t);
    assert_eq!(sel["rack"], "r1");
    // The VMI's own selectors win.
    assert_eq!(sel["zone"], "mine");
    assert_eq!(sel["kubevirt.io/schedulable"], "maybe");
    // ... except over a key KubeVirt derives: its "true" replaces the VMI's value
    // (nodeselectorrenderer.go enables derived labels after merging the VMI's).
    v["spec"]["nodeSelector"] = json!({"zone": "mine", "kubevirt.io/schedulable": "maybe",
        "cpu-model.node.kubevirt.io/Haswell": "false", "cpu-feature.node.kubevirt.io/avx2": "no",
        "machine-type.node.kubevirt.io/q35": "false", "kubernetes.io/arch": "arm64"});
    let sel = node_selector(&v, &cfg);
    assert_eq!(sel["cpu-model.node.kubevirt.io/Haswell"], t);
    assert_eq!(sel["cpu-feature.node.kubevirt.io/avx2"], t);
    assert_eq!(sel["machine-type.node.kubevirt.io/q35"], t);
    assert_eq!(
        sel["kubernetes.io/arch"], "arm64",
        "the arch is not a derived label"
    );
    v["spec"]["nodeSelector"] = json!({"zone": "mine"});
    // status.machine.type (the expanded name) wins over the spec's.
    v["status"] = json!({"machine": {"type": "pc-q35-rhel9.6.0"}});
    let sel = node_selector(&v, &cfg);
    assert_eq!(sel["machine-type.node.kubevirt.io/pc-q35-rhel9.6.0"], t);
    assert!(sel.get("machine-type.node.kubevirt.io/q35").is_none());
    // host-model and host-passthrough name no model label.
    for model in ["host-model", "host-passthrough"] {
        let v = plain(json!({"model": model}), json!({}));
        let sel = node_selector(&v, &ClusterConfig::default());
        assert!(!sel.keys().any(|k| k.starts_with(CPU_MODEL_PREFIX)), "{model}");
        assert!(sel.get("kubevirt.io/cpumanager").is_none());
    }
    // Forbidden features: DoesNotExist; a named model is not host-model.
    let aff = affinity(&v);
    let exprs = &aff["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        [0]["matchExpressions"];
    assert_eq!(
        exprs,
        &json!([{"key": "cpu-feature.node.kubevirt.io/svm", "operator": "DoesNotExist"}])
    );
}

#[test]
fn host_model_avoids_obsolete_nodes_in_every_term() {
    let obsolete = json!({"key": OBSOLETE_HOST_MODEL, "operator": "DoesNotExist"});
    let v = plain(json!({"model": "host-model"}), json!({}));
    assert_eq!(
        affinity(&v),
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [obsolete.clone()]}]}}})
    );
    let mut v = json!({"spec": {"domain": {}}});
    assert!(is_host_model(&v));
    let disk = json!({"key": "disk", "operator": "In", "values": ["nvme"]});
    v["spec"]["affinity"] = json!({
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [disk.clone()]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
        ]}},
        "podAffinity": {"x": 1},
    });
    let aff = affinity(&v);
    let terms = &aff["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    assert_eq!(terms[0]["matchExpressions"], json!([disk, obsolete.clone()]));
    assert_eq!(terms[1]["matchExpressions"], json!([obsolete]));
    assert_eq!(terms[1]["matchFields"][0]["key"], "metadata.name");
    assert_eq!(aff["podAffinity"], json!({"x": 1}));
}

#[test]
fn scheduling_fields_are_copied() {
    let mut v = vmi();
    v["spec"]["topologySpreadConstraints"] = json!([{"maxSkew": 1}]);
    v["spec"]["schedulerName"] = json!("other");
    v["spec"]["priorityClassName"] = json!("high");
    let pod = render(&v, &ClusterConfig::default(), None);
    assert_eq!(pod["spec"]["topologySpreadConstraints"][0]["maxSkew"], 1);
    assert_eq!(pod["spec"]["schedulerName"], "other");
    assert_eq!(pod["spec"]["priorityClassName"], "high");
}

#[test]
fn migration_target_avoids_the_source_node() {
    let pod = render(&vmi(), &ClusterConfig::default(), Some(("mig", "m-1", "node-1")));
    assert_eq!(pod["metadata"]["labels"]["kubevirt.io/migrationJobUID"], "m-1");
    let term =
        &pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        term["labelSelector"]["matchLabels"]["kubevirt.io/created-by"],
        "u-1"
    );
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
}
