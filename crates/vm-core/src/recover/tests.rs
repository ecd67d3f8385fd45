//! The recovery assessment on real-shaped objects: a Ready node, a dead one, a stuck one.

use k8s_openapi::jiff::SignedDuration;

use super::*;
use crate::manifest::load_into;

const NOW: &str = "2025-06-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// RFC 3339 for `seconds` before [`NOW`].
fn ago(seconds: i64) -> String {
    (now() - SignedDuration::from_secs(seconds)).to_string()
}

/// A node whose kubelet and virt-handler last reported `kubelet_age` and `kubevirt_age`
/// seconds ago, with Ready condition `ready`.
fn node_with(
    name: &str,
    memory: &str,
    ready: &str,
    kubelet_age: i64,
    kubevirt_age: i64,
    spec: &str,
) -> String {
    format!(
        "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {name}, \
labels: {{kubernetes.io/hostname: {name}, kubevirt.io/schedulable: 'true'}}, annotations: {{kubevirt.io/heartbeat: '{}'}}}}\n\
spec: {{{spec}}}\nstatus: {{allocatable: {{cpu: '16', memory: {memory}, pods: '110'}}, \
conditions: [{{type: Ready, status: '{ready}', reason: KubeletReady, lastHeartbeatTime: '{}'}}]}}\n",
        ago(kubevirt_age),
        ago(kubelet_age)
    )
}

/// A healthy node: everything reported 10 s ago.
fn node(name: &str, memory: &str) -> String {
    node_with(name, memory, "True", 10, 10, "")
}

/// A node whose kubelet stopped 2 min ago and virt-handler 7 min ago.
fn dead_node(name: &str) -> String {
    node_with(name, "64Gi", "Unknown", 120, 420, "")
}

fn lease(node: &str, age: i64) -> String {
    format!(
        "---\napiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: {node}, namespace: kube-node-lease}}\n\
spec: {{holderIdentity: {node}, leaseDurationSeconds: 40, renewTime: '{}'}}\n",
        ago(age)
    )
}

/// A VMI with a masquerade pod interface (migratable, unlike the bridge KubeVirt gives a VMI
/// that declares none); `spec_extra` adds spec fields.
fn vmi(name: &str, on: &str, memory: &str, spec_extra: &str) -> String {
    format!(
        "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: {name}, namespace: prod, uid: uid-{name}}}\n\
spec: {{evictionStrategy: LiveMigrate, domain: {{resources: {{requests: {{memory: {memory}}}}}, \
devices: {{interfaces: [{{name: default, masquerade: {{}}}}]}}}}, networks: [{{name: default, pod: {{}}}}]{spec_extra}}}\n\
status: {{phase: Running, nodeName: {on}}}\n"
    )
}

fn vm(name: &str, run_strategy: &str) -> String {
    format!(
        "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {{name: {name}, namespace: prod}}\n\
spec: {{runStrategy: {run_strategy}, template: {{spec: {{domain: {{devices: {{}}}}}}}}}}\n"
    )
}

/// The launcher pod of VMI `name` on `on`; `meta_extra` adds metadata fields.
fn launcher(name: &str, on: &str, meta_extra: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: virt-launcher-{name}-x7k2p, namespace: prod, \
labels: {{kubevirt.io: virt-launcher, kubevirt.io/created-by: uid-{name}}}{meta_extra}}}\n\
spec: {{nodeName: {on}, containers: [{{name: compute, image: quay.io/kubevirt/virt-launcher:v1.5.0}}]}}\n\
status: {{phase: Running}}\n"
    )
}

fn pvc(name: &str, mode: &str, volume: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}, namespace: prod}}\n\
spec: {{accessModes: [{mode}], volumeName: {volume}, resources: {{requests: {{storage: 20Gi}}}}}}\n\
status: {{phase: Bound, accessModes: [{mode}]}}\n"
    )
}

fn attachment(name: &str, on: &str, volume: &str) -> String {
    format!(
        "---\napiVersion: storage.k8s.io/v1\nkind: VolumeAttachment\nmetadata: {{name: {name}}}\n\
spec: {{attacher: rbd.csi.ceph.com, nodeName: {on}, source: {{persistentVolumeName: {volume}}}}}\n\
status: {{attached: true}}\n"
    )
}

fn snapshot(docs: &[String]) -> ClusterSnapshot {
    let mut s = ClusterSnapshot::default();
    load_into(&mut s, "test", &docs.concat()).unwrap();
    s
}

fn plan_with(docs: &[String], policy: &RecoveryPolicy) -> RecoveryPlan {
    assess(&snapshot(docs), "node-1", now(), policy).unwrap()
}

fn plan(docs: &[String]) -> RecoveryPlan {
    plan_with(docs, &RecoveryPolicy::default())
}

fn survivors() -> Vec<String> {
    vec![node("node-2", "64Gi"), node("node-3", "64Gi")]
}

fn vm_named<'a>(p: &'a RecoveryPlan, name: &str) -> &'a VmRecovery {
    p.vms.iter().find(|v| v.name == name).unwrap()
}

/// Asserts that exactly one VM blocks the plan, for a reason with every one of `words`.
fn assert_one_blocker(p: &RecoveryPlan, words: &[&str]) {
    assert!(!p.recoverable);
    let blocked: Vec<_> = p
        .vms
        .iter()
        .filter(|v| v.action == RecoveryAction::Blocked)
        .collect();
    assert_eq!((blocked.len(), p.blockers.len()), (1, 1), "{:#?}", p.vms);
    assert!(
        words.iter().all(|w| p.blockers[0].contains(w)),
        "{words:?} in {:?}",
        p.blockers
    );
}

#[test]
fn a_ready_node_migrates_its_vms_to_a_target() {
    let mut docs = survivors();
    docs.push(node("node-1", "64Gi"));
    docs.push(lease("node-1", 5));
    docs.push(vmi("web", "node-1", "4Gi", ""));
    docs.push(vm("web", "Always"));
    docs.push(vmi("elsewhere", "node-2", "4Gi", ""));
    let p = plan(&docs);
    assert_eq!(p.node_state, NodeState::Ready);
    assert_eq!(p.mode(), RecoveryMode::LiveMigration);
    assert_eq!(p.vms.len(), 1, "only the VMIs of node-1: {:?}", p.vms);
    assert_eq!(p.vms[0].action, RecoveryAction::Migrate);
    assert!(
        matches!(p.vms[0].target.as_deref(), Some("node-2" | "node-3")),
        "{:?}",
        p.vms[0]
    );
    assert!(p.recoverable, "{:?}", p.blockers);
}

#[test]
fn a_ready_node_blocks_a_vm_that_cannot_migrate_with_kubevirts_reason() {
    let mut docs = survivors();
    docs.push(node("node-1", "64Gi"));
    docs.push(vmi(
        "db",
        "node-1",
        "4Gi",
        ", volumes: [{name: rootdisk, persistentVolumeClaim: {claimName: db-root}}]",
    ));
    docs.push(vm("db", "Always"));
    docs.push(pvc("db-root", "ReadWriteOnce", "pvc-0a1b"));
    let p = plan(&docs);
    assert_one_blocker(&p, &["VM prod/db: ", "DisksNotLiveMigratable"]);
    assert_eq!(p.vms[0].target, None, "a blocked VM is not placed");
}

#[test]
fn a_dead_node_restarts_always_and_rerun_on_failure_and_leaves_the_others_stopped() {
    let mut docs = survivors();
    docs.push(dead_node("node-1"));
    for (name, strategy) in [
        ("always", Some("Always")),
        ("rerun", Some("RerunOnFailure")),
        ("manual", Some("Manual")),
        ("halted", Some("Halted")),
        ("once", Some("Once")),
        ("standalone", None),
    ] {
        docs.push(vmi(name, "node-1", "2Gi", ""));
        if let Some(strategy) = strategy {
            docs.push(vm(name, strategy));
        }
    }
    let p = plan(&docs);
    assert_eq!(
        p.mode(),
        RecoveryMode::Fencing {
            lease_renewing: false
        }
    );
    let action = |name| vm_named(&p, name).action;
    assert_eq!(action("always"), RecoveryAction::RestartElsewhere);
    assert_eq!(action("rerun"), RecoveryAction::RestartElsewhere);
    for name in ["manual", "halted", "once", "standalone"] {
        assert_eq!(action(name), RecoveryAction::LeftStopped, "{name}");
        assert_eq!(vm_named(&p, name).target, None, "{name} is not placed");
    }
    assert!(vm_named(&p, "always").target.is_some());
    assert_eq!(
        vm_named(&p, "rerun").run_strategy.as_deref(),
        Some("RerunOnFailure")
    );
    assert_eq!(
        vm_named(&p, "manual").reasons,
        ["runStrategy Manual: KubeVirt does not restart it; --start-stopped starts it elsewhere"]
    );
    let standalone = vm_named(&p, "standalone");
    assert_eq!(
        (standalone.vm.as_deref(), standalone.run_strategy.as_deref()),
        (None, None)
    );
    assert!(
        standalone.reasons[0].contains("standalone VMI"),
        "{:?}",
        standalone.reasons
    );
    assert_eq!(vm_named(&p, "once").vm.as_deref(), Some("once"));
    assert!(p.recoverable, "left-stopped is not a blocker: {:?}", p.blockers);
}

#[test]
fn start_stopped_restarts_a_manual_vm_but_not_a_halted_one() {
    let mut docs = survivors();
    docs.push(dead_node("node-1"));
    docs.push(vmi("manual", "node-1", "2Gi", ""));
    docs.push(vm("manual", "Manual"));
    docs.push(vmi("halted", "node-1", "2Gi", ""));
    docs.push(vm("halted", "Halted"));
    let p = plan_with(&docs, &RecoveryPolicy { start_stopped: true });
    let manual = vm_named(&p, "manual");
    assert_eq!(manual.action, RecoveryAction::RestartElsewhere);
    assert!(
        manual.reasons[0].contains("--start-stopped"),
        "{:?}",
        manual.reasons
    );
    assert!(manual.target.is_some());
    assert_eq!(vm_named(&p, "halted").action, RecoveryAction::LeftStopped);
}

/// After a first fencing run the Manual VM's VMI is Failed on the dead node: a second run with
/// --start-stopped must still find it; a failed standalone VMI has nothing to restart.
#[test]
fn a_failed_vmi_of_a_vm_on_a_dead_node_is_still_recovered() {
    let failed = |name: &str| vmi(name, "node-1", "2Gi", "").replace("phase: Running", "phase: Failed");
    let mut docs = survivors();
    docs.push(dead_node("node-1"));
    docs.push(failed("manual"));
    docs.push(vm("manual", "Manual"));
    docs.push(failed("orphan"));
    let p = plan_with(&docs, &RecoveryPolicy { start_stopped: true });
    assert_eq!(p.vms.len(), 1, "{:?}", p.vms);
    let manual = vm_named(&p, "manual");
    assert_eq!(manual.action, RecoveryAction::RestartElsewhere);
    assert_eq!(manual.launcher_pod, LauncherState::Gone);
    assert_eq!(plan(&docs).vms[0].action, RecoveryAction::LeftStopped);

    // On a Ready node a failed VMI is not this tool's business.
    let mut docs = survivors();
    docs.push(node("node-1", "64Gi"));
    docs.push(failed("manual"));
    docs.push(vm("manual", "Manual"));
    assert!(plan(&docs).vms.is_empty());
}

#[test]
fn a_node_without_a_ready_condition_or_with_status_unknown_is_unknown() {
    let missing = node("node-1", "64Gi").replace(
        "conditions: [{type: Ready,",
        "conditions: [{type: MemoryPressure,",
    );
    let p = plan(&[missing]);
    assert_eq!(p.node_state, NodeState::Unknown);
    assert_eq!(p.node_assessment.last_heartbeat_seconds, None);
    assert!(matches!(p.mode(), RecoveryMode::Fencing { .. }));
    let unknown = node_with("node-1", "64Gi", "Unknown", 60, 60, "");
    assert_eq!(plan(&[unknown]).node_state, NodeState::Unknown);
    let not_ready = node_with("node-1", "64Gi", "False", 60, 60, "");
    assert_eq!(plan(&[not_ready]).node_state, NodeState::NotReady);
}

#[test]
fn launcher_pods_are_running_terminating_or_gone() {
    let mut docs = survivors();
    docs.push(dead_node("node-1"));
    for name in ["running", "terminating", "gone", "owned"] {
        docs.push(vmi(name, "node-1", "2Gi", ""));
        docs.push(vm(name, "Always"));
    }
    docs.push(launcher("running", "node-1", ""));
    docs.push(launcher(
        "terminating",
        "node-1",
        &format!(
            ", deletionTimestamp: '{}', deletionGracePeriodSeconds: 60",
            ago(400)
        ),
    ));
    // The migration target of `gone` on another node is not a launcher on node-1.
    docs.push(launcher("gone", "node-2", ""));
    docs.push(launcher("owned", "node-1", "").replace(
        "labels: {kubevirt.io: virt-launcher, kubevirt.io/created-by: uid-owned}",
        "ownerReferences: [{apiVersion: kubevirt.io/v1, kind: VirtualMachineInstance, name: owned, uid: uid-owned, controller: true}]",
    ));
    let p = plan(&docs);
    let state = |name| vm_named(&p, name).launcher_pod;
    assert_eq!(state("running"), LauncherState::Running);
    assert_eq!(state("terminating"), LauncherState::Terminating);
    assert_eq!(state("gone"), LauncherState::Gone);
    assert_eq!(state("owned"), LauncherState::Running);
    assert_eq!(
        vm_named(&p, "terminating").launcher_pods,
        ["virt-launcher-terminating-x7k2p"]
    );
    assert!(vm_named(&p, "gone").launcher_pods.is_empty());
}

#[test]
fn rwo_volumes_and_their_attachments_on_the_node_are_listed() {
    let mut docs = survivors();
    docs.push(dead_node("node-1"));
    docs.push(vmi(
        "db",
        "node-1",
        "4Gi",
        ", volumes: [{name: root, dataVolume: {name: db-root}}, {name: data, persistentVolumeClaim: {claimName: db-data}}, \
{name: shared, persistentVolumeClaim: {claimName: db-shared}}, {name: cloudinit, cloudInitNoCloud: {userData: '#cloud-config'}}]",
    ));
    docs.push(vm("db", "Always"));
    docs.push(pvc("db-root", "ReadWriteOnce", "pvc-root"));
    docs.push(pvc("db-data", "ReadWriteOncePod", "pvc-data"));
    docs.push(pvc("db-shared", "ReadWriteMany", "pvc-shared"));
    docs.push(attachment("csi-root-node-1", "node-1", "pvc-root"));
    docs.push(attachment("csi-shared-node-1", "node-1", "pvc-shared"));
    docs.push(attachment("csi-data-node-2", "node-2", "pvc-data"));
    let p = plan(&docs);
    let db = vm_named(&p, "db");
    assert_eq!(db.rwo_volumes, ["db-root", "db-data"]);
    assert_eq!(db.volume_attachments, ["csi-root-node-1"]);
    assert_eq!(
        db.action,
        RecoveryAction::RestartElsewhere,
        "RWO does not block a restart"
    );
}

#[test]
fn room_is_checked_for_all_restarted_vms_together() {
    // node-2 and node-3 have 10Gi each: each 6Gi VM fits alone, three do not fit together.
    let mut docs = vec![
        dead_node("node-1"),
        node("node-2", "10Gi"),
        node("node-3", "10Gi"),
    ];
    for name in ["a", "b", "c"] {
        docs.push(vmi(name, "node-1", "6Gi", ""));
        docs.push(vm(name, "Always"));
    }
    assert_one_blocker(&plan(&docs), &["no other node can take it", "memory free"]);
}

#[test]
fn a_node_selector_only_the_dead_node_matches_blocks() {
    let mut docs = survivors();
    docs.push(dead_node("node-1").replace(
        "kubevirt.io/schedulable: 'true'",
        "kubevirt.io/schedulable: 'true', disk: nvme",
    ));
    docs.push(vmi("db", "node-1", "4Gi", ", nodeSelector: {disk: nvme}"));
    docs.push(vm("db", "Always"));
    let p = plan(&docs);
    assert_eq!(p.vms[0].action, RecoveryAction::Blocked);
    assert_one_blocker(&p, &["VM prod/db: ", "nodeSelector disk=nvme"]);
}

#[test]
fn cordoned_and_unschedulable_survivors_take_nothing() {
    let mut docs = vec![
        dead_node("node-1"),
        node_with("node-2", "64Gi", "True", 10, 10, "unschedulable: true"),
        node("node-3", "64Gi").replace(
            "kubevirt.io/schedulable: 'true'",
            "kubevirt.io/schedulable: 'false'",
        ),
    ];
    docs.push(vmi("web", "node-1", "4Gi", ""));
    docs.push(vm("web", "Always"));
    let reasons = plan(&docs).vms[0].reasons.join(" ");
    assert!(
        reasons.contains("node-2 is cordoned")
            && reasons.contains("node-3 does not carry kubevirt.io/schedulable=true"),
        "{reasons}"
    );
}

#[test]
fn ages_are_measured_from_now() {
    let mut docs = vec![node_with("node-1", "64Gi", "False", 95, 310, "")];
    docs.push(lease("node-1", 61));
    docs.push(lease("node-2", 1));
    let a = plan(&docs).node_assessment;
    assert_eq!(a.last_heartbeat_seconds, Some(95));
    assert_eq!(a.kubevirt_heartbeat_seconds, Some(310));
    assert_eq!(a.lease_renewed_seconds, Some(61));
    assert!(!a.lease_renewing, "61 s is beyond the 40 s lease");
    let renewed = (now() - SignedDuration::from_secs(61)).to_string();
    assert_eq!(a.lease_renew_time.as_deref(), Some(renewed.as_str()));
    let later = assess(
        &snapshot(&docs),
        "node-1",
        now() + SignedDuration::from_secs(100),
        &RecoveryPolicy::default(),
    )
    .unwrap()
    .node_assessment;
    assert_eq!(later.last_heartbeat_seconds, Some(195));
    let no_lease = plan(&[node("node-1", "64Gi")]).node_assessment;
    assert_eq!(
        (
            no_lease.lease_renewed_seconds,
            no_lease.lease_renew_time,
            no_lease.lease_renewing
        ),
        (None, None, false)
    );
}

#[test]
fn a_ready_node_with_a_silent_virt_handler_is_stuck_and_needs_fencing() {
    let mut docs = survivors();
    docs.push(node_with("node-1", "64Gi", "True", 5, 600, ""));
    docs.push(lease("node-1", 5));
    docs.push(vmi("web", "node-1", "4Gi", ""));
    docs.push(vm("web", "Always"));
    let p = plan(&docs);
    assert_eq!(p.node_state, NodeState::Ready);
    let stuck = p.node_assessment.stuck.as_deref().unwrap();
    assert!(
        stuck.contains("kubevirt.io/heartbeat") && stuck.contains("600 s"),
        "{stuck}"
    );
    assert_eq!(p.mode(), RecoveryMode::Fencing { lease_renewing: true });
    assert!(p.node_assessment.lease_renewing);
    assert_eq!(p.vms[0].action, RecoveryAction::RestartElsewhere);
}

#[test]
fn a_ready_node_labelled_not_schedulable_is_stuck() {
    let n = node("node-1", "64Gi").replace(
        "kubevirt.io/schedulable: 'true'",
        "kubevirt.io/schedulable: 'false'",
    );
    let a = plan(&[n]).node_assessment;
    assert_eq!(a.schedulable.as_deref(), Some("false"));
    assert!(
        a.stuck
            .as_deref()
            .is_some_and(|s| s.contains("kubevirt.io/schedulable=false")),
        "{a:?}"
    );
    assert_eq!(plan(&[node("node-1", "64Gi")]).node_assessment.stuck, None);
}

#[test]
fn the_out_of_service_taint_marks_the_node_fenced() {
    let taint = "taints: [{key: node.kubernetes.io/out-of-service, value: nodeshutdown, effect: NoExecute}], unschedulable: true";
    let p = plan(&[node_with("node-1", "64Gi", "Unknown", 900, 900, taint)]);
    assert!(p.fenced && p.node_assessment.out_of_service && p.node_assessment.cordoned);
    assert!(!plan(&[dead_node("node-1")]).fenced);
}

#[test]
fn an_unknown_node_is_an_error() {
    let err = assess(
        &snapshot(&survivors()),
        "node-9",
        now(),
        &RecoveryPolicy::default(),
    )
    .unwrap_err();
    assert_eq!(err, PlanError::NoSuchNode("node-9".into()));
}

#[test]
fn the_json_has_the_documented_shape() {
    let mut docs = survivors();
    docs.push(dead_node("node-1"));
    docs.push(lease("node-1", 120));
    docs.push(vmi("web", "node-1", "4Gi", ""));
    docs.push(vm("web", "RerunOnFailure"));
    docs.push(launcher("web", "node-1", ""));
    docs.push(vmi("batch", "node-1", "4Gi", ""));
    docs.push(vm("batch", "Manual"));
    let json = serde_json::to_value(plan(&docs)).unwrap();
    assert_eq!(json["apiVersion"], "vm-recover/v1");
    assert_eq!(json["kind"], "RecoveryPlan");
    assert_eq!(json["node"], "node-1");
    assert_eq!(json["nodeState"], "Unknown");
    assert_eq!(json["fenced"], false);
    assert_eq!(json["recoverable"], true);
    assert_eq!(json["blockers"], serde_json::json!([]));
    let node = &json["nodeAssessment"];
    assert_eq!(node["state"], "Unknown");
    assert_eq!(node["lastHeartbeatSeconds"], 120);
    assert_eq!(node["leaseRenewedSeconds"], 120);
    assert_eq!(node["kubevirtHeartbeatSeconds"], 420);
    assert_eq!(node["schedulable"], "true");
    assert_eq!(node["leaseRenewing"], false);
    assert_eq!(node["outOfService"], false);
    let web = &json["vms"][0];
    assert_eq!(web["action"], "restart-elsewhere");
    assert_eq!(web["runStrategy"], "RerunOnFailure");
    assert_eq!(web["vm"], "web");
    assert_eq!(web["launcherPod"], "Running");
    assert_eq!(web["launcherPods"][0], "virt-launcher-web-x7k2p");
    assert_eq!(web["rwoVolumes"], serde_json::json!([]));
    assert!(web["target"].is_string(), "{web}");
    assert_eq!(json["vms"][1]["action"], "left-stopped");
    assert!(json["vms"][1].get("target").is_none());
}
