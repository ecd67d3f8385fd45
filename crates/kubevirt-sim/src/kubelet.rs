//! Simulated kubelets, one per node (like kwok): without them nodes go NotReady and a
//! deleted pod stays Terminating for ever. For every node that is up they
//! - renew the node's Lease in `kube-node-lease` and post a Ready node status, which is
//!   what the real node lifecycle controller watches;
//! - move pods bound to the node to Running (Ready once their readiness gates are True);
//! - complete graceful deletions (delete with grace period 0).
//!
//! A node marked down (`vm-sandbox node down`) gets none of this: the real
//! kube-controller-manager then marks it NotReady, taints it, and its pods hang in
//! Terminating, exactly as when a real node dies.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::sync::Notify;

use crate::sim::Simulator;
use crate::state::read_nodes_down;

const MANAGER: &str = "kubevirt-sim-kubelet";

/// Runs the simulated kubelets of all nodes until aborted.
pub async fn run(sim: Simulator) {
    let (nodes, node_writer) = reflector::store::<Node>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let pod_events = Arc::new(Notify::new());
    let node_stream = reflector(
        node_writer,
        watcher(Api::<Node>::all(sim.client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .for_each(|_| async {});
    let notify = pod_events.clone();
    let pod_stream = reflector(
        pod_writer,
        watcher(Api::<Pod>::all(sim.client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .for_each(move |_| {
        notify.notify_one();
        async {}
    });
    tokio::spawn(node_stream);
    tokio::spawn(pod_stream);
    let _ = nodes.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    tokio::spawn(heartbeats(sim.clone(), nodes.clone()));
    pod_loop(sim, nodes, pods, pod_events).await;
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// Lease renewals and node status for every node that is up.
async fn heartbeats(sim: Simulator, nodes: reflector::Store<Node>) {
    let mut last_status: HashMap<String, Instant> = HashMap::new();
    let mut was_down: HashSet<String> = HashSet::new();
    let mut indexes: HashMap<String, u32> = HashMap::new();
    let mut ticker = tokio::time::interval(sim.config.heartbeat_interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let down = read_nodes_down(&sim.nodes_down_dir);
        let mut all = nodes.state();
        all.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut work = Vec::new();
        for node in all {
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            let next = indexes.len() as u32 + 1;
            let index = *indexes.entry(name.clone()).or_insert(next);
            if down.contains(&name) {
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
                .is_none_or(|t| t.elapsed() >= sim.config.node_status_interval());
            let post_status = !ready || stale || was_down.remove(&name);
            if post_status {
                last_status.insert(name.clone(), Instant::now());
            }
            work.push((node, index, post_status));
        }
        stream::iter(work)
            .for_each_concurrent(sim.config.concurrency, |(node, index, post_status)| {
                let client = sim.client.clone();
                async move {
                    if let Err(e) = renew_lease(&client, &node).await {
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

async fn renew_lease(client: &kube::Client, node: &Node) -> Result<(), kube::Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let patch = serde_json::json!({"spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": MicroTime(now())}});
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
    /// Start it (or update its readiness).
    Status(serde_json::Value),
    /// Finish its graceful deletion.
    Delete,
}

/// Pods bound to up nodes: start them, follow their readiness gates, finish deletions.
async fn pod_loop(
    sim: Simulator,
    nodes: reflector::Store<Node>,
    pods: reflector::Store<Pod>,
    events: Arc<Notify>,
) {
    // (uid, resourceVersion) already acted on: the store lags our own writes.
    let mut done: HashMap<String, String> = HashMap::new();
    let mut pod_ips: HashMap<String, u32> = HashMap::new();
    loop {
        tokio::select! {
            _ = events.notified() => {},
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
        }
        let down = read_nodes_down(&sim.nodes_down_dir);
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
            if down.contains(&node) {
                continue;
            }
            let (Some(uid), Some(rv)) = (pod.metadata.uid.clone(), pod.metadata.resource_version.clone())
            else {
                continue;
            };
            if done.get(&uid) == Some(&rv) {
                continue;
            }
            let next = pod_ips.len() as u32;
            let ip_index = *pod_ips.entry(uid.clone()).or_insert(next);
            if let Some(action) = pod_action(&pod, host_ip, ip_index) {
                done.insert(uid, rv);
                work.push((pod, action));
            }
        }
        stream::iter(work)
            .for_each_concurrent(sim.config.concurrency, |(pod, action)| {
                let client = sim.client.clone();
                async move {
                    let ns = pod.metadata.namespace.clone().unwrap_or_default();
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let api: Api<Pod> = Api::namespaced(client, &ns);
                    let result = match action {
                        PodAction::Status(patch) => api
                            .patch_status(
                                &name,
                                &PatchParams {
                                    field_manager: Some(MANAGER.into()),
                                    ..Default::default()
                                },
                                &Patch::Strategic(&patch),
                            )
                            .await
                            .map(|_| ()),
                        PodAction::Delete => {
                            let dp = DeleteParams {
                                grace_period_seconds: Some(0),
                                preconditions: Some(Preconditions {
                                    uid: pod.metadata.uid.clone(),
                                    resource_version: None,
                                }),
                                ..Default::default()
                            };
                            api.delete(&name, &dp).await.map(|_| ())
                        }
                    };
                    match result {
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                        Err(e) => tracing::warn!("pod {ns}/{name}: {e}"),
                        Ok(()) => {}
                    }
                }
            })
            .await;
    }
}

/// What the kubelet of the pod's node should do now, if anything.
fn pod_action(pod: &Pod, host_ip: &str, ip_index: u32) -> Option<PodAction> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Some(PodAction::Delete);
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    if phase == "Succeeded" || phase == "Failed" {
        return None;
    }
    let conditions: &[k8s_openapi::api::core::v1::PodCondition] =
        status.and_then(|s| s.conditions.as_deref()).unwrap_or_default();
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
    let ts = Time(now());
    let started = status
        .and_then(|s| s.start_time.clone())
        .unwrap_or_else(|| ts.clone());
    let cond = |type_: &str, value: &str| {
        let previous = conditions.iter().find(|c| c.type_ == type_);
        let transition = match previous {
            Some(c) if c.status == value => c.last_transition_time.clone(),
            _ => Some(ts.clone()),
        };
        serde_json::json!({"type": type_, "status": value, "lastProbeTime": null, "lastTransitionTime": transition})
    };
    let containers: Vec<serde_json::Value> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name,
                "image": c.image.clone().unwrap_or_default(),
                "imageID": format!("sim://{}", c.image.clone().unwrap_or_default()),
                "containerID": format!("sim://{}-{}", pod.metadata.uid.clone().unwrap_or_default(), c.name),
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": started}},
            })
        })
        .collect();
    let pod_ip = format!("10.244.{}.{}", ip_index / 250, ip_index % 250 + 2);
    Some(PodAction::Status(serde_json::json!({
        "status": {
            "phase": "Running",
            "hostIP": host_ip,
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": started,
            "conditions": [
                cond("Initialized", "True"),
                cond("ContainersReady", "True"),
                cond("Ready", ready),
                cond("PodScheduled", "True"),
            ],
            "containerStatuses": containers,
        }
    })))
}
