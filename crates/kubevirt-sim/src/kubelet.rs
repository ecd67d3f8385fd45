//! Simulated kubelets, one per node (like kwok): without them nodes go NotReady and a
//! deleted pod stays Terminating for ever. For every node that is up they
//! - renew the node's Lease in `kube-node-lease` and post a Ready node status, which is
//!   what the real node lifecycle controller watches;
//! - move pods bound to the node to Running (Ready once their readiness gates are True),
//!   but only once their PVCs are bound and attached to the node ([`crate::storage`]):
//!   until then the pod stays Pending, its containers waiting in ContainerCreating;
//! - complete graceful deletions (delete with grace period 0);
//! - record every virt-launcher pod that starts and stops running ([`crate::history`]).
//!
//! A node marked down (`vm-sandbox node down`) is a machine powered off: its guests stop
//! at once (recorded as stopped in the run history) and it gets none of the above, so the
//! real kube-controller-manager marks it NotReady, taints it, and its pods hang in
//! Terminating, exactly as when a real node dies. When it comes back up (a reboot), the
//! launcher pods that were running on it go Failed (their containers are gone and
//! `restartPolicy: Never`), and KubeVirt fails their VMIs.
//!
//! A node cut off from the network (`vm-sandbox node partition`) keeps running: its guests
//! go on (their runs stay open in the history), but its kubelet neither renews its Lease,
//! nor posts node or pod status, nor sees what changes in the API, so to the control plane
//! it looks like a dead node. A pod deleted from the API meanwhile (say force-deleted) is
//! not stopped there. When the network heals, the kubelet catches up with the API: it
//! kills the launcher pods that are gone or being deleted (their runs stop then, reason
//! `deleted`), and resumes its heartbeats and the status of the pods that still exist.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::sync::Notify;

use crate::history::{Recorder, StopReason};
use crate::shared::Shared;
use crate::storage::VolumeView;

const MANAGER: &str = "kubevirt-sim-kubelet";

/// Runs the simulated kubelets of all nodes until aborted.
pub async fn run(shared: Shared) {
    let (nodes, node_writer) = reflector::store::<Node>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let pod_events = Arc::new(Notify::new());
    let node_stream = reflector(
        node_writer,
        watcher(
            Api::<Node>::all(shared.client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(|_| async {});
    let notify = pod_events.clone();
    let pod_stream = reflector(
        pod_writer,
        watcher(Api::<Pod>::all(shared.client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .for_each(move |_| {
        notify.notify_one();
        async {}
    });
    tokio::spawn(node_stream);
    tokio::spawn(pod_stream);
    // Attachments notify the pod loop too: a pod waiting for its volume starts on them.
    let volumes = VolumeView::start(&shared.client, pod_events.clone());
    let _ = nodes.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    volumes.wait_until_ready().await;
    tokio::spawn(heartbeats(shared.clone(), nodes.clone()));
    pod_loop(shared, nodes, pods, volumes, pod_events).await;
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// Lease renewals and node status for every node that is up and reachable.
async fn heartbeats(shared: Shared, nodes: reflector::Store<Node>) {
    let mut last_status: HashMap<String, Instant> = HashMap::new();
    let mut was_down: HashSet<String> = HashSet::new();
    let mut indexes: HashMap<String, u32> = HashMap::new();
    let mut ticker = tokio::time::interval(shared.config.heartbeat_interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let unreachable = shared.nodes_unreachable();
        let mut all = nodes.state();
        all.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut work = Vec::new();
        for node in all {
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            let next = indexes.len() as u32 + 1;
            let index = *indexes.entry(name.clone()).or_insert(next);
            if unreachable.contains(&name) {
                was_down.insert(name);
                continue;
            }
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let stale = last_status
                .get(&name)
                .is_none_or(|t| t.elapsed() >= shared.config.node_status_interval());
            let post_status = !ready || stale || was_down.remove(&name);
            if post_status {
                last_status.insert(name.clone(), Instant::now());
            }
            work.push((node, index, post_status));
        }
        stream::iter(work)
            .for_each_concurrent(shared.config.concurrency, |(node, index, post_status)| {
                let client = shared.client.clone();
                let lease_seconds = lease_duration_seconds(shared.config.heartbeat_interval());
                async move {
                    if let Err(e) = renew_lease(&client, &node, lease_seconds).await {
                        tracing::warn!("lease of {:?}: {e}", node.metadata.name);
                    }
                    if post_status && let Err(e) = post_node_status(&client, &node, index).await {
                        tracing::warn!("status of {:?}: {e}", node.metadata.name);
                    }
                }
            })
            .await;
    }
}

/// The kubelet renews its Lease every quarter of its duration (10 s of 40 s); the simulated
/// one keeps that ratio to its faster heartbeat, so a dead node's Lease expires as soon, in
/// proportion, as a real one's.
fn lease_duration_seconds(heartbeat: std::time::Duration) -> u64 {
    (heartbeat.as_secs_f64() * 4.0).ceil().max(1.0) as u64
}

async fn renew_lease(client: &kube::Client, node: &Node, lease_seconds: u64) -> Result<(), kube::Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let patch = serde_json::json!({"spec": {"holderIdentity": name, "leaseDurationSeconds": lease_seconds, "renewTime": MicroTime(now())}});
    match leases
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let lease: Lease = serde_json::from_value(serde_json::json!({
                "metadata": {
                    "name": name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: name.clone(),
                        uid: node.metadata.uid.clone().unwrap_or_default(),
                        ..Default::default()
                    }],
                },
                "spec": patch["spec"],
            }))
            .map_err(kube::Error::SerdeError)?;
            match leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

async fn post_node_status(client: &kube::Client, node: &Node, index: u32) -> Result<(), kube::Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let status = crate::nodes::ready_status(node, index, Time(now()));
    let patch = serde_json::json!({"status": status});
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map(|_| ())
}

/// What a kubelet does for one pod.
enum PodAction {
    /// Post a status; `starts` when it moves the pod to Running.
    Status {
        /// Strategic merge patch of the pod's status.
        patch: serde_json::Value,
        /// Whether the pod starts running with it.
        starts: bool,
    },
    /// Finish its graceful deletion.
    Delete,
}

/// What became of a pod action, for the run history.
enum Outcome {
    /// The pod runs since then.
    Started(jiff::Timestamp),
    /// The pod's deletion completed then.
    Deleted(jiff::Timestamp),
    /// Nothing to record.
    Nothing,
    /// The write failed (say the API server is away): to be tried again.
    Failed,
}

/// Pods bound to up, reachable nodes: start them once their volumes are attached, follow
/// their readiness gates, finish deletions; record the launcher pods that run.
async fn pod_loop(
    shared: Shared,
    nodes: reflector::Store<Node>,
    pods: reflector::Store<Pod>,
    volumes: VolumeView,
    events: Arc<Notify>,
) {
    // (uid, resourceVersion) already acted on: the store lags our own writes. A failed
    // write is forgotten, so that it is made again.
    let mut done: HashMap<String, String> = HashMap::new();
    let mut pod_ips: HashMap<String, u32> = HashMap::new();
    let mut history = Recorder::open(shared.run_history.clone());
    loop {
        tokio::select! {
            _ = events.notified() => {},
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
        }
        let down = shared.nodes_down();
        let partitioned = shared.nodes_partitioned();
        let node_ips: HashMap<String, String> = nodes
            .state()
            .iter()
            .filter_map(|n| {
                let name = n.metadata.name.clone()?;
                let ip = n
                    .status
                    .as_ref()
                    .and_then(|s| s.addresses.as_ref())
                    .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                    .map(|a| a.address.clone())
                    .unwrap_or_default();
                Some((name, ip))
            })
            .collect();
        let all = pods.state();
        history.observe(&all, &down, &partitioned);
        let attached = volumes.index();
        let live: HashSet<String> = all.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        done.retain(|uid, _| live.contains(uid));
        let mut work = Vec::new();
        for pod in all {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            let Some(host_ip) = node_ips.get(&node) else {
                continue;
            };
            let (Some(uid), Some(rv)) = (pod.metadata.uid.clone(), pod.metadata.resource_version.clone())
            else {
                continue;
            };
            if down.contains(&node) || partitioned.contains(&node) {
                // Looked at afresh once the node is back (or reachable again).
                done.remove(&uid);
                continue;
            }
            if done.get(&uid) == Some(&rv) {
                continue;
            }
            let next = pod_ips.len() as u32;
            let ip_index = *pod_ips.entry(uid.clone()).or_insert(next);
            let context = PodContext {
                host_ip,
                ip_index,
                waiting_for: attached.waiting_for(&pod, &node),
                powered_off: history.powered_off(&uid),
            };
            if let Some(action) = pod_action(&pod, &context) {
                done.insert(uid, rv);
                work.push((pod, node, action));
            }
        }
        let outcomes: Vec<(Arc<Pod>, String, Outcome)> = stream::iter(work)
            .map(|(pod, node, action)| {
                let client = shared.client.clone();
                async move {
                    let outcome = act(client, &pod, action).await;
                    (pod, node, outcome)
                }
            })
            .buffer_unordered(shared.config.concurrency.max(1))
            .collect()
            .await;
        for (pod, node, outcome) in outcomes {
            match outcome {
                Outcome::Started(at) => history.started(&pod, &node, at),
                Outcome::Deleted(at) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    history.stopped(&uid, StopReason::Deleted, at);
                }
                // As the kubelet's status manager does, try again on the next pass: the
                // pod may not change again (a pod bound just before an API server outage
                // would stay Pending for ever).
                Outcome::Failed => {
                    if let Some(uid) = &pod.metadata.uid {
                        done.remove(uid);
                    }
                }
                Outcome::Nothing => {}
            }
        }
    }
}

/// Performs a pod action.
async fn act(client: kube::Client, pod: &Pod, action: PodAction) -> Outcome {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let before = now();
    let result = match action {
        PodAction::Status { patch, starts } => api
            .patch_status(
                &name,
                &PatchParams {
                    field_manager: Some(MANAGER.into()),
                    ..Default::default()
                },
                &Patch::Strategic(&patch),
            )
            .await
            .map(|_| {
                if starts {
                    Outcome::Started(before)
                } else {
                    Outcome::Nothing
                }
            }),
        PodAction::Delete => {
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            api.delete(&name, &dp).await.map(|_| Outcome::Deleted(now()))
        }
    };
    match result {
        Ok(outcome) => outcome,
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Outcome::Nothing,
        Err(e) => {
            tracing::warn!("pod {ns}/{name}: {e}");
            Outcome::Failed
        }
    }
}

/// What the kubelet knows about a pod besides the pod itself.
struct PodContext<'a> {
    /// The node's InternalIP.
    host_ip: &'a str,
    /// Makes the pod IP unique.
    ip_index: u32,
    /// Volumes not yet bound or attached to the node.
    waiting_for: Vec<String>,
    /// Whether it was running when its node went down (powered off).
    powered_off: bool,
}

/// A pod condition, keeping its transition time when the status stays the same.
fn condition(
    conditions: &[PodCondition],
    type_: &str,
    value: &str,
    reason: Option<&str>,
    ts: &Time,
) -> serde_json::Value {
    let transition = match conditions.iter().find(|c| c.type_ == type_) {
        Some(c) if c.status == value => c.last_transition_time.clone(),
        _ => Some(ts.clone()),
    };
    let mut c = serde_json::json!({"type": type_, "status": value, "lastProbeTime": null, "lastTransitionTime": transition});
    if let Some(r) = reason {
        c["reason"] = serde_json::json!(r);
    }
    c
}

/// The pod's container statuses, all in `state`; `running` ones are started and ready.
fn container_statuses(pod: &Pod, state: serde_json::Value, running: bool) -> Vec<serde_json::Value> {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            let mut status = serde_json::json!({
                "name": c.name,
                "image": image,
                "imageID": "",
                "ready": running,
                "started": running,
                "restartCount": 0,
                "state": state,
            });
            if running {
                status["imageID"] = serde_json::json!(format!("sim://{image}"));
                status["containerID"] = serde_json::json!(format!(
                    "sim://{}-{}",
                    pod.metadata.uid.clone().unwrap_or_default(),
                    c.name
                ));
            }
            status
        })
        .collect()
}

/// What the kubelet of the pod's node should do now, if anything.
fn pod_action(pod: &Pod, ctx: &PodContext<'_>) -> Option<PodAction> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Some(PodAction::Delete);
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    if phase == "Succeeded" || phase == "Failed" {
        return None;
    }
    let conditions: &[PodCondition] = status.and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let ts = Time(now());
    if ctx.powered_off {
        // Back from a power-off: the containers are gone and never restart.
        let terminated = serde_json::json!({"terminated": {
            "exitCode": 137,
            "reason": "ContainerStatusUnknown",
            "message": "The container could not be located when the pod was terminated",
            "finishedAt": ts,
        }});
        return Some(PodAction::Status {
            patch: serde_json::json!({"status": {
                "phase": "Failed",
                "conditions": [
                    condition(conditions, "Ready", "False", Some("PodFailed"), &ts),
                    condition(conditions, "ContainersReady", "False", Some("PodFailed"), &ts),
                ],
                "containerStatuses": container_statuses(pod, terminated, false),
            }}),
            starts: false,
        });
    }
    let started = status
        .and_then(|s| s.start_time.clone())
        .unwrap_or_else(|| ts.clone());
    if phase != "Running" && !ctx.waiting_for.is_empty() {
        // ContainerCreating until the volumes are attached.
        let creating = status
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| {
                !cs.is_empty()
                    && cs.iter().all(|c| {
                        c.state
                            .as_ref()
                            .and_then(|s| s.waiting.as_ref())
                            .and_then(|w| w.reason.as_deref())
                            == Some("ContainerCreating")
                    })
            });
        if creating {
            return None;
        }
        let waiting = serde_json::json!({"waiting": {"reason": "ContainerCreating"}});
        return Some(PodAction::Status {
            patch: serde_json::json!({"status": {
                "phase": "Pending",
                "hostIP": ctx.host_ip,
                "startTime": started,
                "conditions": [
                    condition(conditions, "Initialized", "True", None, &ts),
                    condition(conditions, "ContainersReady", "False", Some("ContainersNotReady"), &ts),
                    condition(conditions, "Ready", "False", Some("ContainersNotReady"), &ts),
                    condition(conditions, "PodScheduled", "True", None, &ts),
                ],
                "containerStatuses": container_statuses(pod, waiting, false),
            }}),
            starts: false,
        });
    }
    let gates_ok = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .map(|gates| {
            gates.iter().all(|g| {
                conditions
                    .iter()
                    .any(|c| c.type_ == g.condition_type && c.status == "True")
            })
        })
        .unwrap_or(true);
    let ready = if gates_ok { "True" } else { "False" };
    let current_ready = conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str());
    if phase == "Running" && current_ready == Some(ready) {
        return None;
    }
    let running_since = if phase == "Running" {
        started.clone()
    } else {
        ts.clone()
    };
    let containers = container_statuses(
        pod,
        serde_json::json!({"running": {"startedAt": running_since}}),
        true,
    );
    let pod_ip = format!("10.244.{}.{}", ctx.ip_index / 250, ctx.ip_index % 250 + 2);
    Some(PodAction::Status {
        patch: serde_json::json!({
            "status": {
                "phase": "Running",
                "hostIP": ctx.host_ip,
                "podIP": pod_ip,
                "podIPs": [{"ip": pod_ip}],
                "startTime": started,
                "conditions": [
                    condition(conditions, "Initialized", "True", None, &ts),
                    condition(conditions, "ContainersReady", "True", None, &ts),
                    condition(conditions, "Ready", ready, None, &ts),
                    condition(conditions, "PodScheduled", "True", None, &ts),
                ],
                "containerStatuses": containers,
            }
        }),
        starts: phase != "Running",
    })
}
