//! The record of every virt-launcher pod that really ran, so that tests can check that no
//! VM ever ran twice at once (split-brain).
//!
//! The simulated kubelet ([`crate::kubelet`]) appends one JSON line to
//! `<state dir>/launcher-runs.jsonl` ([`FILE`]):
//! - `"event": "started"` when it moves a launcher pod to Running;
//! - `"event": "stopped"` when that pod stops really running, with a `reason`:
//!   `deleted` (its deletion completed, force deletions included), `completed` (it went
//!   Succeeded or Failed, e.g. the source of a finished migration), or `nodeDown` (its node
//!   went down: in the sandbox `node down` means the machine is powered off, so its guests
//!   stop at once, even though the API still shows the pod Running or Terminating. When
//!   such a node comes back up, the kubelet marks those pods Failed, as after a reboot).
//!
//! A node cut off from the network (`node partition`) records nothing while it is cut off:
//! its guests keep running whatever happens to their pods in the API, so their runs stay
//! open. When it heals, its kubelet stops the pods that are gone from the API or being
//! deleted, and records them `deleted` then.
//!
//! Each line has `namespace`, `vmi` (the owning VMI's name), `vmiUID`, `pod`, `podUID`,
//! `node`, `event`, `at` (RFC 3339 with milliseconds), and on migration target pods
//! `migrationJobUID` (the pod label KubeVirt stamps on them).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

/// The file name in the state directory.
pub const FILE: &str = "launcher-runs.jsonl";
/// The label KubeVirt puts on migration target pods (reference §4).
pub const MIGRATION_JOB_LABEL: &str = "kubevirt.io/migrationJobUID";

/// The run history of the sandbox whose state directory is `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StopReason {
    /// The pod's deletion completed.
    Deleted,
    /// The pod went Succeeded or Failed.
    Completed,
    /// The pod's node went down (powered off).
    NodeDown,
}

/// What happened to the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EventKind {
    /// The kubelet moved it to Running.
    Started,
    /// It stopped really running.
    Stopped,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The pod's namespace.
    pub namespace: String,
    /// The VMI's name.
    pub vmi: String,
    /// The VMI's UID (pod label `kubevirt.io/created-by`).
    #[serde(rename = "vmiUID", default)]
    pub vmi_uid: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's UID.
    #[serde(rename = "podUID", default)]
    pub pod_uid: String,
    /// The node.
    pub node: String,
    /// Started or stopped.
    pub event: EventKind,
    /// When, RFC 3339 with milliseconds.
    pub at: String,
    /// Why it stopped (stopped events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<StopReason>,
    /// The migration whose target this pod is.
    #[serde(rename = "migrationJobUID", default, skip_serializing_if = "Option::is_none")]
    pub migration_job_uid: Option<String>,
}

impl Event {
    /// A `started` event for a launcher pod running on `node` since `at`; None when the pod
    /// is not a virt-launcher pod.
    pub fn started(pod: &Pod, node: &str, at: jiff::Timestamp) -> Option<Event> {
        let labels = pod.metadata.labels.as_ref()?;
        if labels.get("kubevirt.io").map(String::as_str) != Some("virt-launcher") {
            return None;
        }
        let vmi = pod
            .metadata
            .owner_references
            .as_ref()
            .and_then(|o| o.iter().find(|o| o.kind == "VirtualMachineInstance"))
            .map(|o| o.name.clone())
            .or_else(|| {
                pod.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("kubevirt.io/domain").cloned())
            })
            .unwrap_or_default();
        Some(Event {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            vmi,
            vmi_uid: labels.get("kubevirt.io/created-by").cloned().unwrap_or_default(),
            pod: pod.metadata.name.clone().unwrap_or_default(),
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
            node: node.to_string(),
            event: EventKind::Started,
            at: format_time(at),
            reason: None,
            migration_job_uid: labels.get(MIGRATION_JOB_LABEL).cloned(),
        })
    }

    /// The matching `stopped` event.
    pub fn stopped(&self, reason: StopReason, at: jiff::Timestamp) -> Event {
        Event {
            event: EventKind::Stopped,
            at: format_time(at),
            reason: Some(reason),
            ..self.clone()
        }
    }
}

/// RFC 3339, UTC, with milliseconds.
pub fn format_time(t: jiff::Timestamp) -> String {
    format!(
        "{}.{:03}Z",
        t.strftime("%Y-%m-%dT%H:%M:%S"),
        t.subsec_millisecond()
    )
}

/// One launcher pod's time really running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The namespace.
    pub namespace: String,
    /// The VMI's name.
    pub vmi: String,
    /// The VMI's UID.
    pub vmi_uid: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's UID.
    pub pod_uid: String,
    /// The node it ran on.
    pub node: String,
    /// The migration whose target the pod is, if it is one.
    pub migration_job_uid: Option<String>,
    /// When it started.
    pub started: jiff::Timestamp,
    /// When it stopped (None: still running).
    pub stopped: Option<jiff::Timestamp>,
    /// Why it stopped.
    pub stop_reason: Option<StopReason>,
}

impl Run {
    /// Whether the two runs were running at the same time (an open run runs for ever).
    pub fn overlaps(&self, other: &Run) -> bool {
        let ends_after = |run: &Run, t: jiff::Timestamp| run.stopped.is_none_or(|s| s > t);
        ends_after(self, other.started) && ends_after(other, self.started)
    }
}

/// The events of the history at `state_dir`, in file order (none when there is no file).
/// Lines that do not parse are skipped.
pub fn read_events(state_dir: &Path) -> Vec<Event> {
    read_events_file(&path(state_dir))
}

fn read_events_file(file: &Path) -> Vec<Event> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The runs recorded at `state_dir`, in the order they started.
pub fn read(state_dir: &Path) -> Vec<Run> {
    runs(&read_events(state_dir))
}

/// Pairs each `started` event with the pod's next `stopped` event.
pub fn runs(events: &[Event]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    let mut open: HashMap<&str, usize> = HashMap::new();
    for e in events {
        let Ok(at) = e.at.parse::<jiff::Timestamp>() else {
            continue;
        };
        match e.event {
            EventKind::Started => {
                open.insert(&e.pod_uid, out.len());
                out.push(Run {
                    namespace: e.namespace.clone(),
                    vmi: e.vmi.clone(),
                    vmi_uid: e.vmi_uid.clone(),
                    pod: e.pod.clone(),
                    pod_uid: e.pod_uid.clone(),
                    node: e.node.clone(),
                    migration_job_uid: e.migration_job_uid.clone(),
                    started: at,
                    stopped: None,
                    stop_reason: None,
                });
            }
            EventKind::Stopped => {
                if let Some(i) = open.remove(e.pod_uid.as_str()) {
                    out[i].stopped = Some(at);
                    out[i].stop_reason = e.reason;
                }
            }
        }
    }
    out.sort_by_key(|r| r.started);
    out
}

/// The pairs of runs of the same VMI name (namespace/name; a VM's VMIs all have the VM's
/// name) that were running at the same time: two copies of one VM, earlier start first.
///
/// A live migration legitimately overlaps its source and target pods: the target's domain
/// is started (paused, receiving memory) before the source's stops. Such pairs are told
/// apart by the pod labels KubeVirt sets: both pods carry the same `kubevirt.io/created-by`
/// (the same VMI object, [`Run::vmi_uid`]), and the target carries
/// `kubevirt.io/migrationJobUID` ([`Run::migration_job_uid`]). A pair with the same VMI UID
/// where either run is a migration target is therefore not reported. Pods of two
/// different VMI objects of the same name (a VM restarted elsewhere) always count.
pub fn overlapping_runs(runs: &[Run]) -> Vec<(Run, Run)> {
    let mut sorted: Vec<&Run> = runs.iter().collect();
    sorted.sort_by_key(|r| r.started);
    let mut out = Vec::new();
    for (i, a) in sorted.iter().enumerate() {
        for b in &sorted[i + 1..] {
            let same_vm = a.namespace == b.namespace && a.vmi == b.vmi;
            let migration = a.vmi_uid == b.vmi_uid
                && !a.vmi_uid.is_empty()
                && (a.migration_job_uid.is_some() || b.migration_job_uid.is_some());
            if same_vm && !migration && a.overlaps(b) {
                out.push(((*a).clone(), (*b).clone()));
            }
        }
    }
    out
}

/// The kubelet's writer of the history: which launcher pods it has running, and which
/// stopped because their node went down.
#[derive(Debug)]
pub struct Recorder {
    file: Option<PathBuf>,
    running: HashMap<String, Event>,
    powered_off: HashSet<String>,
}

impl Recorder {
    /// A recorder appending to `file` (None: records nothing), resuming from what the file
    /// already holds (a restarted simulator).
    pub fn open(file: Option<PathBuf>) -> Recorder {
        let mut running = HashMap::new();
        let mut powered_off = HashSet::new();
        for e in file.as_deref().map(read_events_file).unwrap_or_default() {
            match e.event {
                EventKind::Started => {
                    powered_off.remove(&e.pod_uid);
                    running.insert(e.pod_uid.clone(), e);
                }
                EventKind::Stopped => {
                    running.remove(&e.pod_uid);
                    if e.reason == Some(StopReason::NodeDown) {
                        powered_off.insert(e.pod_uid.clone());
                    }
                }
            }
        }
        Recorder {
            file,
            running,
            powered_off,
        }
    }

    /// Whether the pod stopped because its node went down (and has not run since).
    pub fn powered_off(&self, pod_uid: &str) -> bool {
        self.powered_off.contains(pod_uid)
    }

    /// Whether the pod is recorded as running.
    pub fn is_running(&self, pod_uid: &str) -> bool {
        self.running.contains_key(pod_uid)
    }

    /// Records that the kubelet moved `pod` to Running on `node` at `at`.
    pub fn started(&mut self, pod: &Pod, node: &str, at: jiff::Timestamp) {
        let Some(e) = Event::started(pod, node, at) else {
            return;
        };
        if self.running.contains_key(&e.pod_uid) {
            return;
        }
        self.powered_off.remove(&e.pod_uid);
        self.append(&e);
        self.running.insert(e.pod_uid.clone(), e);
    }

    /// Records that the pod stopped running, if it was.
    pub fn stopped(&mut self, pod_uid: &str, reason: StopReason, at: jiff::Timestamp) {
        if let Some(started) = self.running.remove(pod_uid) {
            if reason == StopReason::NodeDown {
                self.powered_off.insert(pod_uid.to_string());
            }
            self.append(&started.stopped(reason, at));
        }
    }

    /// Records the stops visible in `pods` (all pods): running pods that are gone,
    /// completed, or on a node in `down`. Runs on a node in `partitioned` (and not down)
    /// are left as they are: that node's kubelet sees nothing of the API, so its guests run
    /// on until it heals. Forgets powered-off pods that are gone.
    pub fn observe(
        &mut self,
        pods: &[std::sync::Arc<Pod>],
        down: &HashSet<String>,
        partitioned: &HashSet<String>,
    ) {
        let by_uid: HashMap<&str, &Pod> = pods
            .iter()
            .filter_map(|p| Some((p.metadata.uid.as_deref()?, p.as_ref())))
            .collect();
        self.powered_off.retain(|uid| by_uid.contains_key(uid.as_str()));
        let now = jiff::Timestamp::now();
        let mut stops: Vec<(String, StopReason)> = Vec::new();
        for (uid, started) in &self.running {
            if partitioned.contains(&started.node) && !down.contains(&started.node) {
                continue;
            }
            let reason = match by_uid.get(uid.as_str()) {
                None => Some(StopReason::Deleted),
                Some(pod) => {
                    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                    if matches!(phase, Some("Succeeded" | "Failed")) {
                        Some(StopReason::Completed)
                    } else if down.contains(&started.node) {
                        Some(StopReason::NodeDown)
                    } else {
                        None
                    }
                }
            };
            if let Some(r) = reason {
                stops.push((uid.clone(), r));
            }
        }
        stops.sort_by(|a, b| a.0.cmp(&b.0));
        for (uid, reason) in stops {
            self.stopped(&uid, reason, now);
        }
    }

    fn append(&self, e: &Event) {
        let Some(file) = &self.file else {
            return;
        };
        let line = match serde_json::to_string(e) {
            Ok(l) => l + "\n",
            Err(err) => {
                tracing::warn!("launcher run history: {err}");
                return;
            }
        };
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(err) = written {
            tracing::warn!("writing {}: {err}", file.display());
        }
    }
}

#[cfg(test)]
mod tests;
