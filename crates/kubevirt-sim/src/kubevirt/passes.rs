//! The pass loop of the simulated KubeVirt: watches the objects, takes a snapshot
//! ([`World`]) on every watch event and every second, asks each controller what it would
//! do and performs the writes, skipping those already made on the same inputs. KubeVirt
//! runs one informer-driven work queue per controller (`pkg/virt-controller/watch`); one
//! pass over everything is simpler and decides the same.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::sync::Notify;

use super::config::ClusterConfig;
use super::handler::handler_heartbeats;
use super::migratable::PvcAccessModes;
use super::perform::perform;
use super::world::{Action, World, is_final, str_at};
use super::{evacuation, eviction, migration, nad, replicaset, tsc, vm, vmi};
use crate::crds::kubevirt_resource;
use crate::shared::Shared;

/// Most writes made in one pass.
const MAX_PER_PASS: usize = 400;

fn dyn_store(client: &kube::Client, ar: &ApiResource, notify: Arc<Notify>) -> Store<DynamicObject> {
    let writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
    let store = writer.as_reader();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    tokio::spawn(
        reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .for_each(move |_| {
                notify.notify_one();
                async {}
            }),
    );
    store
}

/// Runs the simulated KubeVirt until aborted.
pub async fn run(shared: Shared) {
    let notify = Arc::new(Notify::new());
    let client = shared.client.clone();
    let vms = dyn_store(&client, &kubevirt_resource("VirtualMachine"), notify.clone());
    let vmis = dyn_store(
        &client,
        &kubevirt_resource("VirtualMachineInstance"),
        notify.clone(),
    );
    let kubevirts = dyn_store(&client, &kubevirt_resource("KubeVirt"), notify.clone());
    let vmims = dyn_store(
        &client,
        &kubevirt_resource("VirtualMachineInstanceMigration"),
        notify.clone(),
    );
    let nads = dyn_store(
        &client,
        &kubevirt_resource("NetworkAttachmentDefinition"),
        notify.clone(),
    );
    let replica_sets = dyn_store(
        &client,
        &kubevirt_resource("VirtualMachineInstanceReplicaSet"),
        notify.clone(),
    );
    let pods = crate::watch::store(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels("kubevirt.io=virt-launcher"),
        notify.clone(),
    );
    let pvcs = crate::watch::store(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
        notify.clone(),
    );
    // Node changes (heartbeats every few seconds) need no pass of their own: passes run
    // every second anyway.
    let node_store = crate::watch::store(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        Arc::new(Notify::new()),
    );
    for ready in [
        vms.wait_until_ready(),
        vmis.wait_until_ready(),
        kubevirts.wait_until_ready(),
        nads.wait_until_ready(),
    ] {
        let _ = ready.await;
    }
    let _ = pods.wait_until_ready().await;
    let _ = pvcs.wait_until_ready().await;
    let _ = node_store.wait_until_ready().await;
    tokio::spawn(handler_heartbeats(shared.clone()));
    let _webhook = match eviction::start(client.clone()).await {
        Ok(task) => Some(AbortOnDrop(task)),
        Err(e) => {
            tracing::error!("virt-api eviction webhook not started: {e}");
            None
        }
    };
    let mut evacuations_expected: HashMap<String, Instant> = HashMap::new();
    let mut replica_sets_expected: HashMap<String, Instant> = HashMap::new();

    // Writes already made for an object, keyed by Action::key, with the inputs they were
    // decided on: repeated only when the inputs change or after a while (write failed).
    let recent: Arc<Mutex<HashMap<String, (String, Instant)>>> = Arc::default();
    let mut expected: HashMap<String, Instant> = HashMap::new();
    let mut cache = JsonCache::default();
    // Objects whose last decision was "nothing to do", with the inputs it was made on:
    // not decided again until those change.
    let mut quiet: HashMap<String, String> = HashMap::new();
    loop {
        tokio::select! {
            _ = notify.notified() => {},
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
        }
        // Let a burst of events settle into one pass.
        tokio::time::sleep(Duration::from_millis(20)).await;
        cache.start_pass();
        let kv = kubevirts
            .state()
            .first()
            .map(|o| cache.view("kubevirt", o.as_ref()));
        let pod_values: Vec<Arc<Value>> = pods
            .state()
            .iter()
            .map(|p| cache.view("pod", p.as_ref()))
            .collect();
        let mut pods_by_vmi: HashMap<String, Vec<&Value>> = HashMap::new();
        for p in pod_values.iter().map(|p| p.as_ref()) {
            if let Some(owner) = p
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .and_then(|o| o.iter().find(|o| o["kind"] == "VirtualMachineInstance"))
                .and_then(|o| o["uid"].as_str())
            {
                pods_by_vmi.entry(owner.to_string()).or_default().push(p);
            }
        }
        expected.retain(|uid, t| t.elapsed() < Duration::from_secs(30) && !pods_by_vmi.contains_key(uid));
        let mut pvc_modes: HashMap<String, PvcAccessModes> = HashMap::new();
        for pvc in pvcs.state() {
            let ns = pvc.metadata.namespace.clone().unwrap_or_default();
            let modes = pvc
                .status
                .as_ref()
                .and_then(|s| s.access_modes.clone())
                .filter(|m| !m.is_empty())
                .or_else(|| pvc.spec.as_ref().and_then(|s| s.access_modes.clone()))
                .unwrap_or_default();
            pvc_modes
                .entry(ns)
                .or_default()
                .insert(pvc.metadata.name.clone().unwrap_or_default(), modes);
        }
        let world = World {
            config: ClusterConfig::from_kubevirt(kv.as_deref()),
            pvcs: pvc_modes,
            nodes_down: shared.nodes_unreachable(),
            now: jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            pods_expected: expected.keys().cloned().collect(),
            no_pvcs: PvcAccessModes::new(),
            start_backoff_base_ms: shared.config.start_backoff_base_ms,
            node_labels: node_store
                .state()
                .iter()
                .map(|n| {
                    (
                        n.metadata.name.clone().unwrap_or_default(),
                        n.metadata.labels.clone().unwrap_or_default(),
                    )
                })
                .collect(),
            nads: nads
                .state()
                .iter()
                .map(|n| nad::entry(cache.view("nad", n.as_ref()).as_ref()))
                .collect(),
        };
        // What every VMI decision also depends on: the KubeVirt config, PVCs, down nodes.
        let world_sig = {
            let mut down: Vec<&String> = world.nodes_down.iter().collect();
            down.sort();
            let pvc_sig: String = pvcs
                .state()
                .iter()
                .filter_map(|p| p.metadata.resource_version.clone())
                .chain(
                    nads.state()
                        .iter()
                        .filter_map(|n| n.metadata.resource_version.clone()),
                )
                .collect::<Vec<_>>()
                .join(",");
            format!(
                "{}#{pvc_sig}#{down:?}",
                kv.as_deref()
                    .and_then(|k| str_at(k, "/metadata/resourceVersion"))
                    .unwrap_or_default()
            )
        };
        if quiet.len() > 2 * (vms.state().len() + vmis.state().len()) + 100 {
            quiet.clear();
        }
        let vmi_arcs: Vec<Arc<Value>> = vmis
            .state()
            .iter()
            .map(|o| cache.view("vmi", o.as_ref()))
            .collect();
        let vmi_values: Vec<&Value> = vmi_arcs.iter().map(|v| v.as_ref()).collect();
        let vmi_by_name: HashMap<(&str, &str), &Value> = vmi_values
            .iter()
            .map(|v| {
                (
                    (
                        str_at(v, "/metadata/namespace").unwrap_or_default(),
                        str_at(v, "/metadata/name").unwrap_or_default(),
                    ),
                    *v,
                )
            })
            .collect();
        let mut work: Vec<(Action, String)> = Vec::new();
        for v in vmi_values.iter().copied() {
            let uid = str_at(v, "/metadata/uid").unwrap_or_default();
            let pods = pods_by_vmi.get(uid).cloned().unwrap_or_default();
            let mut inputs = format!(
                "{}|{}|{}",
                str_at(v, "/metadata/resourceVersion").unwrap_or_default(),
                world_sig,
                world.expecting_pod(uid)
            );
            for p in &pods {
                inputs.push('|');
                inputs.push_str(str_at(p, "/metadata/resourceVersion").unwrap_or_default());
            }
            let key = format!("vmi/{uid}");
            if quiet.get(&key) == Some(&inputs) {
                continue;
            }
            let actions = vmi::reconcile(v, &pods, &world);
            note_quiet(&mut quiet, key, &inputs, actions.is_empty());
            work.extend(actions.into_iter().map(|a| (a, inputs.clone())));
        }
        // virt-controller's node topology updater: TSC scheduling labels per node.
        {
            let running_on: HashSet<&str> = vmi_values
                .iter()
                .filter(|v| !is_final(str_at(v, "/status/phase").unwrap_or_default()))
                .filter_map(|v| str_at(v, "/status/nodeName"))
                .collect();
            let mut required: Vec<u64> = vmi_values
                .iter()
                .filter_map(|v| {
                    v.pointer("/status/topologyHints/tscFrequency")
                        .and_then(Value::as_u64)
                })
                .filter(|f| *f > 0)
                .collect();
            required.extend(tsc::lowest_frequency(&world.node_labels, &|n| {
                running_on.contains(n)
            }));
            for (name, labels) in &world.node_labels {
                if let Some(patch) = tsc::node_label_patch(labels, &required) {
                    let inputs = patch.to_string();
                    work.push((
                        Action::PatchNode {
                            name: name.clone(),
                            patch,
                        },
                        inputs,
                    ));
                }
            }
        }
        for vm_obj in vms.state() {
            let v = cache.view("vm", vm_obj.as_ref());
            let (ns, name) = (
                str_at(&v, "/metadata/namespace").unwrap_or_default(),
                str_at(&v, "/metadata/name").unwrap_or_default(),
            );
            let vm_uid = str_at(&v, "/metadata/uid").unwrap_or_default();
            let same_name = vmi_by_name.get(&(ns, name)).copied();
            let vmi = same_name.filter(|i| {
                i.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|o| o.iter().any(|o| o["uid"] == vm_uid))
            });
            // Another VMI of that name (not ours) blocks creation, as in KubeVirt.
            let foreign = vmi.is_none() && same_name.is_some();
            if foreign {
                continue;
            }
            // A VM backing off after failed starts waits for the clock, not for an event.
            let clock = if v.pointer("/status/startFailure").is_some_and(|f| !f.is_null()) {
                jiff::Timestamp::now().as_second().to_string()
            } else {
                String::new()
            };
            let inputs = format!(
                "{}|{}|{clock}",
                str_at(&v, "/metadata/resourceVersion").unwrap_or_default(),
                vmi.and_then(|i| str_at(i, "/metadata/resourceVersion"))
                    .unwrap_or("-")
            );
            let key = format!("vm/{vm_uid}");
            if quiet.get(&key) == Some(&inputs) {
                continue;
            }
            let actions = vm::reconcile(&v, vmi, &world);
            note_quiet(&mut quiet, key, &inputs, actions.is_empty());
            work.extend(actions.into_iter().map(|a| (a, inputs.clone())));
        }
        let vmim_arcs: Vec<Arc<Value>> = vmims
            .state()
            .iter()
            .map(|o| cache.view("vmim", o.as_ref()))
            .collect();
        let vmim_values: Vec<&Value> = vmim_arcs.iter().map(|v| v.as_ref()).collect();
        evacuations_expected.retain(|_, t| t.elapsed() < Duration::from_secs(10));
        replica_sets_expected.retain(|_, t| t.elapsed() < Duration::from_secs(5));
        let rs_arcs: Vec<Arc<Value>> = replica_sets
            .state()
            .iter()
            .map(|o| cache.view("vmirs", o.as_ref()))
            .collect();
        let rs_values: Vec<&Value> = rs_arcs.iter().map(|v| v.as_ref()).collect();
        let rs_expecting: HashSet<String> = replica_sets_expected.keys().cloned().collect();
        for a in replicaset::reconcile(&rs_values, &vmi_values, &world, &rs_expecting) {
            if let Action::CreateOwnedVmi { owner_uid, .. } = &a {
                replica_sets_expected.insert(owner_uid.clone(), Instant::now());
            }
            // Replica-set writes are guarded by the expectations above; the tick only
            // stops the same write twice within a second.
            work.push((a, jiff::Timestamp::now().as_second().to_string()));
        }
        let expecting: HashSet<String> = evacuations_expected.keys().cloned().collect();
        for a in evacuation::reconcile(
            &vmi_values,
            &vmim_values,
            &world,
            shared.config.evacuation_backoff_ms,
            &expecting,
        ) {
            if let Action::CreateVmim { vmi_uid, .. } = &a {
                evacuations_expected.insert(vmi_uid.clone(), Instant::now());
            }
            work.push((a, String::new()));
        }
        if !vmim_values.is_empty() {
            let inputs = migration::Inputs {
                vmims: &vmim_values,
                vmis: vmi_values
                    .iter()
                    .map(|v| {
                        (
                            (
                                str_at(v, "/metadata/namespace").unwrap_or_default().to_string(),
                                str_at(v, "/metadata/name").unwrap_or_default().to_string(),
                            ),
                            *v,
                        )
                    })
                    .collect(),
                pods_by_vmi: &pods_by_vmi,
            };
            // Migrations depend on each other (the limits): decided together, keyed by
            // the whole set's state.
            let mut inputs_sig = String::new();
            for v in vmim_values
                .iter()
                .copied()
                .chain(vmi_values.iter().copied())
                .chain(pod_values.iter().map(|p| p.as_ref()))
            {
                inputs_sig.push_str(str_at(v, "/metadata/resourceVersion").unwrap_or_default());
                inputs_sig.push(',');
            }
            let timings = migration::MigrationTimings {
                base_ms: shared.config.migration_base_ms,
                ms_per_gib: shared.config.migration_ms_per_gib,
                unschedulable_timeout_ms: shared.config.migration_unschedulable_timeout_ms,
            };
            // Time-driven steps (copy finished, unschedulable timeout) must not be held
            // back by unchanged inputs.
            let tick = jiff::Timestamp::now().as_second();
            work.extend(
                migration::reconcile(&inputs, &world, timings)
                    .into_iter()
                    .map(|a| (a, format!("{inputs_sig}@{tick}"))),
            );
        }
        // Skip writes already made on the same inputs (the watch lags our own writes); at
        // most MAX_PER_PASS writes per pass, so a big cluster is worked on with fresh
        // snapshots rather than in one long stale pass.
        let work: Vec<Action> = {
            let mut recent = recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.retain(|_, (_, t)| t.elapsed() < Duration::from_secs(15));
            let mut out = Vec::new();
            for (action, inputs) in work {
                if out.len() >= MAX_PER_PASS {
                    break;
                }
                let key = action.key();
                if recent.get(&key).is_some_and(|(i, _)| *i == inputs) {
                    continue;
                }
                recent.insert(key, (inputs, Instant::now()));
                out.push(action);
            }
            out
        };
        for a in &work {
            if let Action::CreatePod { vmi_uid, .. } = a {
                expected.insert(vmi_uid.clone(), Instant::now());
            }
        }
        stream::iter(work)
            .for_each_concurrent(shared.config.concurrency, |action| {
                let client = client.clone();
                let recent = recent.clone();
                async move {
                    let result = perform(&client, &action).await;
                    let mut recent = recent.lock().unwrap_or_else(|p| p.into_inner());
                    match result {
                        // Count the quiet time from the write's completion.
                        Ok(()) => {
                            if let Some(entry) = recent.get_mut(&action.key()) {
                                entry.1 = Instant::now();
                            }
                        }
                        // Retry on the next pass.
                        Err(e) => {
                            recent.remove(&action.key());
                            tracing::warn!("{}: {e}", action.key());
                        }
                    }
                }
            })
            .await;
    }
}

fn note_quiet(quiet: &mut HashMap<String, String>, key: String, inputs: &str, idle: bool) {
    if idle {
        quiet.insert(key, inputs.to_string());
    } else {
        quiet.remove(&key);
    }
}

/// JSON views of watched objects, converted once per resourceVersion: a pass over
/// thousands of objects must not serialise them all again.
#[derive(Default)]
struct JsonCache {
    views: HashMap<String, (String, Arc<Value>)>,
    seen: HashSet<String>,
}

impl JsonCache {
    /// Starts a pass: views not asked for since the previous start are dropped.
    fn start_pass(&mut self) {
        let seen = std::mem::take(&mut self.seen);
        if !seen.is_empty() {
            self.views.retain(|k, _| seen.contains(k));
        }
    }

    fn view<K: kube::Resource + serde::Serialize>(&mut self, kind: &str, obj: &K) -> Arc<Value> {
        let meta = obj.meta();
        let key = format!("{kind}/{}", meta.uid.as_deref().unwrap_or_default());
        let rv = meta.resource_version.clone().unwrap_or_default();
        self.seen.insert(key.clone());
        if let Some((r, v)) = self.views.get(&key)
            && *r == rv
        {
            return v.clone();
        }
        let v = Arc::new(serde_json::to_value(obj).unwrap_or(Value::Null));
        self.views.insert(key, (rv, v.clone()));
        v
    }
}

/// Aborts a task when dropped (the webhook server ends with the simulator).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
