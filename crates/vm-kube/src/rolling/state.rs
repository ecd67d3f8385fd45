//! The record of a rolling round in the cluster: one ConfigMap, `vm-drain-safe.rolling` in the
//! lock namespace, whose `state.json` is the round's plan and progress (`vm-drain-safe/v1`
//! `RollingState`).
//!
//! The round writes it before and after every phase of every node, so that a run stopped in
//! any way (Ctrl-C, a timeout, SIGKILL, a lost laptop) leaves what `--status` shows from any
//! terminal and what the same command resumes from. A phase is recorded as begun before its
//! work starts: a resumed run redoes a begun phase (draining is idempotent; a maintenance
//! command that was running when the run died runs again), and never a finished one.

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use serde::{Deserialize, Serialize};

use crate::drain::{DrainError, retry};
use crate::error::{ApiError, Scope};

/// Label on every migration of a round, and on its state: the run id.
pub const RUN_LABEL: &str = "vm-drain-safe.kubevirt.io/rolling-run";

/// The ConfigMap's name. The dot keeps it apart from anything named after a node.
pub const STATE_NAME: &str = "vm-drain-safe.rolling";
/// The key of the state document in the ConfigMap.
const STATE_KEY: &str = "state.json";

/// Where one node of the round is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    /// Not started.
    Pending,
    /// Its drain began (cordoned, VMs leaving).
    Draining,
    /// Drained: empty of VMs and of the pods that must leave; cordoned.
    Drained,
    /// Its maintenance command began (`--exec`), or it waits for `--continue` (`--pause`).
    Maintaining,
    /// Maintenance done: waiting for it to be Ready and schedulable again.
    Maintained,
    /// Uncordoned, the VMs its drain stopped restarted; the health gate comes next.
    Uncordoned,
    /// Finished: its VMs healthy and the gate passed.
    Done,
}

impl Phase {
    /// For people: `draining`, `maintenance`.
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Draining => "draining",
            Phase::Drained => "drained",
            Phase::Maintaining => "in maintenance",
            Phase::Maintained => "maintained, waiting for Ready",
            Phase::Uncordoned => "uncordoned, health gate",
            Phase::Done => "done",
        }
    }
}

/// How the round as a whole stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoundStatus {
    /// A run works on it (or was killed while it did: the round lock says which).
    Running,
    /// Stopped after draining a node (`--pause`): `--continue` once its maintenance is done.
    Paused,
    /// Stopped part-way; the same command resumes.
    Stopped,
    /// Every node done.
    Done,
    /// Ended by `--abort`.
    Aborted,
}

/// The flags of the round, kept so that a resume (`--continue`, or the same command again)
/// does what the round started with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundOptions {
    /// The maintenance command, run with `NODE` set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<String>,
    /// Stop after each drain until `--continue`.
    #[serde(default)]
    pub pause: bool,
    /// The operator's health check, run with `NODE` set after each node's VMs are healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// The drain flags.
    #[serde(default)]
    pub shutdown_non_migratable: bool,
    /// kubectl drain's `--force`.
    #[serde(default)]
    pub force: bool,
    /// kubectl drain's `--delete-emptydir-data`.
    #[serde(default)]
    pub delete_emptydir_data: bool,
    /// `--migration-timeout` in seconds; `None` takes each VM's KubeVirt completion timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_timeout_seconds: Option<u64>,
    /// `--on-stuck shutdown`: a stuck VM is stopped instead of stopping the round.
    #[serde(default)]
    pub on_stuck_shutdown: bool,
    /// How long a maintained node may take to be Ready and schedulable, and its VMs healthy.
    pub node_timeout_seconds: u64,
    /// The maintenance time of the estimate.
    pub maintenance_seconds: u64,
    /// `--min-free-memory` in bytes: checked again before each drain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_free_memory_bytes: Option<u64>,
}

/// One node of the round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepState {
    /// The node.
    pub node: String,
    /// Where it is.
    pub phase: Phase,
    /// The estimate of the whole step (drain and maintenance), refreshed when its drain is
    /// planned again on the cluster as it is then.
    pub estimated_seconds: u64,
    /// The migrations the plan makes for it.
    pub planned_migrations: u32,
    /// When its drain began (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    /// When it was done (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// The VMs its drain migrated (`ns/name`), as the cluster's migrations of this run record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrated: Vec<String>,
    /// The VMs its drain stopped (restarted at its uncordon).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped: Vec<String>,
    /// The VMs its uncordon restarted (or found restarted), for the health gate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarted: Vec<String>,
    /// Whether its migrations were steered to the plan's targets.
    #[serde(default)]
    pub steered: bool,
    /// The last thing to know about it (why it stopped, what the gate said).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The round: `vm-drain-safe/v1` `RollingState`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundState {
    /// `vm-drain-safe/v1`.
    pub api_version: String,
    /// `RollingState`.
    pub kind: String,
    /// The run id: the label value on every migration and steering label of this round.
    pub run: String,
    /// Who started it (user, host and process).
    pub started_by: String,
    /// When (Unix seconds).
    pub started_at: i64,
    /// How it stands.
    pub status: RoundStatus,
    /// Why it stopped or paused, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The flags it runs with.
    pub options: RoundOptions,
    /// The nodes, in the order of the plan.
    pub steps: Vec<StepState>,
    /// The migrations of the plan, and those of a naive loop over the same nodes.
    pub planned_migrations: u32,
    /// What a loop of `kubectl vm-drain-safe NODE` would make.
    pub naive_migrations: u32,
    /// Whether that loop would get through every node (else `naive_migrations` counts those
    /// made before it blocks).
    pub naive_feasible: bool,
}

impl RoundState {
    /// A new round from its plan, which must be feasible: every node pending, in the plan's
    /// order, with the plan's estimates.
    #[must_use]
    pub fn from_plan(
        plan: &vm_core::rolling::RollingPlan,
        run: String,
        started_by: String,
        options: RoundOptions,
    ) -> Self {
        Self {
            api_version: "vm-drain-safe/v1".into(),
            kind: "RollingState".into(),
            run,
            started_by,
            started_at: k8s_openapi::jiff::Timestamp::now().as_second(),
            status: RoundStatus::Running,
            message: None,
            options,
            steps: plan
                .steps
                .iter()
                .map(|s| StepState {
                    node: s.node.clone(),
                    phase: Phase::Pending,
                    estimated_seconds: s.estimated_seconds,
                    planned_migrations: s.migrations,
                    started_at: None,
                    finished_at: None,
                    migrated: vec![],
                    stopped: vec![],
                    restarted: vec![],
                    steered: false,
                    note: None,
                })
                .collect(),
            planned_migrations: plan.migrations,
            naive_migrations: plan.naive_migrations,
            naive_feasible: plan.naive_feasible,
        }
    }

    /// Whether a run may still work on it: not finished and not aborted.
    #[must_use]
    pub fn is_open(&self) -> bool {
        !matches!(self.status, RoundStatus::Done | RoundStatus::Aborted)
    }

    /// The step still to finish, first in order.
    #[must_use]
    pub fn current(&self) -> Option<usize> {
        self.steps.iter().position(|s| s.phase != Phase::Done)
    }

    /// The node names in order.
    #[must_use]
    pub fn nodes(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.node.clone()).collect()
    }

    /// What a loop of `kubectl vm-drain-safe NODE` over the same nodes would have made, in
    /// words: `9`, or `2 before it blocks`.
    #[must_use]
    pub fn naive_words(&self) -> String {
        if self.naive_feasible {
            self.naive_migrations.to_string()
        } else {
            format!("{} before it blocks", self.naive_migrations)
        }
    }

    /// Migrations made so far, by the cluster's record.
    #[must_use]
    pub fn migrations(&self) -> usize {
        self.steps.iter().map(|s| s.migrated.len()).sum()
    }

    /// Time left, in seconds, for the step under way and for the round, at `now`: the estimates
    /// of what is left, scaled by how the finished steps of this run compared with theirs
    /// (measured over estimated), so that a round that runs slow is told so after its first
    /// node.
    #[must_use]
    pub fn time_left(&self, now: i64) -> TimeLeft {
        let (mut measured, mut estimated) = (0u64, 0u64);
        for s in &self.steps {
            if let (Phase::Done, Some(a), Some(b)) = (s.phase, s.started_at, s.finished_at) {
                measured += u64::try_from(b - a).unwrap_or(0);
                estimated += s.estimated_seconds;
            }
        }
        let scale = |secs: u64| -> u64 {
            if estimated == 0 {
                secs
            } else {
                u64::try_from(u128::from(secs) * u128::from(measured) / u128::from(estimated))
                    .unwrap_or(u64::MAX)
            }
        };
        let Some(i) = self.current() else {
            return TimeLeft::default();
        };
        let step = &self.steps[i];
        let elapsed = step.started_at.map_or(0, |t| u64::try_from(now - t).unwrap_or(0));
        let this = scale(step.estimated_seconds).saturating_sub(elapsed);
        let rest: u64 = self.steps[i + 1..]
            .iter()
            .map(|s| scale(s.estimated_seconds))
            .sum();
        TimeLeft {
            step: this,
            round: this + rest,
            refitted_on: self.steps.iter().filter(|s| s.phase == Phase::Done).count(),
        }
    }
}

/// What [`RoundState::time_left`] says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeLeft {
    /// Seconds left in the step under way.
    pub step: u64,
    /// Seconds left in the round.
    pub round: u64,
    /// How many finished steps the estimate was scaled on.
    pub refitted_on: usize,
}

fn api_err(e: kube::Error, verb: &'static str, ns: &str) -> DrainError {
    DrainError::Api(ApiError::from_kube(
        e,
        verb,
        "configmaps",
        Scope::Namespace(ns.to_string()),
    ))
}

/// The round's state as stored, with the resourceVersion to write it back on.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The state.
    pub state: RoundState,
    resource_version: Option<String>,
}

/// Reads the round's state, if a round was ever recorded.
///
/// # Errors
/// API errors; a ConfigMap whose document cannot be read (named, with what to do).
pub async fn load(api: &Api<ConfigMap>, ns: &str) -> Result<Option<Stored>, DrainError> {
    let Some(cm) = retry::transient("reading the rolling round's state", || api.get_opt(STATE_NAME))
        .await
        .map_err(|e| api_err(e, "get", ns))?
    else {
        return Ok(None);
    };
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(STATE_KEY))
        .ok_or_else(|| {
            DrainError::Other(format!(
                "ConfigMap {ns}/{STATE_NAME} has no {STATE_KEY}: it is not a round's state. Delete it if nothing else uses it"
            ))
        })?;
    let state: RoundState = serde_json::from_str(text).map_err(|e| {
        DrainError::Other(format!(
            "ConfigMap {ns}/{STATE_NAME}: the round's state cannot be read ({e}); `--abort` cannot help, delete it by hand after checking the nodes"
        ))
    })?;
    Ok(Some(Stored {
        state,
        resource_version: cm.metadata.resource_version,
    }))
}

/// Writes `state`: creates the ConfigMap, or replaces the version `previous` read. A 409 means
/// someone else wrote it meanwhile; the round stops rather than overwrite it.
///
/// # Errors
/// API errors; a conflicting write.
pub async fn save(
    api: &Api<ConfigMap>,
    ns: &str,
    previous: Option<&Stored>,
    state: &RoundState,
) -> Result<Stored, DrainError> {
    let text = serde_json::to_string_pretty(state)
        .map_err(|e| DrainError::Other(format!("writing the round's state: {e}")))?;
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(STATE_NAME.into()),
            namespace: Some(ns.into()),
            resource_version: previous.and_then(|p| p.resource_version.clone()),
            labels: Some([(RUN_LABEL.to_string(), state.run.clone())].into()),
            ..ObjectMeta::default()
        },
        data: Some([(STATE_KEY.to_string(), text)].into()),
        ..ConfigMap::default()
    };
    let params = PostParams::default();
    let written = match previous {
        Some(_) => {
            retry::transient("writing the rolling round's state", || {
                api.replace(STATE_NAME, &params, &cm)
            })
            .await
        }
        None => retry::transient("recording the rolling round", || api.create(&params, &cm)).await,
    };
    match written {
        Ok(cm) => Ok(Stored {
            state: state.clone(),
            resource_version: cm.metadata.resource_version,
        }),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(DrainError::Other(format!(
            "the rolling round's state ({ns}/{STATE_NAME}) was written by someone else meanwhile; this run stopped. `--status` shows it"
        ))),
        Err(e) => Err(api_err(
            e,
            if previous.is_some() { "update" } else { "create" },
            ns,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(node: &str, phase: Phase, est: u64, started: Option<i64>, finished: Option<i64>) -> StepState {
        StepState {
            node: node.into(),
            phase,
            estimated_seconds: est,
            planned_migrations: 0,
            started_at: started,
            finished_at: finished,
            migrated: vec![],
            stopped: vec![],
            restarted: vec![],
            steered: true,
            note: None,
        }
    }

    fn round(steps: Vec<StepState>) -> RoundState {
        RoundState {
            api_version: "vm-drain-safe/v1".into(),
            kind: "RollingState".into(),
            run: "r1".into(),
            started_by: "ops@h:1".into(),
            started_at: 0,
            status: RoundStatus::Running,
            message: None,
            options: RoundOptions::default(),
            steps,
            planned_migrations: 0,
            naive_migrations: 0,
            naive_feasible: true,
        }
    }

    #[test]
    fn time_left_before_any_step_finished_is_the_estimate() {
        let r = round(vec![
            step("a", Phase::Draining, 100, Some(1000), None),
            step("b", Phase::Pending, 200, None, None),
        ]);
        let left = r.time_left(1030);
        assert_eq!(
            left,
            TimeLeft {
                step: 70,
                round: 270,
                refitted_on: 0
            }
        );
    }

    #[test]
    fn time_left_is_scaled_by_the_finished_steps() {
        // The first step took twice its estimate: what is left is taken to as well.
        let r = round(vec![
            step("a", Phase::Done, 100, Some(0), Some(200)),
            step("b", Phase::Draining, 100, Some(200), None),
            step("c", Phase::Pending, 50, None, None),
        ]);
        let left = r.time_left(250);
        assert_eq!(
            left,
            TimeLeft {
                step: 150,
                round: 250,
                refitted_on: 1
            }
        );
    }

    #[test]
    fn a_step_past_its_estimate_has_nothing_left_not_a_negative_time() {
        let r = round(vec![step("a", Phase::Maintaining, 60, Some(0), None)]);
        assert_eq!(r.time_left(500).step, 0);
    }

    #[test]
    fn a_finished_round_has_no_time_left() {
        let r = round(vec![step("a", Phase::Done, 60, Some(0), Some(30))]);
        assert_eq!(r.current(), None);
        assert_eq!(r.time_left(100), TimeLeft::default());
    }

    #[test]
    fn phases_are_ordered_as_a_node_goes_through_them() {
        assert!(Phase::Pending < Phase::Draining);
        assert!(Phase::Drained < Phase::Maintaining);
        assert!(Phase::Uncordoned < Phase::Done);
    }
}
