//! The migration controller (reference §5): a VirtualMachineInstanceMigration walks
//! Pending → Scheduling → Scheduled → PreparingTarget → TargetReady → Running →
//! Succeeded, or Failed. Target pods are only created within `parallelMigrationsPerCluster`
//! and `parallelOutboundMigrationsPerNode` (extra VMIMs wait in Pending); the target pod is
//! placed by the real scheduler, never on the source node; the copy takes a time that grows
//! with guest memory. A migration off a dead node never reaches Running: the source side,
//! which would start it, is gone.
//!
//! Admission checks of KubeVirt's webhook (missing or final VMI, not live-migratable,
//! another migration in flight) are emulated by failing the VMIM at once.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use super::launcher::{self, UNPAUSED_GATE};
use super::world::{Action, World, is_final, pod_is_terminating, pod_phase, str_at};

/// Finalizer KubeVirt's mutator puts on every VMIM.
pub const FINALIZER: &str = "kubevirt.io/migrationJobFinalize";

/// Timings of simulated migrations.
#[derive(Debug, Clone, Copy)]
pub struct MigrationTimings {
    /// Fixed part of every migration, in ms.
    pub base_ms: u64,
    /// Extra ms per GiB of guest memory.
    pub ms_per_gib: u64,
    /// How long a target pod may stay unschedulable before the migration fails (KubeVirt:
    /// 5 min).
    pub unschedulable_timeout_ms: u64,
}

/// The inputs: VMIMs, VMIs and launcher pods of the cluster.
pub struct Inputs<'a> {
    /// All VMIMs.
    pub vmims: &'a [&'a Value],
    /// VMIs by (namespace, name).
    pub vmis: HashMap<(String, String), &'a Value>,
    /// Launcher pods by the VMI UID that owns them.
    pub pods_by_vmi: &'a HashMap<String, Vec<&'a Value>>,
}

fn phase(v: &Value) -> &str {
    str_at(v, "/status/phase").unwrap_or_default()
}

fn ts(v: &Value, p: &str) -> Option<jiff::Timestamp> {
    str_at(v, p).and_then(|t| t.parse().ok())
}

fn status_patch(vmim: &Value, new_phase: &str, now: &str, extra: Map<String, Value>) -> Value {
    let mut ts: Vec<Value> = vmim
        .pointer("/status/phaseTransitionTimestamps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    ts.push(json!({"phase": new_phase, "phaseTransitionTimestamp": now}));
    let mut status = extra;
    status.insert("phase".into(), json!(new_phase));
    status.insert("phaseTransitionTimestamps".into(), Value::Array(ts));
    json!({"status": status})
}

/// Whether a migration holds a slot: Scheduling through Running, or Pending with its
/// target pod already created.
fn holds_slot(vmim: &Value, target: Option<&Value>) -> bool {
    matches!(
        phase(vmim),
        "Scheduling" | "Scheduled" | "PreparingTarget" | "TargetReady" | "Running"
    ) || (phase(vmim) == "Pending" && target.is_some())
}

/// What to do for all migrations, oldest first.
pub fn reconcile(inputs: &Inputs, world: &World, timings: MigrationTimings) -> Vec<Action> {
    let now = world.now.as_str();
    let mut actions = Vec::new();
    let mut order: Vec<&Value> = inputs.vmims.to_vec();
    order.sort_by_key(|m| {
        str_at(m, "/metadata/creationTimestamp")
            .unwrap_or_default()
            .to_string()
    });

    let target_of = |m: &Value| -> Option<&Value> {
        let uid = str_at(m, "/metadata/uid")?;
        let vmi = inputs
            .vmis
            .get(&(ns_of(m), str_at(m, "/spec/vmiName")?.to_string()))?;
        let vmi_uid = str_at(vmi, "/metadata/uid")?;
        inputs.pods_by_vmi.get(vmi_uid)?.iter().copied().find(|p| {
            p.pointer("/metadata/labels/kubevirt.io~1migrationJobUID")
                .and_then(Value::as_str)
                == Some(uid)
        })
    };
    let mut running_total = 0usize;
    let mut outbound: HashMap<String, usize> = HashMap::new();
    for m in &order {
        if holds_slot(m, target_of(m)) {
            running_total += 1;
            if let Some(vmi) = inputs.vmis.get(&(
                ns_of(m),
                str_at(m, "/spec/vmiName").unwrap_or_default().to_string(),
            )) {
                *outbound
                    .entry(str_at(vmi, "/status/nodeName").unwrap_or_default().to_string())
                    .or_default() += 1;
            }
        }
    }

    for m in order {
        let ns = ns_of(m);
        let name = str_at(m, "/metadata/name").unwrap_or_default().to_string();
        let uid = str_at(m, "/metadata/uid").unwrap_or_default().to_string();
        let vmi_name = str_at(m, "/spec/vmiName").unwrap_or_default().to_string();
        let vmi = inputs.vmis.get(&(ns.clone(), vmi_name.clone())).copied();
        let target = target_of(m);
        let patch_status = |p: Value| Action::PatchVmimStatus {
            ns: ns.clone(),
            name: name.clone(),
            patch: p,
        };
        let patch_meta = |p: Value| Action::PatchVmim {
            ns: ns.clone(),
            name: name.clone(),
            patch: p,
        };
        let fail = |actions: &mut Vec<Action>, reason: &str| {
            if let Some(t) = target.filter(|t| !pod_is_terminating(t)) {
                actions.push(Action::delete_pod(t));
            }
            if let Some(v) = vmi
                && v.pointer("/status/migrationState/migrationUid")
                    .and_then(Value::as_str)
                    == Some(uid.as_str())
                && v.pointer("/status/migrationState/completed") != Some(&json!(true))
            {
                actions.push(vmi_patch(v, json!({
                    "metadata": {"labels": {"kubevirt.io/migrationTargetNodeName": null}},
                    "status": {"migrationState": {"failed": true, "completed": true, "endTimestamp": now, "failureReason": reason}},
                })));
            }
            let extra = Map::from_iter([(
                "conditions".to_string(),
                json!([{"type": "Failed", "status": "True", "reason": reason, "message": reason, "lastProbeTime": null, "lastTransitionTime": now}]),
            )]);
            actions.push(patch_status(status_patch(m, "Failed", now, extra)));
        };

        if m.pointer("/metadata/deletionTimestamp").is_some() {
            if !is_final(phase(m)) {
                fail(
                    &mut actions,
                    "Migration aborted: the migration object was deleted",
                );
            }
            actions.push(patch_meta(without_finalizer(m)));
            continue;
        }
        if is_final(phase(m)) {
            if target.is_some_and(|t| !pod_is_terminating(t) && phase(m) == "Failed") {
                actions.push(Action::delete_pod(target.unwrap_or(&Value::Null)));
            }
            if has_finalizer(m) {
                actions.push(patch_meta(without_finalizer(m)));
            }
            continue;
        }
        // The VMI must exist and not be final, whatever the phase.
        let Some(vmi) =
            vmi.filter(|v| v.pointer("/metadata/deletionTimestamp").is_none() && !is_final(phase(v)))
        else {
            let reason = if vmi.is_none() {
                format!("the VMI \"{ns}/{vmi_name}\" does not exist")
            } else {
                "Migration failed vmi shutdown during migration".into()
            };
            fail(&mut actions, &reason);
            continue;
        };
        let source_node = str_at(vmi, "/status/nodeName").unwrap_or_default().to_string();
        match phase(m) {
            "" => {
                let migratable = vmi
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|c| c.iter().find(|c| c["type"] == "LiveMigratable"))
                    .cloned();
                let other_in_flight = inputs.vmims.iter().any(|o| {
                    str_at(o, "/metadata/uid") != Some(uid.as_str())
                        && str_at(o, "/spec/vmiName") == Some(vmi_name.as_str())
                        && ns_of(o) == ns
                        && !is_final(phase(o))
                        && !phase(o).is_empty()
                });
                if phase(vmi) != "Running" {
                    fail(&mut actions, "Cannot migrate VMI that is not running");
                } else if let Some(c) = migratable.filter(|c| c["status"] == "False") {
                    let reason = format!(
                        "Cannot migrate VMI, Reason: {}, Message: {}",
                        c["reason"].as_str().unwrap_or_default(),
                        c["message"].as_str().unwrap_or_default()
                    );
                    fail(&mut actions, &reason);
                } else if other_in_flight {
                    fail(
                        &mut actions,
                        &format!(
                            "in-flight migration detected. Active migration job is currently migrating VMI {vmi_name}"
                        ),
                    );
                } else {
                    let mut finalizers: Vec<Value> = m
                        .pointer("/metadata/finalizers")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    if !has_finalizer(m) {
                        finalizers.push(json!(FINALIZER));
                    }
                    actions.push(patch_meta(json!({"metadata": {"labels": {"kubevirt.io/vmi-name": vmi_name}, "finalizers": finalizers}})));
                    actions.push(patch_status(status_patch(m, "Pending", now, Map::new())));
                }
            }
            "Pending" => {
                if let Some(t) = target {
                    let _ = t;
                    actions.push(patch_status(status_patch(m, "Scheduling", now, Map::new())));
                } else if !world.expecting_pod(&uid) {
                    let out = outbound.get(&source_node).copied().unwrap_or(0);
                    if running_total < world.config.parallel_migrations_per_cluster
                        && out < world.config.parallel_outbound_migrations_per_node
                    {
                        running_total += 1;
                        *outbound.entry(source_node.clone()).or_default() += 1;
                        let mut pod = launcher::render(vmi, &world.config, Some((&name, &uid, &source_node)));
                        let source_pod = inputs
                            .pods_by_vmi
                            .get(str_at(vmi, "/metadata/uid").unwrap_or_default())
                            .and_then(|ps| {
                                ps.iter().copied().find(|p| {
                                    str_at(p, "/spec/nodeName") == Some(source_node.as_str())
                                        && !is_final(pod_phase(p))
                                })
                            });
                        let template = pod["spec"]["nodeSelector"]
                            .as_object()
                            .cloned()
                            .unwrap_or_default();
                        match target_cpu_selectors(
                            vmi,
                            world.node_labels.get(&source_node),
                            source_pod,
                            &template,
                        ) {
                            Ok(cpu) => {
                                for (k, v) in cpu {
                                    pod["spec"]["nodeSelector"][k] = v;
                                }
                                // Merged under the template's selector: the VMI-derived value wins.
                                if let Some(Value::Object(added)) =
                                    m.pointer("/spec/addedNodeSelector").cloned()
                                {
                                    for (k, v) in added {
                                        if pod["spec"]["nodeSelector"].get(&k).is_none() {
                                            pod["spec"]["nodeSelector"][k] = v;
                                        }
                                    }
                                }
                                // NAD resources, as for the source pod; a missing NAD
                                // fails the rendering and the controller tries again.
                                match super::nad::network_resources(vmi, &world.nads) {
                                    Ok(resources) => {
                                        super::nad::add_to_pod(&mut pod, &resources);
                                        actions.push(Action::CreatePod {
                                            vmi_uid: uid.clone(),
                                            pod,
                                        });
                                    }
                                    Err(e) => tracing::warn!("migration {name}: no target pod: {e}"),
                                }
                            }
                            Err(reason) => fail(&mut actions, &reason),
                        }
                    }
                }
            }
            "Scheduling" => {
                let Some(t) = target else {
                    fail(&mut actions, "Target pod is down");
                    continue;
                };
                if is_final(pod_phase(t)) || pod_is_terminating(t) {
                    fail(&mut actions, "Target pod is down");
                } else if pod_phase(t) == "Running" && !pod_condition_true(t, UNPAUSED_GATE) {
                    actions.push(Action::PatchPodStatus {
                        ns: ns.clone(),
                        name: str_at(t, "/metadata/name").unwrap_or_default().into(),
                        patch: json!({"status": {"conditions": [{"type": UNPAUSED_GATE, "status": "True", "lastProbeTime": null, "lastTransitionTime": now}]}}),
                    });
                } else if pod_condition_true(t, "Ready") {
                    actions.push(patch_status(status_patch(m, "Scheduled", now, Map::new())));
                } else if unschedulable_for(t, world) > timings.unschedulable_timeout_ms {
                    fail(
                        &mut actions,
                        "Target pod could not be scheduled: unschedulable timeout",
                    );
                }
            }
            "Scheduled" => {
                let Some(t) = target.filter(|t| !pod_is_terminating(t) && !is_final(pod_phase(t))) else {
                    fail(&mut actions, "Target pod is down");
                    continue;
                };
                let target_node = str_at(t, "/spec/nodeName").unwrap_or_default();
                let source_pod = inputs
                    .pods_by_vmi
                    .get(str_at(vmi, "/metadata/uid").unwrap_or_default())
                    .and_then(|ps| {
                        ps.iter()
                            .find(|p| str_at(p, "/spec/nodeName") == Some(source_node.as_str()))
                    })
                    .and_then(|p| str_at(p, "/metadata/name"))
                    .unwrap_or_default();
                // The hand-off replaces the VMI's migration state (KubeVirt writes a new one): the
                // outcome of an earlier, failed or aborted, migration must not carry over.
                actions.push(vmi_patch(vmi, json!({
                    "metadata": {"labels": {"kubevirt.io/migrationTargetNodeName": target_node}},
                    "status": {"migrationState": {
                        "completed": null,
                        "failed": null,
                        "failureReason": null,
                        "startTimestamp": null,
                        "endTimestamp": null,
                        "targetNodeAddress": null,
                        "targetNodeDomainDetected": null,
                        "targetNodeDomainReadyTimestamp": null,
                        "abortRequested": null,
                        "abortStatus": null,
                        "migrationUid": uid,
                        "sourceNode": source_node,
                        "sourcePod": source_pod,
                        "targetNode": target_node,
                        "targetPod": str_at(t, "/metadata/name").unwrap_or_default(),
                        "mode": "PreCopy",
                        "migrationConfiguration": {
                            "parallelMigrationsPerCluster": world.config.parallel_migrations_per_cluster,
                            "parallelOutboundMigrationsPerNode": world.config.parallel_outbound_migrations_per_node,
                            "completionTimeoutPerGiB": 150,
                            "progressTimeout": 150,
                            "bandwidthPerMigration": "0Mi",
                            "allowAutoConverge": false,
                            "allowPostCopy": false,
                        },
                    }, "migrationMethod": vmi.pointer("/status/migrationMethod").cloned().unwrap_or(json!("LiveMigration"))},
                })));
                actions.push(patch_status(status_patch(m, "PreparingTarget", now, Map::new())));
            }
            "PreparingTarget" | "TargetReady" | "Running" => {
                let Some(t) = target.filter(|t| !pod_is_terminating(t) && !is_final(pod_phase(t))) else {
                    fail(&mut actions, "Target pod is down");
                    continue;
                };
                let state = vmi
                    .pointer("/status/migrationState")
                    .cloned()
                    .unwrap_or(Value::Null);
                if state.get("migrationUid").and_then(Value::as_str) != Some(uid.as_str()) {
                    fail(
                        &mut actions,
                        "The VMI's migration state was cleared or taken over by another migration",
                    );
                    continue;
                }
                let target_node = str_at(t, "/spec/nodeName").unwrap_or_default().to_string();
                match phase(m) {
                    // The target virt-handler reports its address (if it is alive).
                    "PreparingTarget" if state.get("targetNodeAddress").is_none() => {
                        if !world.nodes_down.contains(&target_node) {
                            let ip = str_at(t, "/status/hostIP").unwrap_or("10.0.0.1");
                            actions.push(vmi_patch(vmi, json!({"status": {"migrationState": {"targetNodeAddress": ip, "targetNodeDomainDetected": false}}})));
                        }
                    }
                    "PreparingTarget" => {
                        actions.push(patch_status(status_patch(m, "TargetReady", now, Map::new())))
                    }
                    // The source side starts the copy (only if it is alive).
                    "TargetReady" if state.get("startTimestamp").is_none() => {
                        if !world.nodes_down.contains(&source_node) {
                            actions.push(vmi_patch(vmi, json!({"status": {"migrationState": {"startTimestamp": jiff::Timestamp::now().to_string()}}})));
                        }
                    }
                    "TargetReady" => actions.push(patch_status(status_patch(m, "Running", now, Map::new()))),
                    _ => {
                        if state.get("completed") == Some(&json!(true)) {
                            // The VMI already points at the target: now the source pod completes.
                            if let Some(source) = state
                                .get("sourcePod")
                                .and_then(Value::as_str)
                                .filter(|s| !s.is_empty())
                            {
                                actions.push(Action::PatchPodStatus {
                                    ns: ns.clone(),
                                    name: source.into(),
                                    patch: json!({"status": {"phase": "Succeeded", "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}]}}),
                                });
                            }
                            let extra = Map::from_iter([("migrationState".to_string(), state.clone())]);
                            actions.push(patch_status(status_patch(m, "Succeeded", now, extra)));
                            continue;
                        }
                        if world.nodes_down.contains(&source_node) || world.nodes_down.contains(&target_node)
                        {
                            continue; // stalls; KubeVirt's progress timeout is not simulated
                        }
                        let started = ts(&state, "/startTimestamp").unwrap_or_else(jiff::Timestamp::now);
                        let gib = launcher::guest_memory(vmi).unwrap_or(0) as f64 / (1u64 << 30) as f64;
                        let needed = timings.base_ms + (gib * timings.ms_per_gib as f64) as u64;
                        let elapsed =
                            jiff::Timestamp::now().duration_since(started).as_millis().max(0) as u64;
                        if elapsed >= needed {
                            actions.push(complete(vmi, t, now));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    actions
}

/// The hand-over: the VMI now runs on the target node (the source pod completes in the
/// next pass, once this is visible, so the VMI is never seen with a completed pod).
fn complete(vmi: &Value, target: &Value, now: &str) -> Action {
    let target_node = str_at(target, "/spec/nodeName").unwrap_or_default();
    let target_uid = str_at(target, "/metadata/uid").unwrap_or_default();
    vmi_patch(
        vmi,
        json!({
            "metadata": {"labels": {"kubevirt.io/nodeName": target_node, "kubevirt.io/migrationTargetNodeName": null}},
            "status": {
                "nodeName": target_node,
                "activePods": {target_uid: target_node},
                "evacuationNodeName": null,
                "interfaces": [{"name": vmi.pointer("/status/interfaces/0/name").cloned().unwrap_or(json!("default")),
                                "interfaceName": "eth0",
                                "ipAddress": str_at(target, "/status/podIP").unwrap_or_default(),
                                "ipAddresses": [str_at(target, "/status/podIP").unwrap_or_default()],
                                "mac": vmi.pointer("/status/interfaces/0/mac").cloned().unwrap_or(Value::Null),
                                "infoSource": "domain, guest-agent"}],
                "migrationState": {"completed": true, "endTimestamp": now, "targetNodeDomainDetected": true, "targetNodeDomainReadyTimestamp": now},
            },
        }),
    )
}

/// The CPU selectors KubeVirt adds to a migration target pod (reference §3): for a
/// host-model VMI, the source pod's `cpu-feature` / `cpu-model-migration` keys if it has any
/// (a former target), else `cpu-model-migration.…/<H>` for the source node's host-model `<H>`
/// and `cpu-feature.…/<f>` for each of its host-model required features; for every VMI, the
/// source node's CPU vendor (unless the template already names one). An error (no target
/// pod) when a host-model VMI's source node has no host-model label.
pub fn target_cpu_selectors(
    vmi: &Value,
    source_labels: Option<&BTreeMap<String, String>>,
    source_pod: Option<&Value>,
    template: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    let empty = BTreeMap::new();
    let labels = source_labels.unwrap_or(&empty);
    let source_node = str_at(vmi, "/status/nodeName").unwrap_or_default();
    if launcher::is_host_model(vmi) {
        let inherited: Vec<(String, Value)> = source_pod
            .and_then(|p| p.pointer("/spec/nodeSelector"))
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(k, _)| {
                k.contains(launcher::CPU_FEATURE_PREFIX) || k.contains(launcher::CPU_MODEL_MIGRATION_PREFIX)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !inherited.is_empty() {
            out.extend(inherited);
        } else {
            let Some((host_model, value)) = labels
                .iter()
                .find_map(|(k, v)| Some((k.strip_prefix(launcher::HOST_MODEL_CPU_PREFIX)?, v)))
            else {
                return Err(format!(
                    "NoSuitableNodesForHostModelMigration: the source node {source_node} has no {}<model> label, \
                     so no node can be chosen for a host-model migration",
                    launcher::HOST_MODEL_CPU_PREFIX
                ));
            };
            out.insert(
                format!("{}{host_model}", launcher::CPU_MODEL_MIGRATION_PREFIX),
                json!(value),
            );
            for k in labels.keys() {
                if let Some(f) = k.strip_prefix(launcher::HOST_MODEL_REQUIRED_FEATURES_PREFIX) {
                    out.insert(format!("{}{f}", launcher::CPU_FEATURE_PREFIX), json!("true"));
                }
            }
        }
    }
    let has_vendor = template
        .keys()
        .any(|k| k.starts_with(launcher::CPU_VENDOR_PREFIX));
    if !has_vendor && let Some(vendor) = labels.keys().find(|k| k.starts_with(launcher::CPU_VENDOR_PREFIX)) {
        out.insert(vendor.clone(), json!("true"));
    }
    Ok(out)
}

fn vmi_patch(vmi: &Value, patch: Value) -> Action {
    Action::PatchVmi {
        ns: str_at(vmi, "/metadata/namespace").unwrap_or_default().into(),
        name: str_at(vmi, "/metadata/name").unwrap_or_default().into(),
        patch,
    }
}

fn ns_of(v: &Value) -> String {
    str_at(v, "/metadata/namespace").unwrap_or_default().to_string()
}

fn has_finalizer(m: &Value) -> bool {
    m.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

fn without_finalizer(m: &Value) -> Value {
    let kept: Vec<Value> = m
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != FINALIZER)
        .collect();
    json!({"metadata": {"finalizers": kept}})
}

fn pod_condition_true(pod: &Value, type_: &str) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|c| c["type"] == type_ && c["status"] == "True"))
}

/// How long (ms) the pod has been unschedulable, 0 if it is not.
fn unschedulable_for(pod: &Value, _world: &World) -> u64 {
    let unschedulable = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
        });
    if !unschedulable {
        return 0;
    }
    ts(pod, "/metadata/creationTimestamp")
        .map(|t| jiff::Timestamp::now().duration_since(t).as_millis().max(0) as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
