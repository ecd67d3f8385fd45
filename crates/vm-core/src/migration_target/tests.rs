//! The target additions of the reference's §3, row by row.

use super::*;
use crate::kubevirt::VirtualMachineInstanceMigration;

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
fn the_added_node_selector_of_an_earlier_migration_is_not_carried_forward() {
    // The pod on n1 was the target of migration m1, which asked for a steering label: the
    // next target pod is rendered without it (the VMI does not select it).
    let pod: Pod = serde_yaml::from_str(
        "metadata:
  name: virt-launcher-vm-abc
  namespace: ns
  labels: {kubevirt.io/created-by: u1, kubevirt.io/migrationJobUID: m1-uid}
  annotations: {kubevirt.io/migrationJobName: m1}
spec:
  nodeName: n1
  nodeSelector: {kubevirt.io/schedulable: 'true', steer: r1, disk: ssd}
  containers: [{name: compute, resources: {requests: {memory: 1290Mi}}}]
status: {phase: Running}",
    )
    .unwrap();
    let m1: VirtualMachineInstanceMigration = serde_yaml::from_str(
        "metadata: {name: m1, namespace: ns, uid: m1-uid}\nspec: {vmiName: vm, addedNodeSelector: {steer: r1, disk: ssd}}",
    )
    .unwrap();
    let mut s = snapshot(vec![node("n1", &[])], vec![pod]);
    s.migrations = vec![m1];
    // The VMI itself selects disk=ssd: that one stays.
    let v = vmi("spec: {nodeSelector: {disk: ssd}, domain: {resources: {requests: {memory: 1Gi}}}}");
    let (c, _) = migration_target(&s, &v, &ClusterConfig::defaults()).unwrap();
    assert!(!c.node_selector.contains_key("steer"), "{:?}", c.node_selector);
    assert_eq!(c.node_selector.get("disk").map(String::as_str), Some("ssd"));
    assert!(c.node_selector.contains_key("kubevirt.io/schedulable"));
    // Without the migration in the snapshot (garbage-collected), nothing is known to drop.
    s.migrations.clear();
    let (c, _) = migration_target(&s, &v, &ClusterConfig::defaults()).unwrap();
    assert!(c.node_selector.contains_key("steer"));
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

/// The `key: "true"` selectors of `c`, sorted.
fn true_selectors(c: &Constraints) -> Vec<&str> {
    c.node_selector
        .iter()
        .filter(|(_, v)| v.as_str() == "true")
        .map(|(k, _)| k.as_str())
        .collect()
}

/// The `DoesNotExist` keys of each required node-affinity term.
fn absent_keys(c: &Constraints) -> Vec<Vec<String>> {
    c.required_terms
        .iter()
        .map(|t| {
            t.match_expressions
                .iter()
                .flatten()
                .filter(|r| r.operator == "DoesNotExist")
                .map(|r| r.key.clone())
                .collect()
        })
        .collect()
}

#[test]
fn every_launcher_selects_the_architecture_and_the_machine_type() {
    // §1a: `kubernetes.io/arch` from spec.architecture (defaulted to amd64), and
    // `machine-type.node.kubevirt.io/<type>`: q35 on amd64 unless the spec names one.
    let c = rendered_constraints(&vmi("spec: {domain: {}}"), &ClusterConfig::defaults());
    assert_eq!(c.node_selector.get(ARCH_LABEL).map(String::as_str), Some("amd64"));
    assert!(
        true_selectors(&c).contains(&"machine-type.node.kubevirt.io/q35"),
        "{c:?}"
    );

    let arm = rendered_constraints(
        &vmi("spec: {architecture: ARM64, domain: {}}"),
        &ClusterConfig::defaults(),
    );
    assert_eq!(
        arm.node_selector.get(ARCH_LABEL).map(String::as_str),
        Some("arm64")
    );
    assert!(true_selectors(&arm).contains(&"machine-type.node.kubevirt.io/virt"));

    let named = rendered_constraints(
        &vmi("spec: {domain: {machine: {type: pc-q35-rhel9.4.0}}}"),
        &ClusterConfig::defaults(),
    );
    assert!(true_selectors(&named).contains(&"machine-type.node.kubevirt.io/pc-q35-rhel9.4.0"));
}

#[test]
fn the_reported_machine_type_counts_for_the_target_not_for_a_restart() {
    // §1a: `status.machine.type` (the expanded name virt-handler writes) wins over the spec's
    // for a pod of this VMI; a VM started anew gets a new VMI without that status.
    let v: VirtualMachineInstance = serde_yaml::from_str(
        "metadata: {name: vm, namespace: ns, uid: u1}\nspec: {domain: {}}\n\
status: {nodeName: n1, phase: Running, machine: {type: pc-q35-rhel9.6.0}}",
    )
    .unwrap();
    let target = rendered_constraints(&v, &ClusterConfig::defaults());
    assert!(true_selectors(&target).contains(&"machine-type.node.kubevirt.io/pc-q35-rhel9.6.0"));
    let s = snapshot(vec![node("n1", &["machine-type.node.kubevirt.io/q35"])], vec![]);
    let restart = launcher_constraints(&s, &v, &ClusterConfig::defaults());
    assert!(
        true_selectors(&restart).contains(&"machine-type.node.kubevirt.io/q35"),
        "{restart:?}"
    );
}

#[test]
fn host_model_avoids_obsolete_nodes_and_forbidden_features_in_every_term() {
    // §1b: `obsolete-host-model DoesNotExist` for host-model guests and `cpu-feature/<f>
    // DoesNotExist` for each forbidden feature, ANDed into every term or as the only one.
    let plain = rendered_constraints(&vmi("spec: {domain: {}}"), &ClusterConfig::defaults());
    assert_eq!(
        absent_keys(&plain),
        vec![vec![OBSOLETE_HOST_MODEL_LABEL.to_string()]]
    );

    let two_terms = rendered_constraints(
        &vmi(
            "spec: {domain: {cpu: {features: [{name: svm, policy: forbid}]}}, affinity: {nodeAffinity: \
{requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [\
{matchExpressions: [{key: disk, operator: In, values: [nvme]}]}, \
{matchExpressions: [{key: zone, operator: Exists}]}]}}}}",
        ),
        &ClusterConfig::defaults(),
    );
    let both = vec![
        OBSOLETE_HOST_MODEL_LABEL.to_string(),
        format!("{FEATURE_PREFIX}svm"),
    ];
    assert_eq!(absent_keys(&two_terms), vec![both.clone(), both]);
    assert_eq!(
        two_terms.required_terms[0].match_expressions.as_ref().unwrap()[0].key,
        "disk"
    );

    // A named model is not host-model: only the forbidden feature is kept out.
    let named = rendered_constraints(
        &vmi("spec: {domain: {cpu: {model: Haswell, features: [{name: svm, policy: forbid}]}}}"),
        &ClusterConfig::defaults(),
    );
    assert_eq!(absent_keys(&named), vec![vec![format!("{FEATURE_PREFIX}svm")]]);
    assert!(true_selectors(&named).contains(&"cpu-model.node.kubevirt.io/Haswell"));
}

#[test]
fn evmcs_realtime_and_confidential_computing_select_their_labels() {
    // §1a: EVMCS makes the webhook require `vmx`; realtime and launchSecurity select the
    // node-labeller's labels.
    let c = rendered_constraints(
        &vmi(
            "spec: {domain: {features: {hyperv: {evmcs: {}}}, cpu: {realtime: {}}, \
launchSecurity: {sev: {policy: {encryptedState: true}}}}}",
        ),
        &ClusterConfig::defaults(),
    );
    let selected = true_selectors(&c);
    for key in [
        "cpu-feature.node.kubevirt.io/vmx",
        "kubevirt.io/realtime",
        "kubevirt.io/sev",
        "kubevirt.io/sev-es",
    ] {
        assert!(selected.contains(&key), "{key}: {selected:?}");
    }
    let off = rendered_constraints(
        &vmi("spec: {domain: {features: {hyperv: {evmcs: {enabled: false}}}, launchSecurity: {tdx: {}}}}"),
        &ClusterConfig::defaults(),
    );
    assert!(!true_selectors(&off).contains(&"cpu-feature.node.kubevirt.io/vmx"));
    assert!(true_selectors(&off).contains(&"kubevirt.io/tdx"));
}

#[test]
fn cluster_wide_selectors_and_the_cluster_cpu_model_apply_and_the_vmi_wins() {
    // §1a: developerConfiguration.nodeSelectors on every VMI, the VMI's own keys over them; a
    // cluster cpuModel default selects its cpu-model label like a VMI's own model.
    let mut cluster = ClusterConfig::defaults();
    cluster.node_selectors.insert("pool".into(), "vms".into());
    cluster.node_selectors.insert("disk".into(), "ssd".into());
    cluster.cpu_model = Some("Cascadelake-Server".into());
    let c = rendered_constraints(&vmi("spec: {nodeSelector: {disk: nvme}, domain: {}}"), &cluster);
    assert_eq!(c.node_selector["pool"], "vms");
    assert_eq!(c.node_selector["disk"], "nvme");
    assert!(true_selectors(&c).contains(&"cpu-model.node.kubevirt.io/Cascadelake-Server"));
    // A named cluster default is not host-model: no obsolete-host-model term.
    assert!(c.required_terms.is_empty(), "{c:?}");
}

/// The nodes of `s` (but the source n1) that admit `c`'s labels, sorted.
fn admitting(s: &ClusterSnapshot, c: &Constraints) -> Vec<String> {
    let mut names: Vec<String> = crate::planning::other_nodes(s, "n1")
        .iter()
        .filter(|n| c.admits_labels(n))
        .map(|n| n.name.clone())
        .collect();
    names.sort();
    names
}

/// `pkg/virt-controller/services/template.go` `newNodeSelectorRenderer`: the target pod selects
/// `machine-type.node.kubevirt.io/<status.machine.type>`, the expanded name virt-handler wrote
/// (`pkg/virt-handler/vm.go` `updateMachineType`), not the `q35` the running pod selects.
#[test]
fn a_live_target_selects_the_machine_type_the_status_reports_not_the_pods_alias() {
    let pod: Pod = serde_yaml::from_str(
        "metadata: {name: virt-launcher-vm-abc, namespace: ns, labels: {kubevirt.io/created-by: u1}}
spec:
  nodeName: n1
  nodeSelector: {kubevirt.io/schedulable: 'true', machine-type.node.kubevirt.io/q35: 'true'}
  containers: [{name: compute, resources: {requests: {memory: 1290Mi}}}]
status: {phase: Running}",
    )
    .unwrap();
    const SCHEDULABLE: &str = "kubevirt.io/schedulable";
    let q35 = "machine-type.node.kubevirt.io/q35";
    let rhel96 = "machine-type.node.kubevirt.io/pc-q35-rhel9.6.0";
    let s = snapshot(
        vec![
            node("n1", &[SCHEDULABLE, q35, rhel96]),
            node("n2", &[SCHEDULABLE, q35, rhel96]),
            node(
                "n3",
                &[SCHEDULABLE, q35, "machine-type.node.kubevirt.io/pc-q35-rhel9.4.0"],
            ),
        ],
        vec![pod],
    );
    let v: VirtualMachineInstance = serde_yaml::from_str(
        "metadata: {name: vm, namespace: ns, uid: u1}\nspec: {domain: {cpu: {model: host-passthrough}}}\n\
status: {nodeName: n1, phase: Running, machine: {type: pc-q35-rhel9.6.0}}",
    )
    .unwrap();
    let (c, _) = migration_target(&s, &v, &ClusterConfig::defaults()).unwrap();
    assert!(!c.node_selector.contains_key(q35), "{c:?}");
    assert_eq!(c.node_selector.get(rhel96).map(String::as_str), Some("true"));
    assert_eq!(admitting(&s, &c), vec!["n2".to_string()]);
}

/// `pkg/defaults/arm64.go`: an arm64 VMI without a model gets host-passthrough (before the
/// cluster's `cpuModel`), so no host-model affinity, no cpu-model selector, no host-model
/// target selectors, and no NoSuitableNodesForHostModelMigration; arm64 nodes carry no vendor
/// label, so none is selected (`migration.go` takes it from the source node's labels).
#[test]
fn an_arm64_vm_without_a_model_is_host_passthrough() {
    let mut cluster = ClusterConfig::defaults();
    cluster.cpu_model = Some("Cascadelake-Server".into());
    let v = vmi("spec: {architecture: arm64, domain: {resources: {requests: {memory: 1Gi}}}}");
    assert!(!is_host_model(&v, &cluster));
    assert_eq!(effective_cpu_model(&v, &cluster).0, HOST_PASSTHROUGH);
    let arm = &["kubernetes.io/arch", "machine-type.node.kubevirt.io/virt"];
    // The amd64 node n2 carries host-model labels: a host-model guest on n1 would be refused.
    let s = snapshot(vec![node("n1", arm), node("n2", SKYLAKE)], vec![]);
    let (c, _) = migration_target(&s, &v, &cluster).unwrap();
    assert!(c.required_terms.is_empty(), "{c:?}");
    assert!(
        c.node_selector.keys().all(|k| !k.starts_with(MODEL_PREFIX)
            && !k.starts_with(MIGRATION_MODEL_PREFIX)
            && !k.starts_with(VENDOR_PREFIX)),
        "{c:?}"
    );
    assert!(c.node_selector.contains_key("machine-type.node.kubevirt.io/virt"));
}

/// `pkg/virt-controller/services/nodeselectorrenderer.go` `Render`: the derived labels are
/// written `"true"` after the VMI's own selectors are merged, so they win; the architecture
/// and the cluster-wide selectors are merged under the VMI's.
#[test]
fn derived_selectors_replace_the_vmis_own_value_for_the_same_key() {
    let v = vmi(
        "spec: {nodeSelector: {machine-type.node.kubevirt.io/q35: 'false', cpu-model.node.kubevirt.io/Haswell: 'no', \
kubernetes.io/arch: s390x}, domain: {cpu: {model: Haswell}}}",
    );
    let c = rendered_constraints(&v, &ClusterConfig::defaults());
    assert_eq!(c.node_selector["machine-type.node.kubevirt.io/q35"], "true");
    assert_eq!(c.node_selector["cpu-model.node.kubevirt.io/Haswell"], "true");
    assert_eq!(
        c.origins["cpu-model.node.kubevirt.io/Haswell"],
        "CPU model Haswell"
    );
    assert_eq!(
        c.node_selector[ARCH_LABEL], "s390x",
        "the VMI's own architecture selector stays"
    );
}

/// `pkg/virt-controller/watch/topology/tsc.go`: invtsc (require or force) or enabled
/// reenlightenment select `scheduling.node.kubevirt.io/tsc-frequency-<Hz>` from
/// `status.topologyHints.tscFrequency`, only when it is above 0.
#[test]
fn an_invariant_tsc_selects_the_frequency_of_the_topology_hints() {
    let with = |spec: &str, hz: i64| -> VirtualMachineInstance {
        serde_yaml::from_str(&format!(
            "metadata: {{name: vm, namespace: ns, uid: u1}}\nspec: {spec}\n\
status: {{nodeName: n1, topologyHints: {{tscFrequency: {hz}}}}}"
        ))
        .unwrap()
    };
    let key = "scheduling.node.kubevirt.io/tsc-frequency-2400000000";
    for spec in [
        "{domain: {cpu: {features: [{name: invtsc, policy: require}]}}}",
        "{domain: {cpu: {features: [{name: invtsc, policy: force}]}}}",
        "{domain: {features: {hyperv: {reenlightenment: {enabled: true}}}}}",
    ] {
        let c = rendered_constraints(&with(spec, 2_400_000_000), &ClusterConfig::defaults());
        assert_eq!(
            c.node_selector.get(key).map(String::as_str),
            Some("true"),
            "{spec}"
        );
    }
    for (spec, hz) in [
        (
            "{domain: {cpu: {features: [{name: invtsc, policy: optional}]}}}",
            2_400_000_000,
        ),
        (
            "{domain: {features: {hyperv: {reenlightenment: {}}}}}",
            2_400_000_000,
        ),
        (
            "{domain: {cpu: {features: [{name: invtsc, policy: require}]}}}",
            0,
        ),
    ] {
        let c = rendered_constraints(&with(spec, hz), &ClusterConfig::defaults());
        assert!(
            !c.node_selector
                .keys()
                .any(|k| k.starts_with(TSC_FREQUENCY_PREFIX)),
            "{spec} {hz}: {c:?}"
        );
    }
}

/// `nodeselectorrenderer.go` `Render`, live: the VMI's own value for a key KubeVirt derives
/// (here its CPU model) does not replace the `"true"` the running pod carries; its other
/// selectors do reach the target.
#[test]
fn a_live_target_keeps_the_derived_value_over_the_vmis_own() {
    let pod: Pod = serde_yaml::from_str(
        "metadata: {name: virt-launcher-vm-abc, namespace: ns, labels: {kubevirt.io/created-by: u1}}
spec:
  nodeName: n1
  nodeSelector: {cpu-model.node.kubevirt.io/Haswell: 'true', disk: hdd}
  containers: [{name: compute, resources: {requests: {memory: 1290Mi}}}]
status: {phase: Running}",
    )
    .unwrap();
    let s = snapshot(vec![node("n1", &[])], vec![pod]);
    let v = vmi(
        "spec: {nodeSelector: {cpu-model.node.kubevirt.io/Haswell: 'no', disk: ssd}, domain: {cpu: {model: Haswell}}}",
    );
    let (c, _) = migration_target(&s, &v, &ClusterConfig::defaults()).unwrap();
    assert_eq!(c.node_selector["cpu-model.node.kubevirt.io/Haswell"], "true");
    assert_eq!(c.node_selector["disk"], "ssd");
}
