//! The pre-flight on real-shaped objects: each blocker of the issue, and the happy path.

use super::*;
use crate::manifest::load_into;

fn node(name: &str, extra_labels: &str, memory: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{kubernetes.io/hostname: {name}, kubevirt.io/schedulable: 'true'{extra_labels}}}}}\n\
spec: {{{extra}}}\nstatus: {{allocatable: {{cpu: '16', memory: {memory}, pods: '110'}}, conditions: [{{type: Ready, status: 'True'}}]}}\n"
    )
}

fn vmi(name: &str, on: &str, memory: &str, spec_extra: &str, status_extra: &str) -> String {
    format!(
        "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: {name}, namespace: prod, uid: uid-{name}}}\n\
spec: {{evictionStrategy: LiveMigrate, domain: {{resources: {{requests: {{memory: {memory}}}}}}}{spec_extra}}}\n\
status: {{phase: Running, nodeName: {on}, conditions: [{{type: LiveMigratable, status: 'True'}}]{status_extra}}}\n"
    )
}

fn snapshot(docs: &[String]) -> ClusterSnapshot {
    let mut s = ClusterSnapshot::default();
    load_into(&mut s, "test", &docs.concat()).unwrap();
    s
}

fn plan(docs: &[String], policy: &DrainPolicy) -> DrainPlan {
    plan_drain(&snapshot(docs), "node-1", policy).unwrap()
}

fn three_nodes() -> Vec<String> {
    vec![
        node("node-1", "", "64Gi", ""),
        node("node-2", "", "64Gi", ""),
        node("node-3", "", "64Gi", ""),
    ]
}

#[test]
fn migratable_vms_get_a_target_and_the_plan_is_feasible() {
    let mut docs = three_nodes();
    docs.push(vmi("web", "node-1", "4Gi", "", ""));
    docs.push(vmi("elsewhere", "node-2", "4Gi", "", ""));
    let p = plan(&docs, &DrainPolicy::default());
    assert!(p.feasible, "{:?}", p.blockers);
    assert_eq!(p.vms.len(), 1, "only the VMIs of node-1");
    assert_eq!(p.vms[0].action, VmAction::Migrate);
    assert!(matches!(p.vms[0].target.as_deref(), Some("node-2" | "node-3")));
    assert_eq!(p.limits.parallel_migrations_per_cluster, 5);
}

#[test]
fn a_node_selector_only_this_node_matches_blocks() {
    let mut docs = vec![
        node("node-1", ", disk: nvme", "64Gi", ""),
        node("node-2", "", "64Gi", ""),
    ];
    docs.push(vmi("db", "node-1", "4Gi", ", nodeSelector: {disk: nvme}", ""));
    let p = plan(&docs, &DrainPolicy::default());
    assert!(!p.feasible);
    assert_eq!(p.vms[0].action, VmAction::Blocked);
    assert!(
        p.blockers[0].contains("VM prod/db") && p.blockers[0].contains("nodeSelector disk=nvme"),
        "{:?}",
        p.blockers
    );
}

#[test]
fn required_affinity_only_this_node_matches_blocks() {
    let mut docs = three_nodes();
    docs.push(vmi(
        "db",
        "node-1",
        "4Gi",
        ", affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [node-1]}]}]}}}",
        "",
    ));
    let p = plan(&docs, &DrainPolicy::default());
    assert_eq!(p.vms[0].action, VmAction::Blocked);
    assert!(
        p.vms[0]
            .reasons
            .iter()
            .any(|r| r.contains("required node affinity")),
        "{:?}",
        p.vms[0].reasons
    );
}

#[test]
fn a_taint_on_every_other_node_blocks_unless_tolerated() {
    let taint = "taints: [{key: dedicated, value: gpu, effect: NoSchedule}]";
    let mut docs = vec![
        node("node-1", "", "64Gi", ""),
        node("node-2", "", "64Gi", taint),
        node("node-3", "", "64Gi", taint),
    ];
    docs.push(vmi("web", "node-1", "4Gi", "", ""));
    let p = plan(&docs, &DrainPolicy::default());
    assert_eq!(p.vms[0].action, VmAction::Blocked);
    assert!(
        p.vms[0]
            .reasons
            .iter()
            .any(|r| r.contains("dedicated=gpu:NoSchedule")),
        "{:?}",
        p.vms[0].reasons
    );
    docs.pop();
    docs.push(vmi(
        "web",
        "node-1",
        "4Gi",
        ", tolerations: [{key: dedicated, operator: Exists}]",
        "",
    ));
    assert!(plan(&docs, &DrainPolicy::default()).feasible);
}

#[test]
fn room_is_checked_for_all_vms_together() {
    // node-2 and node-3 have 10Gi each; each 6Gi VM fits alone, three do not fit together.
    let mut docs = vec![
        node("node-1", "", "64Gi", ""),
        node("node-2", "", "10Gi", ""),
        node("node-3", "", "10Gi", ""),
    ];
    for name in ["a", "b", "c"] {
        docs.push(vmi(name, "node-1", "6Gi", "", ""));
    }
    let p = plan(&docs, &DrainPolicy::default());
    assert!(!p.feasible);
    let blocked: Vec<_> = p.vms.iter().filter(|v| v.action == VmAction::Blocked).collect();
    assert_eq!(blocked.len(), 1, "{:#?}", p.vms);
    assert!(
        blocked[0].reasons.iter().any(|r| r.contains("memory free")),
        "{:?}",
        blocked[0].reasons
    );
}

#[test]
fn cordoned_and_not_ready_nodes_take_nothing() {
    let mut docs = vec![
        node("node-1", "", "64Gi", ""),
        node("node-2", "", "64Gi", "unschedulable: true"),
    ];
    docs.push(node("node-3", "", "64Gi", "").replace("status: 'True'", "status: 'False'"));
    docs.push(vmi("web", "node-1", "4Gi", "", ""));
    let p = plan(&docs, &DrainPolicy::default());
    assert_eq!(p.vms[0].action, VmAction::Blocked);
    let reasons = p.vms[0].reasons.join(" ");
    assert!(
        reasons.contains("cordoned") && reasons.contains("not Ready"),
        "{reasons}"
    );
}

#[test]
fn a_non_migratable_vm_blocks_or_is_shut_down_with_the_flag() {
    let mut docs = three_nodes();
    docs.push(
        vmi("db", "node-1", "4Gi", "", "").replace(
            "{type: LiveMigratable, status: 'True'}",
            "{type: LiveMigratable, status: 'False', reason: DisksNotLiveMigratable, message: 'PVC data is not shared'}",
        ),
    );
    docs.push("---\napiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: db, namespace: prod}\nspec: {runStrategy: RerunOnFailure}\n".into());
    let p = plan(&docs, &DrainPolicy::default());
    assert_eq!(p.vms[0].action, VmAction::Blocked);
    assert!(
        p.blockers[0].contains("DisksNotLiveMigratable"),
        "{:?}",
        p.blockers
    );
    let p = plan(
        &docs,
        &DrainPolicy {
            shutdown_non_migratable: true,
            ..DrainPolicy::default()
        },
    );
    assert!(p.feasible);
    assert_eq!(p.vms[0].action, VmAction::Shutdown);
    assert!(
        p.vms[0].reasons.iter().any(|r| r.contains("--uncordon")),
        "{:?}",
        p.vms[0].reasons
    );
    assert_eq!(p.vms[0].run_strategy.as_deref(), Some("RerunOnFailure"));
}

#[test]
fn eviction_strategy_none_is_migrated_and_says_so() {
    let mut docs = three_nodes();
    docs.push(
        vmi("cache", "node-1", "4Gi", "", "")
            .replace("evictionStrategy: LiveMigrate", "evictionStrategy: None"),
    );
    let p = plan(&docs, &DrainPolicy::default());
    assert_eq!(p.vms[0].action, VmAction::Migrate);
    assert!(p.vms[0].reasons[0].contains("plain kubectl drain would shut it down"));
}

fn pod(name: &str, extra_meta: &str, extra_spec: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: prod, labels: {{app: {name}}}{extra_meta}}}\n\
spec: {{nodeName: node-1, containers: [{{name: c, image: x}}]{extra_spec}}}\nstatus: {{phase: Running}}\n"
    )
}

const RS_OWNER: &str =
    ", ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: rs, uid: u1, controller: true}]";

#[test]
fn other_pods_follow_kubectl_drain_rules() {
    let mut docs = three_nodes();
    docs.push(pod(
        "agent",
        ", ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: ds, uid: u, controller: true}]",
        "",
    ));
    docs.push(pod("web", RS_OWNER, ""));
    docs.push(pod("bare", "", ""));
    docs.push(pod(
        "cache",
        RS_OWNER,
        ", volumes: [{name: scratch, emptyDir: {}}]",
    ));
    let p = plan(&docs, &DrainPolicy::default());
    let action = |n: &str| p.pods.iter().find(|x| x.name == n).unwrap().action;
    assert_eq!(action("agent"), PodAction::Stay);
    assert_eq!(action("web"), PodAction::Evict);
    assert_eq!(action("bare"), PodAction::Blocked);
    assert_eq!(action("cache"), PodAction::Blocked);
    assert!(
        p.blockers
            .iter()
            .any(|b| b.contains("pod prod/bare") && b.contains("--force"))
    );
    assert!(
        p.blockers
            .iter()
            .any(|b| b.contains("pod prod/cache") && b.contains("--delete-emptydir-data"))
    );
    let p = plan(
        &docs,
        &DrainPolicy {
            force: true,
            delete_emptydir_data: true,
            ..DrainPolicy::default()
        },
    );
    assert!(p.feasible, "{:?}", p.blockers);
}

#[test]
fn a_pdb_that_allows_no_disruption_blocks_its_pod() {
    let mut docs = three_nodes();
    docs.push(pod("web", RS_OWNER, ""));
    docs.push(
        "---\napiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: web-pdb, namespace: prod}\n\
spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}\nstatus: {disruptionsAllowed: 0, currentHealthy: 1, desiredHealthy: 1, expectedPods: 1}\n"
            .into(),
    );
    let p = plan(&docs, &DrainPolicy::default());
    assert!(!p.feasible);
    assert!(
        p.blockers[0].contains("PodDisruptionBudget web-pdb allows no disruption"),
        "{:?}",
        p.blockers
    );
}

#[test]
fn launcher_pods_follow_their_vm_not_the_pod_rules() {
    let mut docs = three_nodes();
    docs.push(vmi("web", "node-1", "4Gi", "", ""));
    docs.push(pod(
        "virt-launcher-web-abcde",
        ", ownerReferences: [{apiVersion: kubevirt.io/v1, kind: VirtualMachineInstance, name: web, uid: uid-web, controller: true}]",
        ", volumes: [{name: sockets, emptyDir: {}}]",
    ));
    let p = plan(&docs, &DrainPolicy::default());
    assert!(p.pods.is_empty(), "{:?}", p.pods);
    assert!(p.feasible);
}

#[test]
fn the_estimate_spreads_migrations_over_the_allowed_parallelism() {
    let mut docs = three_nodes();
    for name in ["a", "b", "c", "d"] {
        docs.push(vmi(name, "node-1", "8Gi", "", ""));
    }
    let policy = DrainPolicy {
        migration_bytes_per_second: 1024.0 * 1024.0 * 1024.0,
        ..DrainPolicy::default()
    };
    // Each takes 10 s + 8 s; two at a time from one node: 2 rounds of 18 s.
    assert_eq!(plan(&docs, &policy).estimated_seconds, 36);
}

#[test]
fn an_unknown_node_is_an_error() {
    let err = plan_drain(&snapshot(&three_nodes()), "node-9", &DrainPolicy::default()).unwrap_err();
    assert_eq!(err, PlanError::NoSuchNode("node-9".into()));
}

/// The labels the node-labeller writes for a CPU generation (reference §5).
fn cpu(vendor: &str, model: &str, features: &[&str]) -> String {
    let mut labels = format!(
        ", cpu-vendor.node.kubevirt.io/{vendor}: 'true', host-model-cpu.node.kubevirt.io/{model}: 'true', \
         cpu-model-migration.node.kubevirt.io/{model}: 'true'"
    );
    for f in features {
        labels.push_str(&format!(
            ", host-model-required-features.node.kubevirt.io/{f}: 'true', cpu-feature.node.kubevirt.io/{f}: 'true'"
        ));
    }
    labels
}

#[test]
fn host_model_vms_go_only_where_the_vendor_model_and_features_are() {
    let skylake = cpu("Intel", "Skylake-Client-IBRS", &["avx512f"]);
    let mut docs = vec![
        node("node-1", &skylake, "64Gi", ""),
        node("node-2", &cpu("AMD", "EPYC-Milan", &["svm"]), "64Gi", ""),
        node("node-3", &skylake, "4Gi", ""),
        node("node-4", &skylake, "64Gi", ""),
    ];
    docs.push(vmi("web", "node-1", "8Gi", "", ""));
    let p = plan(&docs, &DrainPolicy::default());
    assert!(p.feasible, "{:?}", p.blockers);
    assert_eq!(p.vms[0].target.as_deref(), Some("node-4"));

    // Without node-4, the AMD node lacks the vendor and model, node-3 the memory.
    docs.pop();
    docs.remove(3);
    docs.push(vmi("web", "node-1", "8Gi", "", ""));
    let p = plan(&docs, &DrainPolicy::default());
    assert!(!p.feasible);
    let reasons = p.vms[0].reasons.join("; ");
    assert!(
        reasons
            .contains("cpu-model-migration.node.kubevirt.io/Skylake-Client-IBRS (host-model on node node-1)"),
        "{reasons}"
    );
    assert!(reasons.contains("node-2"), "{reasons}");
    assert!(reasons.contains("node node-3 has 4Gi memory free"), "{reasons}");
}

#[test]
fn hugepages_and_dedicated_cpus_need_nodes_that_have_them() {
    let mut docs = vec![
        node("node-1", ", kubevirt.io/cpumanager: 'true'", "64Gi", ""),
        node("node-2", "", "64Gi", ""),
    ];
    docs.push(
        "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: rt, namespace: prod, uid: uid-rt}\n\
spec: {evictionStrategy: LiveMigrate, domain: {resources: {requests: {memory: 8Gi}}, memory: {hugepages: {pageSize: 1Gi}},\
 cpu: {cores: 4, dedicatedCpuPlacement: true}}}\n\
status: {phase: Running, nodeName: node-1, conditions: [{type: LiveMigratable, status: 'True'}]}\n"
            .to_string(),
    );
    let p = plan(&docs, &DrainPolicy::default());
    assert!(!p.feasible);
    let reasons = p.vms[0].reasons.join("; ");
    assert!(
        reasons.contains("kubevirt.io/cpumanager=true (dedicated CPUs)"),
        "{reasons}"
    );
    // node-2 gains the CPU manager but has no hugepages.
    docs[1] = node("node-2", ", kubevirt.io/cpumanager: 'true'", "64Gi", "");
    let p = plan(&docs, &DrainPolicy::default());
    let reasons = p.vms[0].reasons.join("; ");
    assert!(
        reasons.contains("node node-2 has no hugepages-1Gi, 8Gi needed"),
        "{reasons}"
    );
}

/// `pkg/network/multus/nad.go`: a VMI read without its launcher pod needs its Multus networks'
/// NADs to count their `k8s.v1.cni.cncf.io/resourceName`; the plan says when one is missing, and
/// with it places the VM only where the resource is allocatable.
#[test]
fn an_sriov_network_counts_its_nad_resource_or_says_it_could_not() {
    let sriov = ", networks: [{name: default, pod: {}}, {name: vf, multus: {networkName: sriov-net}}]";
    let mut docs = vec![
        node("node-1", "", "64Gi", ""),
        node("node-2", "", "64Gi", ""),
        // node-3 offers the VFs (the status replaces the helper's: allocatable with them).
        "---\napiVersion: v1\nkind: Node\nmetadata: {name: node-3, labels: {kubernetes.io/hostname: node-3, kubevirt.io/schedulable: 'true'}}\n\
status: {allocatable: {cpu: '16', memory: 64Gi, pods: '110', intel.com/sriov: '4'}, conditions: [{type: Ready, status: 'True'}]}\n"
            .to_string(),
        vmi("db", "node-1", "4Gi", sriov, ""),
    ];
    let p = plan(&docs, &DrainPolicy::default());
    assert!(
        p.vms[0]
            .reasons
            .iter()
            .any(|r| r.contains("NetworkAttachmentDefinition prod/sriov-net is not in the input")),
        "{:?}",
        p.vms[0].reasons
    );
    docs.push(
        "---\napiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\n\
metadata: {name: sriov-net, namespace: prod, annotations: {k8s.v1.cni.cncf.io/resourceName: intel.com/sriov}}\n"
            .to_string(),
    );
    let p = plan(&docs, &DrainPolicy::default());
    assert!(p.feasible, "{:?}", p.blockers);
    assert_eq!(p.vms[0].target.as_deref(), Some("node-3"), "{:?}", p.vms[0]);
    assert!(
        p.vms[0]
            .reasons
            .iter()
            .all(|r| !r.contains("NetworkAttachmentDefinition"))
    );
}
