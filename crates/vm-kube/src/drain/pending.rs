//! Migration target pods that the scheduler cannot place: the scheduler's own words (the
//! pod's `PodScheduled` condition), and when a migration has waited long enough for a target
//! pod that stays Pending and Unschedulable.
//!
//! KubeVirt itself deletes such a target pod after 300 s and fails the migration; a drain that
//! just retried would wait the same 300 s again for each try. The executor instead follows the
//! target pods by watch, shows the message while it waits, and after `--pending-timeout` cancels
//! the migration and reports the VM as blocked, with the message.

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

/// One migration's target pod, as last seen.
#[derive(Debug, Clone)]
struct Target {
    /// Since when it has been Pending and Unschedulable without a break; `None` while it is
    /// not (scheduled, or gone).
    since: Option<Instant>,
    /// The scheduler's last message about it, kept after the pod is gone (KubeVirt deletes the
    /// pod before it fails the migration).
    message: Option<String>,
}

/// A migration that waited `waited` for a target pod the scheduler cannot place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The migration's name.
    pub migration: String,
    /// The scheduler's last message.
    pub message: String,
    /// How long the pod was Pending and Unschedulable.
    pub waited: Duration,
}

/// The target pods of the migrations in flight, by migration name, and the timeout decision.
#[derive(Debug)]
pub struct PendingTargets {
    timeout: Duration,
    targets: BTreeMap<String, Target>,
}

impl PendingTargets {
    /// Migrations are cancelled once their target pod was unschedulable for `timeout`.
    #[must_use]
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            targets: BTreeMap::new(),
        }
    }

    /// Records what the scheduler says of the target pod of `migration` at `now` (`None`: the
    /// pod is not unschedulable). Returns the message when it is new or changed, to be shown.
    pub fn observe(&mut self, migration: &str, message: Option<String>, now: Instant) -> Option<String> {
        let target = self.targets.entry(migration.to_string()).or_insert(Target {
            since: None,
            message: None,
        });
        match message {
            None => {
                // Scheduled (or not looked at yet): the wait, and its message, are over.
                target.since = None;
                target.message = None;
                None
            }
            Some(m) => {
                target.since.get_or_insert(now);
                if target.message.as_deref() == Some(m.as_str()) {
                    None
                } else {
                    target.message = Some(m.clone());
                    Some(m)
                }
            }
        }
    }

    /// The target pod of `migration` was deleted: the wait stops, its last message is kept.
    pub fn pod_gone(&mut self, migration: &str) {
        if let Some(t) = self.targets.get_mut(migration) {
            t.since = None;
        }
    }

    /// Forgets `migration` (it ended, or was cancelled).
    pub fn forget(&mut self, migration: &str) {
        self.targets.remove(migration);
    }

    /// The scheduler's last message about the target pod of `migration`.
    #[must_use]
    pub fn last_message(&self, migration: &str) -> Option<&str> {
        self.targets.get(migration).and_then(|t| t.message.as_deref())
    }

    /// The migrations whose target pod has been unschedulable for the timeout at `now`.
    #[must_use]
    pub fn expired(&self, now: Instant) -> Vec<Expired> {
        self.targets
            .iter()
            .filter_map(|(name, t)| {
                let since = t.since?;
                let waited = now.saturating_duration_since(since);
                (waited >= self.timeout).then(|| Expired {
                    migration: name.clone(),
                    message: t.message.clone().unwrap_or_default(),
                    waited,
                })
            })
            .collect()
    }

    /// When the next migration reaches the timeout, if one waits.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.targets
            .values()
            .filter_map(|t| t.since)
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
    fn a_migration_expires_after_the_timeout_of_unbroken_unschedulability() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = PendingTargets::new(s(20));
        assert_eq!(p.next_deadline(), None);
        // Shown once, and again only when the scheduler says something else.
        assert_eq!(p.observe("m", Some(TAINTS.into()), t0), Some(TAINTS.into()));
        assert_eq!(p.observe("m", Some(TAINTS.into()), t0 + s(5)), None);
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
            p.observe("m", Some("other".into()), t0 + s(21)),
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
        p.observe("m", Some(TAINTS.into()), t0);
        p.observe("m", None, t0 + s(10));
        assert_eq!(p.next_deadline(), None);
        assert_eq!(p.last_message("m"), None);
        p.observe("m", Some(TAINTS.into()), t0 + s(15));
        assert!(p.expired(t0 + s(30)).is_empty());
        assert_eq!(p.expired(t0 + s(35)).len(), 1);
        // KubeVirt deletes the pod, then fails the migration: the message outlives the pod.
        p.pod_gone("m");
        assert!(p.expired(t0 + s(100)).is_empty());
        assert_eq!(p.last_message("m"), Some(TAINTS));
        p.forget("m");
        assert_eq!(p.last_message("m"), None);
    }
}
