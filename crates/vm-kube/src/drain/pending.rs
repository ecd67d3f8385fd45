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

use k8s_openapi::api::core::v1::Pod;

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
