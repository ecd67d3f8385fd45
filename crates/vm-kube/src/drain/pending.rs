//! Migration target pods that the scheduler cannot place: the scheduler's own words (the
//! pod's `PodScheduled` condition), and when a migration has waited long enough for a target
//! pod that stays Pending and Unschedulable.
//!
//! KubeVirt itself deletes such a target pod after 300 s and fails the migration; a drain that
//! just retried would wait the same 300 s again for each try. The executor instead follows the
//! target pods by watch, shows the message while it waits, and once a VM's target pods have
//! been unschedulable for `--pending-timeout` (counted across its tries, so a try that KubeVirt
//! failed does not restart the clock) cancels the migration and reports the VM as blocked,
//! with the message.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

/// Label KubeVirt puts on a migration target pod: the UID of its VirtualMachineInstanceMigration.
pub const MIGRATION_JOB_LABEL: &str = "kubevirt.io/migrationJobUID";
/// Annotation KubeVirt puts on a migration target pod: the name of its migration.
pub const MIGRATION_JOB_ANNOTATION: &str = "kubevirt.io/migrationJobName";

/// The migration (`namespace`, `name`) whose target pod `pod` is, from KubeVirt's annotation.
#[must_use]
pub fn migration_of(pod: &Pod) -> Option<(String, String)> {
    let name = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MIGRATION_JOB_ANNOTATION))?;
    Some((pod.metadata.namespace.clone().unwrap_or_default(), name.clone()))
}

/// The scheduler's message when `pod` is Pending because no node can take it
/// (`PodScheduled=False`, reason `Unschedulable`); `None` otherwise (scheduled, being deleted,
/// or not yet looked at by the scheduler).
#[must_use]
pub fn unschedulable_message(pod: &Pod) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref().is_some_and(|p| p != "Pending") {
        return None;
    }
    let scheduled = status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")?;
    if scheduled.status != "False" || scheduled.reason.as_deref() != Some("Unschedulable") {
        return None;
    }
    Some(
        scheduled
            .message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .unwrap_or("the scheduler found no node for it")
            .to_string(),
    )
}

/// Whether the scheduler's message says that taints kept the pod off some nodes without
/// saying which: kube-scheduler 1.20 to 1.31 named one taint per node (`had taint {k: v}, that
/// the pod didn't tolerate`, then `had untolerated taint {k: v}`), later releases only count
/// the nodes (`2 node(s) had untolerated taint(s)`), and the plugin's generic reason (`had
/// taints that the pod didn't tolerate`) never named them.
#[must_use]
pub fn taints_unnamed(message: &str) -> bool {
    message.contains("untolerated taint(s)") || message.contains("had taints that the pod didn't tolerate")
}

/// Taint effects that keep a pod off a node (`PreferNoSchedule` only lowers its score).
fn repels(taint: &Taint) -> bool {
    matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
}

/// The taint KubeVirt's nodes carry once cordoned.
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// The taints of `nodes` that `pod` does not tolerate, each with the nodes that carry it
/// (`key=value:Effect` → nodes), as the scheduler's taint filter sees them. A cordoned node is
/// left out unless the pod tolerates the cordon: the scheduler rejects it for that first
/// (`node(s) were unschedulable`) and never looks at its taints.
#[must_use]
pub fn untolerated_taints(pod: &Pod, nodes: &[Node]) -> BTreeMap<String, Vec<String>> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let tolerated = |t: &Taint| {
        tolerations
            .iter()
            .any(|tol| vm_core::placement::tolerates(tol, t))
    };
    let cordon = Taint {
        key: UNSCHEDULABLE_TAINT.into(),
        effect: "NoSchedule".into(),
        ..Taint::default()
    };
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in nodes {
        let spec = node.spec.as_ref();
        if spec.and_then(|s| s.unschedulable).unwrap_or(false) && !tolerated(&cordon) {
            continue;
        }
        let name = node.metadata.name.clone().unwrap_or_default();
        for taint in spec.and_then(|s| s.taints.as_deref()).unwrap_or_default() {
            if repels(taint) && !tolerated(taint) {
                let value = taint.value.as_deref().unwrap_or_default();
                let words = format!("{}={value}:{}", taint.key, taint.effect);
                let on = found.entry(words).or_default();
                if !on.contains(&name) {
                    on.push(name.clone());
                }
            }
        }
    }
    found
}

/// The scheduler's `message` about `pod`, with the taints named where the message leaves them
/// out (see [`taints_unnamed`]): without them a user cannot tell which taint to remove or
/// tolerate. They come from our own reading of `nodes` and the pod's tolerations, and say so.
#[must_use]
pub fn with_untolerated_taints(message: &str, pod: &Pod, nodes: &[Node]) -> String {
    if !taints_unnamed(message) {
        return message.to_string();
    }
    let found = untolerated_taints(pod, nodes);
    if found.is_empty() {
        return message.to_string();
    }
    let named: Vec<String> = found
        .iter()
        .map(|(taint, on)| format!("{taint} on {}", on.join(", ")))
        .collect();
    format!(
        "{message} [taints the pod does not tolerate, as read from the nodes: {}]",
        named.join("; ")
    )
}

/// Where the scheduler stands with a migration target pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetState {
    /// Bound to a node: whatever the VM waited for is over.
    Scheduled,
    /// Pending because no node can take it, with the scheduler's message.
    Unschedulable(String),
    /// Not decided yet (new, or being deleted): says nothing about the wait.
    Undecided,
}

/// What `pod` tells of the VM's wait: see [`TargetState`].
#[must_use]
pub fn target_state(pod: &Pod) -> TargetState {
    if pod.metadata.deletion_timestamp.is_some() {
        return TargetState::Undecided;
    }
    if let Some(message) = unschedulable_message(pod) {
        return TargetState::Unschedulable(message);
    }
    let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
    let scheduled = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "PodScheduled" && c.status == "True"));
    if bound || scheduled {
        TargetState::Scheduled
    } else {
        TargetState::Undecided
    }
}

/// One VM's wait for a target pod that the scheduler can place, over its migration tries.
#[derive(Debug, Clone, Default)]
struct Wait {
    /// Since when its target pods have been Pending and Unschedulable, with no pod of it
    /// scheduled in between; `None` while it is not waiting. A target pod that KubeVirt deletes
    /// (its own unschedulable timeout, which fails the try) does not stop the clock: the next
    /// try's pod waits on the same clock, so retries never wait the timeout again.
    since: Option<Instant>,
    /// The scheduler's last message about its target pod, kept after the pod is gone (KubeVirt
    /// deletes the pod before it fails the migration).
    message: Option<String>,
}

/// A migration that waited `waited` for a target pod the scheduler cannot place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The migration's name.
    pub migration: String,
    /// The scheduler's last message.
    pub message: String,
    /// How long the VM's target pods were Pending and Unschedulable.
    pub waited: Duration,
}

/// The VMs whose migrations are in flight, their waits for a placeable target pod, and the
/// timeout decision.
#[derive(Debug)]
pub struct PendingTargets {
    timeout: Duration,
    /// The VM (`ns/name`) of each migration in flight, by migration name.
    migrations: BTreeMap<String, String>,
    /// Each VM's wait, across its tries.
    waits: BTreeMap<String, Wait>,
}

impl PendingTargets {
    /// Migrations are cancelled once their VM's target pods were unschedulable for `timeout`.
    #[must_use]
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            migrations: BTreeMap::new(),
            waits: BTreeMap::new(),
        }
    }

    /// Records what the scheduler says at `now` of the target pod of `migration`, a migration
    /// of `vm`. Returns the message when it is new or changed, to be shown.
    pub fn observe(&mut self, migration: &str, vm: &str, state: TargetState, now: Instant) -> Option<String> {
        self.migrations.insert(migration.to_string(), vm.to_string());
        let wait = self.waits.entry(vm.to_string()).or_default();
        match state {
            TargetState::Scheduled => {
                // The wait, and its message, are over.
                *wait = Wait::default();
                None
            }
            TargetState::Undecided => None,
            TargetState::Unschedulable(m) => {
                wait.since.get_or_insert(now);
                if wait.message.as_deref() == Some(m.as_str()) {
                    None
                } else {
                    wait.message = Some(m.clone());
                    Some(m)
                }
            }
        }
    }

    /// Forgets `migration` (it ended, was cancelled, or its try failed): its VM's wait goes on
    /// into the next try.
    pub fn forget(&mut self, migration: &str) {
        self.migrations.remove(migration);
    }

    /// `vm` is done waiting: migrated, blocked, or no longer this run's to move.
    pub fn done(&mut self, vm: &str) {
        self.waits.remove(vm);
        self.migrations.retain(|_, v| v != vm);
    }

    /// The scheduler's last message about the target pod of `migration`'s VM.
    #[must_use]
    pub fn last_message(&self, migration: &str) -> Option<&str> {
        let vm = self.migrations.get(migration)?;
        self.waits.get(vm).and_then(|w| w.message.as_deref())
    }

    /// The migrations in flight whose VM has waited the timeout at `now`.
    #[must_use]
    pub fn expired(&self, now: Instant) -> Vec<Expired> {
        self.migrations
            .iter()
            .filter_map(|(migration, vm)| {
                let wait = self.waits.get(vm)?;
                let waited = now.saturating_duration_since(wait.since?);
                (waited >= self.timeout).then(|| Expired {
                    migration: migration.clone(),
                    message: wait.message.clone().unwrap_or_default(),
                    waited,
                })
            })
            .collect()
    }

    /// When the next migration in flight reaches the timeout, if one waits.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.migrations
            .values()
            .filter_map(|vm| self.waits.get(vm)?.since)
            .min()
            .map(|since| since + self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kube-scheduler 1.20's FailedScheduling message: the taint plugin names the taint
    /// (pkg/scheduler/framework/plugins/tainttoleration/taint_toleration.go at v1.20.2:
    /// `node(s) had taint {%s: %s}, that the pod didn't tolerate`).
    const TAINTS: &str = "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) had taint {maintenance: planned}, that the pod didn't tolerate.";

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn pending(reason: &str, status: &str, message: &str) -> Pod {
        pod(serde_json::json!({
            "metadata": {
                "name": "virt-launcher-vm-1-abcde",
                "namespace": "default",
                "labels": {MIGRATION_JOB_LABEL: "uid-1"},
                "annotations": {MIGRATION_JOB_ANNOTATION: "vm-drain-safe-vm-1-xyz"},
            },
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": status, "reason": reason, "message": message}],
            },
        }))
    }

    #[test]
    fn the_message_is_the_schedulers_own_when_the_pod_is_unschedulable() {
        let p = pending("Unschedulable", "False", TAINTS);
        assert_eq!(unschedulable_message(&p).as_deref(), Some(TAINTS));
        assert_eq!(
            migration_of(&p),
            Some(("default".into(), "vm-drain-safe-vm-1-xyz".into()))
        );
    }

    /// The same cluster on today's kube-scheduler: the same file on master counts the nodes
    /// (`node(s) had untolerated taint(s)`), and the preemption PostFilter adds its tail.
    const TAINTS_1_36: &str = "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) had untolerated taint(s). preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";

    fn node(name: &str, cordoned: bool, taints: serde_json::Value) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"unschedulable": cordoned, "taints": taints},
        }))
        .unwrap()
    }

    /// The sandbox test's cluster: node-1 cordoned (the drained node, with the cordon's taint),
    /// node-2 and node-3 tainted for maintenance, node-3 also with a taint that only lowers
    /// its score.
    fn three_nodes() -> Vec<Node> {
        let cordon = serde_json::json!({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"});
        let maintenance =
            serde_json::json!({"key": "maintenance", "value": "planned", "effect": "NoSchedule"});
        let soft = serde_json::json!({"key": "soft", "effect": "PreferNoSchedule"});
        vec![
            node("node-1", true, serde_json::json!([cordon])),
            node("node-2", false, serde_json::json!([maintenance])),
            node("node-3", false, serde_json::json!([maintenance, soft])),
        ]
    }

    fn tolerating(tolerations: serde_json::Value) -> Pod {
        pod(
            serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}}),
        )
    }

    #[test]
    fn a_message_that_counts_taints_without_naming_them_gets_ours() {
        let p = tolerating(serde_json::json!([]));
        let shown = with_untolerated_taints(TAINTS_1_36, &p, &three_nodes());
        assert_eq!(
            shown,
            format!(
                "{TAINTS_1_36} [taints the pod does not tolerate, as read from the nodes: maintenance=planned:NoSchedule on node-2, node-3]"
            )
        );
        // The generic reason of the taint plugin names none either.
        assert!(taints_unnamed(
            "0/2 nodes are available: 2 node(s) had taints that the pod didn't tolerate."
        ));
    }

    #[test]
    fn a_message_that_names_its_taints_is_left_as_the_scheduler_said_it() {
        let p = tolerating(serde_json::json!([]));
        assert!(!taints_unnamed(TAINTS));
        assert_eq!(with_untolerated_taints(TAINTS, &p, &three_nodes()), TAINTS);
        // 1.25 to 1.31.
        let named = "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) had untolerated taint {maintenance: planned}. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
        assert_eq!(with_untolerated_taints(named, &p, &three_nodes()), named);
    }

    #[test]
    fn tolerated_taints_and_cordoned_nodes_are_not_named() {
        // Tolerates maintenance: nothing of ours to add, the message stays the scheduler's.
        let p = tolerating(serde_json::json!([{"key": "maintenance", "operator": "Exists"}]));
        assert!(untolerated_taints(&p, &three_nodes()).is_empty());
        assert_eq!(
            with_untolerated_taints(TAINTS_1_36, &p, &three_nodes()),
            TAINTS_1_36
        );
        // A pod that tolerates the cordon is filtered by taints on the cordoned node too.
        let p = tolerating(
            serde_json::json!([{"key": UNSCHEDULABLE_TAINT, "operator": "Exists", "effect": "NoSchedule"}]),
        );
        let found = untolerated_taints(&p, &three_nodes());
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            vec![(
                "maintenance=planned:NoSchedule".to_string(),
                vec!["node-2".to_string(), "node-3".to_string()]
            )]
        );
        let mut nodes = three_nodes();
        nodes[0] = node(
            "node-1",
            true,
            serde_json::json!([{"key": "gpu", "value": "", "effect": "NoExecute"}]),
        );
        let found = untolerated_taints(&p, &nodes);
        assert_eq!(found.get("gpu=:NoExecute"), Some(&vec!["node-1".to_string()]));
    }

    #[test]
    fn no_message_unless_pending_and_unschedulable() {
        assert_eq!(unschedulable_message(&pending("", "True", "")), None);
        assert_eq!(
            unschedulable_message(&pending("SchedulerError", "False", "x")),
            None
        );
        let mut running = pending("Unschedulable", "False", TAINTS);
        running.status.as_mut().unwrap().phase = Some("Running".into());
        assert_eq!(unschedulable_message(&running), None);
        let mut deleted = pending("Unschedulable", "False", TAINTS);
        deleted.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert_eq!(unschedulable_message(&deleted), None);
        let no_conditions =
            pod(serde_json::json!({"metadata": {"name": "p"}, "status": {"phase": "Pending"}}));
        assert_eq!(unschedulable_message(&no_conditions), None);
        assert!(
            unschedulable_message(&pending("Unschedulable", "False", " "))
                .unwrap()
                .contains("no node")
        );
    }

    #[test]
    fn a_pod_is_scheduled_when_bound_or_so_marked_and_undecided_when_new_or_deleted() {
        assert_eq!(
            target_state(&pending("Unschedulable", "False", TAINTS)),
            TargetState::Unschedulable(TAINTS.into())
        );
        assert_eq!(target_state(&pending("", "True", "")), TargetState::Scheduled);
        let new = pod(serde_json::json!({"metadata": {"name": "p"}, "status": {"phase": "Pending"}}));
        assert_eq!(target_state(&new), TargetState::Undecided);
        let mut bound = new.clone();
        bound.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            node_name: Some("n2".into()),
            ..Default::default()
        });
        assert_eq!(target_state(&bound), TargetState::Scheduled);
        let mut deleted = pending("", "True", "");
        deleted.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert_eq!(target_state(&deleted), TargetState::Undecided);
    }

    #[test]
    fn a_migration_expires_after_the_timeout_of_unbroken_unschedulability() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = PendingTargets::new(s(20));
        assert_eq!(p.next_deadline(), None);
        // Shown once, and again only when the scheduler says something else.
        assert_eq!(
            p.observe("m", "ns/vm", TargetState::Unschedulable(TAINTS.into()), t0),
            Some(TAINTS.into())
        );
        assert_eq!(
            p.observe("m", "ns/vm", TargetState::Unschedulable(TAINTS.into()), t0 + s(5)),
            None
        );
        assert_eq!(p.next_deadline(), Some(t0 + s(20)));
        assert!(p.expired(t0 + s(19)).is_empty());
        let expired = p.expired(t0 + s(20));
        assert_eq!(
            expired,
            vec![Expired {
                migration: "m".into(),
                message: TAINTS.into(),
                waited: s(20)
            }]
        );
        assert_eq!(
            p.observe(
                "m",
                "ns/vm",
                TargetState::Unschedulable("other".into()),
                t0 + s(21)
            ),
            Some("other".into())
        );
        // The wait is from the first sighting, not the last change of words.
        assert_eq!(p.next_deadline(), Some(t0 + s(20)));
    }

    #[test]
    fn a_pod_that_gets_scheduled_restarts_the_clock_and_a_deleted_one_keeps_its_message() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = PendingTargets::new(s(20));
        p.observe("m", "ns/vm", TargetState::Unschedulable(TAINTS.into()), t0);
        p.observe("m", "ns/vm", TargetState::Scheduled, t0 + s(10));
        assert_eq!(p.next_deadline(), None);
        assert_eq!(p.last_message("m"), None);
        p.observe(
            "m",
            "ns/vm",
            TargetState::Unschedulable(TAINTS.into()),
            t0 + s(15),
        );
        assert!(p.expired(t0 + s(30)).is_empty());
        assert_eq!(p.expired(t0 + s(35)).len(), 1);
        // A new pod, or one being deleted, says nothing of the wait.
        p.observe("m", "ns/vm", TargetState::Undecided, t0 + s(36));
        assert_eq!(p.expired(t0 + s(36)).len(), 1);
        // KubeVirt deletes the pod, then fails the migration: the message outlives the pod.
        assert_eq!(p.last_message("m"), Some(TAINTS));
        p.forget("m");
        assert_eq!(p.last_message("m"), None);
        assert!(p.expired(t0 + s(100)).is_empty(), "no migration in flight");
    }

    #[test]
    fn a_try_that_kubevirt_failed_does_not_restart_the_vms_clock() {
        // KubeVirt's own timeout deletes the first try's target pod at 19 s and fails the
        // migration; the drain's second try waits on the same clock, so the VM is blocked at
        // the drain's timeout (20 s after the first sighting), not 20 s into the second try.
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = PendingTargets::new(s(20));
        p.observe("try-1", "ns/vm", TargetState::Unschedulable(TAINTS.into()), t0);
        p.forget("try-1");
        assert!(p.expired(t0 + s(19)).is_empty());
        // The next try's pod, before the scheduler looked at it: the clock runs on.
        p.observe("try-2", "ns/vm", TargetState::Undecided, t0 + s(19));
        assert_eq!(p.next_deadline(), Some(t0 + s(20)));
        p.observe(
            "try-2",
            "ns/vm",
            TargetState::Unschedulable(TAINTS.into()),
            t0 + s(19),
        );
        assert_eq!(p.next_deadline(), Some(t0 + s(20)));
        let expired = p.expired(t0 + s(20));
        assert_eq!(expired.len(), 1, "{expired:?}");
        assert_eq!(expired[0].migration, "try-2");
        assert_eq!(expired[0].waited, s(20));
        // Another VM keeps its own clock; a VM done waiting is forgotten.
        p.observe(
            "other",
            "ns/other",
            TargetState::Unschedulable(TAINTS.into()),
            t0 + s(19),
        );
        p.done("ns/vm");
        assert_eq!(p.next_deadline(), Some(t0 + s(39)));
        assert_eq!(p.last_message("try-2"), None);
    }
}
