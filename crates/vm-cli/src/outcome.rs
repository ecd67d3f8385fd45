//! The result of a run of the drain executor, for scripts (`-o json|yaml`): what was done, and
//! for each VM where it is, with the scheduler's message when its migration target pod could
//! not be placed.

use serde::Serialize;
use vm_kube::drain::Summary;

/// The `DrainResult` (vm-drain-safe) or `MigrationResult` (vm-recover of a Ready node).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResult<'a> {
    api_version: &'static str,
    kind: &'static str,
    node: &'a str,
    /// The node holds no VM any more (and, for a drain, only DaemonSet pods).
    completed: bool,
    /// Why the run stopped part-way.
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_because: Option<String>,
    migrated: &'a [String],
    stopped: &'a [String],
    evicted: &'a [String],
    cancelled: &'a [String],
    already_gone: &'a [String],
    /// One entry per VM the run dealt with.
    vms: Vec<VmOutcome>,
}

/// Where one VM is after the run.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VmOutcome {
    /// `ns/name`.
    pub vm: String,
    /// `migrated`, `stopped`, `alreadyGone`, `blocked` (its migration target pod stayed
    /// unschedulable for the pending timeout; the migration was cancelled), `stuck` (its
    /// migration ran past `--migration-timeout` and was cancelled) or `onNode`.
    pub outcome: &'static str,
    /// More words on the outcome (where it went, the phase of a migration left to finish).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The scheduler's last message about the VM's migration target pod, when it could not be
    /// placed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduling_message: Option<String>,
}

impl<'a> RunResult<'a> {
    /// The result of a run on `node`; `stopped_because` is `None` when it completed.
    #[must_use]
    pub fn new(
        api_version: &'static str,
        kind: &'static str,
        node: &'a str,
        stopped_because: Option<String>,
        summary: &'a Summary,
    ) -> Self {
        Self {
            api_version,
            kind,
            node,
            completed: stopped_because.is_none(),
            stopped_because,
            migrated: &summary.migrated,
            stopped: &summary.stopped,
            evicted: &summary.evicted,
            cancelled: &summary.cancelled,
            already_gone: &summary.already_gone,
            vms: vm_outcomes(summary),
        }
    }
}

/// `ns/name (words)` → (`ns/name`, `words`).
fn split_line(line: &str) -> (String, Option<String>) {
    match line.split_once(" (") {
        Some((id, rest)) => (
            id.to_string(),
            Some(rest.strip_suffix(')').unwrap_or(rest).to_string()),
        ),
        None => (line.to_string(), None),
    }
}

/// Each VM of `summary`, once.
#[must_use]
pub fn vm_outcomes(summary: &Summary) -> Vec<VmOutcome> {
    let message = |id: &str| summary.scheduling_messages.get(id).cloned();
    let mut out: Vec<VmOutcome> = Vec::new();
    for id in &summary.migrated {
        out.push(VmOutcome {
            vm: id.clone(),
            outcome: "migrated",
            detail: None,
            scheduling_message: None,
        });
    }
    for s in summary.stuck.iter().filter(|s| !s.stopped) {
        out.push(VmOutcome {
            vm: s.vm.clone(),
            outcome: "stuck",
            detail: Some(s.to_string()),
            scheduling_message: s.scheduler.clone(),
        });
    }
    for id in &summary.stopped {
        let stuck = summary.stuck.iter().find(|s| s.vm == *id);
        out.push(VmOutcome {
            vm: id.clone(),
            outcome: "stopped",
            detail: stuck.map(ToString::to_string),
            scheduling_message: stuck.and_then(|s| s.scheduler.clone()),
        });
    }
    for line in &summary.already_gone {
        let (id, detail) = split_line(line);
        out.push(VmOutcome {
            vm: id,
            outcome: "alreadyGone",
            detail,
            scheduling_message: None,
        });
    }
    for b in &summary.blocked {
        out.push(VmOutcome {
            vm: b.vm.clone(),
            outcome: "blocked",
            detail: Some(format!(
                "its migration target pod stayed Pending for {} s; the migration was cancelled and not retried",
                b.waited_seconds
            )),
            scheduling_message: Some(b.message.clone()),
        });
    }
    for line in &summary.left_on_node {
        let (id, detail) = split_line(line);
        if out.iter().any(|o| o.vm == id) {
            continue;
        }
        out.push(VmOutcome {
            scheduling_message: message(&id),
            vm: id,
            outcome: "onNode",
            detail,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use vm_kube::drain::BlockedVm;

    use super::*;

    #[test]
    fn each_vm_once_with_the_schedulers_message_where_known() {
        let summary = Summary {
            migrated: vec!["default/a".into()],
            already_gone: vec!["default/b (already on node-3, moved by someone else)".into()],
            blocked: vec![BlockedVm {
                vm: "default/c".into(),
                message: "0/3 nodes are available".into(),
                waited_seconds: 20,
            }],
            left_on_node: vec![
                "default/c (BLOCKED: ...)".into(),
                "default/d (migration Failed, left to finish)".into(),
                "default/e".into(),
            ],
            scheduling_messages: [("default/d".to_string(), "taint".to_string())].into(),
            ..Summary::default()
        };
        let vms = vm_outcomes(&summary);
        let brief: Vec<(&str, &str, Option<&str>)> = vms
            .iter()
            .map(|v| (v.vm.as_str(), v.outcome, v.scheduling_message.as_deref()))
            .collect();
        assert_eq!(
            brief,
            [
                ("default/a", "migrated", None),
                ("default/b", "alreadyGone", None),
                ("default/c", "blocked", Some("0/3 nodes are available")),
                ("default/d", "onNode", Some("taint")),
                ("default/e", "onNode", None),
            ]
        );
        assert_eq!(
            vms[1].detail.as_deref(),
            Some("already on node-3, moved by someone else")
        );
        let json = serde_json::to_value(RunResult::new(
            "vm-drain-safe/v1",
            "DrainResult",
            "node-1",
            Some("x".into()),
            &summary,
        ))
        .unwrap();
        assert_eq!(json["vms"][2]["schedulingMessage"], "0/3 nodes are available");
        assert_eq!(json["completed"], false);
        assert!(json["vms"][0].get("schedulingMessage").is_none());
    }
}
