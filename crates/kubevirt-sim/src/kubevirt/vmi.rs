//! The VMI lifecycle, as virt-controller and virt-handler drive it: defaults stamped on new
//! VMIs (KubeVirt's mutating webhook), the launcher pod, phases Pending → Scheduling →
//! Scheduled → Running, `status.nodeName` and the `kubevirt.io/nodeName` label, the Ready
//! condition copied from the pod, LiveMigratable from the volumes, and the end of a VMI:
//! Failed once its pod is gone (NodeUnresponsive when its node's handler is dead),
//! finalizers released only once no launcher pod exists.

use serde_json::{Map, Value, json};

use super::launcher::{self, UNPAUSED_GATE};
use super::migratable;
use super::world::World;
use super::world::{Action, is_final, pod_is_terminating, pod_phase, str_at};

/// Finalizer virt-controller puts on every VMI.
pub const CONTROLLER_FINALIZER: &str = "kubevirt.io/virtualMachineControllerFinalize";
/// Finalizer the VM controller puts on the VMIs it creates.
pub const VM_FINALIZER: &str = "kubevirt.io/foregroundDeleteVirtualMachine";

/// Stamps what KubeVirt's VMI mutating webhook sets on creation (emulated: applied by the
/// simulator right after creation for VMIs it did not create itself): the effective
/// eviction strategy from the cluster config (frozen from then on), `memory.guest`,
/// `spec.architecture` (amd64), the CPU model (the cluster's `cpuModel`, else host-model;
/// host-passthrough on arm64), the machine type (q35 on amd64, virt on arm64), a CPU request
/// from a CPU limit and the default pod network ([`super::webhook`]), the finalizer and the
/// observed API version annotations.
pub fn apply_defaults(vmi: &mut Value, world: &World) {
    if !vmi.get("spec").is_some_and(Value::is_object) {
        vmi["spec"] = json!({});
    }
    if !vmi.pointer("/spec/domain").is_some_and(Value::is_object) {
        vmi["spec"]["domain"] = json!({});
    }
    if str_at(vmi, "/spec/architecture").is_none_or(str::is_empty) {
        vmi["spec"]["architecture"] = json!("amd64");
    }
    let arch = str_at(vmi, "/spec/architecture").unwrap_or("amd64").to_string();
    if str_at(vmi, "/spec/domain/cpu/model").is_none_or(str::is_empty) {
        // arm64 defaults run first and set host-passthrough, so the cluster's cpuModel never
        // applies there (`setDefaultCPUArch`, `pkg/defaults/defaults.go` and `arm64.go`).
        let model = if arch == "arm64" {
            "host-passthrough".to_string()
        } else {
            world
                .config
                .cpu_model
                .clone()
                .unwrap_or_else(|| "host-model".into())
        };
        if !vmi.pointer("/spec/domain/cpu").is_some_and(Value::is_object) {
            vmi["spec"]["domain"]["cpu"] = json!({});
        }
        vmi["spec"]["domain"]["cpu"]["model"] = json!(model);
    }
    if str_at(vmi, "/spec/domain/machine/type").is_none_or(str::is_empty) {
        let machine = match arch.as_str() {
            "arm64" => "virt",
            "s390x" => "s390-ccw-virtio",
            _ => "q35",
        };
        vmi["spec"]["domain"]["machine"] = json!({"type": machine});
    }
    if !vmi
        .pointer("/spec/evictionStrategy")
        .is_some_and(Value::is_string)
    {
        vmi["spec"]["evictionStrategy"] = json!(world.config.eviction_strategy);
    }
    if vmi.pointer("/spec/domain/memory/guest").is_none()
        && let Some(mem) = str_at(vmi, "/spec/domain/resources/requests/memory")
            .or_else(|| str_at(vmi, "/spec/domain/resources/limits/memory"))
            .map(String::from)
    {
        if !vmi.pointer("/spec/domain/memory").is_some_and(Value::is_object) {
            vmi["spec"]["domain"]["memory"] = json!({});
        }
        vmi["spec"]["domain"]["memory"]["guest"] = json!(mem);
    }
    super::webhook::cpu_request_from_limit(vmi);
    if let Err(e) = super::webhook::default_network(vmi, &world.config) {
        tracing::warn!(
            "VMI {}: no default network: {e}",
            str_at(vmi, "/metadata/name").unwrap_or_default()
        );
    }
    let mut finalizers: Vec<Value> = vmi
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == CONTROLLER_FINALIZER) {
        finalizers.push(json!(CONTROLLER_FINALIZER));
    }
    vmi["metadata"]["finalizers"] = Value::Array(finalizers);
    if !vmi.pointer("/metadata/annotations").is_some_and(Value::is_object) {
        vmi["metadata"]["annotations"] = json!({});
    }
    vmi["metadata"]["annotations"]["kubevirt.io/latest-observed-api-version"] = json!("v1");
    vmi["metadata"]["annotations"]["kubevirt.io/storage-observed-api-version"] = json!("v1");
}

fn has_finalizer(vmi: &Value) -> bool {
    vmi.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|f| f == CONTROLLER_FINALIZER))
}

fn without_our_finalizers(vmi: &Value) -> Value {
    let kept: Vec<Value> = vmi
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != CONTROLLER_FINALIZER && f != VM_FINALIZER)
        .collect();
    json!({"metadata": {"finalizers": kept}})
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Replaces or adds `new` conditions (by type), removes `remove`; None when nothing changes
/// (transition times are kept when the status stays the same).
fn merge_conditions(obj: &Value, new: &[Value], remove: &[&str]) -> Option<Vec<Value>> {
    let current: Vec<Value> = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<Value> = current
        .iter()
        .filter(|c| !remove.iter().any(|r| c["type"] == *r))
        .cloned()
        .collect();
    for n in new {
        match out.iter_mut().find(|c| c["type"] == n["type"]) {
            Some(c) => {
                if c["status"] != n["status"]
                    || c.get("reason") != n.get("reason")
                    || c.get("message") != n.get("message")
                {
                    *c = n.clone();
                }
            }
            None => out.push(n.clone()),
        }
    }
    (out != current).then_some(out)
}

fn cond(type_: &str, status: &str, reason: Option<&str>, message: Option<&str>, now: &str) -> Value {
    let mut c = json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

fn phase_patch(vmi: &Value, phase: &str, now: &str, mut status: Map<String, Value>) -> Value {
    let mut ts: Vec<Value> = vmi
        .pointer("/status/phaseTransitionTimestamps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    ts.push(json!({"phase": phase, "phaseTransitionTimestamp": now}));
    status.insert("phase".into(), json!(phase));
    status.insert("phaseTransitionTimestamps".into(), Value::Array(ts));
    json!({"status": status})
}

/// What to do for one VMI. `pods` are the launcher pods it owns.
pub fn reconcile(vmi: &Value, pods: &[&Value], world: &World) -> Vec<Action> {
    let ns = str_at(vmi, "/metadata/namespace").unwrap_or_default().to_string();
    let name = str_at(vmi, "/metadata/name").unwrap_or_default().to_string();
    let uid = str_at(vmi, "/metadata/uid").unwrap_or_default().to_string();
    let phase = str_at(vmi, "/status/phase").unwrap_or_default();
    let now = world.now.as_str();
    let patch = |p: Value| Action::PatchVmi {
        ns: ns.clone(),
        name: name.clone(),
        patch: p,
    };
    // Pods not yet being deleted, completed ones included: a VMI that ends takes them all.
    let undeleted: Vec<&Value> = pods.iter().copied().filter(|p| !pod_is_terminating(p)).collect();

    if vmi.pointer("/metadata/deletionTimestamp").is_some() {
        if pods.is_empty() {
            let mut p = without_our_finalizers(vmi);
            if !is_final(phase) {
                p = merge(p, phase_patch(vmi, "Succeeded", now, Map::new()));
            }
            return vec![patch(p)];
        }
        return undeleted.iter().map(|p| Action::delete_pod(p)).collect();
    }
    if is_final(phase) {
        if pods.is_empty() {
            return if has_finalizer(vmi) {
                vec![patch(without_our_finalizers(vmi))]
            } else {
                vec![]
            };
        }
        return undeleted.iter().map(|p| Action::delete_pod(p)).collect();
    }
    if phase.is_empty() {
        let mut stamped = vmi.clone();
        apply_defaults(&mut stamped, world);
        let mut p = json!({
            "metadata": {"finalizers": stamped["metadata"]["finalizers"], "annotations": stamped["metadata"]["annotations"]},
            "spec": {
                "evictionStrategy": stamped["spec"]["evictionStrategy"],
                "architecture": stamped["spec"]["architecture"],
                "domain": {
                    "cpu": {"model": stamped["spec"]["domain"]["cpu"]["model"]},
                    "machine": {"type": stamped["spec"]["domain"]["machine"]["type"]},
                },
            },
        });
        if let Some(mem) = stamped.pointer("/spec/domain/memory") {
            p["spec"]["domain"]["memory"] = mem.clone();
        }
        if let Some(nets) = stamped.pointer("/spec/networks")
            && vmi.pointer("/spec/networks") != Some(nets)
        {
            p["spec"]["networks"] = nets.clone();
            p["spec"]["domain"]["devices"] =
                json!({"interfaces": stamped["spec"]["domain"]["devices"]["interfaces"]});
        }
        if let Some(cpu) = stamped.pointer("/spec/domain/resources/requests/cpu")
            && vmi.pointer("/spec/domain/resources/requests/cpu") != Some(cpu)
        {
            p["spec"]["domain"]["resources"] = json!({"requests": {"cpu": cpu}});
        }
        let status = Map::from_iter([
            ("guestOSInfo".to_string(), json!({})),
            ("qosClass".to_string(), json!("Burstable")),
        ]);
        return vec![patch(merge(p, phase_patch(vmi, "Pending", now, status)))];
    }

    // The pod of this VMI that is not a migration target (or the migrated-to one).
    let current_node = str_at(vmi, "/status/nodeName");
    let pod = pods
        .iter()
        .copied()
        .find(|p| current_node.is_some() && str_at(p, "/spec/nodeName") == current_node)
        .or_else(|| {
            pods.iter().copied().find(|p| {
                p.pointer("/metadata/labels/kubevirt.io~1migrationJobUID")
                    .is_none()
            })
        });

    match phase {
        "" | "Pending" => match pod {
            None if world.expecting_pod(&uid) => vec![],
            // virt-controller sets the TSC hint before it renders the pod (topology hinter).
            None if vmi.pointer("/status/topologyHints/tscFrequency").is_none()
                && let Some(freq) = super::tsc::hint(vmi, &world.node_labels, &|_| false) =>
            {
                vec![patch(
                    json!({"status": {"topologyHints": {"tscFrequency": freq}}}),
                )]
            }
            None => match super::nad::network_resources(vmi, &world.nads) {
                Ok(resources) => {
                    let mut pod = launcher::render(vmi, &world.config, None);
                    super::nad::add_to_pod(&mut pod, &resources);
                    vec![Action::CreatePod { vmi_uid: uid, pod }]
                }
                Err(e) => {
                    tracing::warn!("VMI {ns}/{name}: no launcher pod: {e}");
                    vec![]
                }
            },
            Some(_) => vec![patch(phase_patch(vmi, "Scheduling", now, Map::new()))],
        },
        "Scheduling" => scheduling(vmi, pod, world, &patch),
        "Scheduled" => {
            let Some(pod) = pod else {
                return vec![patch(failed(vmi, world, None))];
            };
            let node = str_at(pod, "/spec/nodeName").unwrap_or_default();
            if world.nodes_down.contains(node) {
                return vec![]; // virt-handler is dead there: the VMI never starts.
            }
            vec![patch(running(vmi, pod, world))]
        }
        "Running" => running_checks(vmi, pod, world, &patch),
        _ => vec![],
    }
}

fn scheduling(
    vmi: &Value,
    pod: Option<&Value>,
    world: &World,
    patch: &dyn Fn(Value) -> Action,
) -> Vec<Action> {
    let now = world.now.as_str();
    let Some(pod) = pod else {
        return vec![patch(failed(vmi, world, None))];
    };
    if is_final(pod_phase(pod)) {
        return vec![patch(failed(vmi, world, None))];
    }
    if pod_phase(pod) == "Running" && condition(pod, UNPAUSED_GATE).is_none_or(|c| c["status"] != "True") {
        return vec![Action::PatchPodStatus {
            ns: str_at(pod, "/metadata/namespace").unwrap_or_default().into(),
            name: str_at(pod, "/metadata/name").unwrap_or_default().into(),
            patch: json!({"status": {"conditions": [cond(UNPAUSED_GATE, "True", None, None, now)]}}),
        }];
    }
    if condition(pod, "Ready").is_some_and(|c| c["status"] == "True") {
        let node = str_at(pod, "/spec/nodeName").unwrap_or_default();
        let pod_uid = str_at(pod, "/metadata/uid").unwrap_or_default();
        let status = Map::from_iter([
            ("nodeName".to_string(), json!(node)),
            ("activePods".to_string(), json!({pod_uid: node})),
            (
                "conditions".to_string(),
                merge_conditions(vmi, &[], &["PodScheduled"])
                    .map(Value::Array)
                    .unwrap_or_else(|| current_conditions(vmi)),
            ),
        ]);
        let mut p = phase_patch(vmi, "Scheduled", now, status);
        p["metadata"] = json!({"labels": {"kubevirt.io/nodeName": node}});
        return vec![patch(p)];
    }
    // Copy the pod's PodScheduled condition while it is False (e.g. Unschedulable).
    if let Some(c) = condition(pod, "PodScheduled").filter(|c| c["status"] == "False") {
        let copy = cond(
            "PodScheduled",
            "False",
            c["reason"].as_str(),
            c["message"].as_str(),
            now,
        );
        if let Some(conds) = merge_conditions(vmi, &[copy], &[]) {
            return vec![patch(json!({"status": {"conditions": conds}}))];
        }
    }
    vec![]
}

/// Whether the node of `pod` (the VMI's) has a host-model CPU label, as virt-handler's
/// `hostCpuModel` (empty on arm64 nodes, which get no host-model labels).
fn node_has_host_model(vmi: &Value, pod: Option<&Value>, world: &World) -> bool {
    let node = pod
        .and_then(|p| str_at(p, "/spec/nodeName"))
        .or_else(|| str_at(vmi, "/status/nodeName"))
        .unwrap_or_default();
    world
        .node_labels
        .get(node)
        .is_some_and(|l| l.keys().any(|k| k.starts_with(launcher::HOST_MODEL_CPU_PREFIX)))
}

fn current_conditions(vmi: &Value) -> Value {
    vmi.pointer("/status/conditions").cloned().unwrap_or(json!([]))
}

/// virt-handler's report once the domain runs.
fn running(vmi: &Value, pod: &Value, world: &World) -> Value {
    let now = world.now.as_str();
    let ip = str_at(pod, "/status/podIP").unwrap_or_default();
    let iface = vmi
        .pointer("/spec/domain/devices/interfaces/0/name")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let local_disks = vmi
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .is_some_and(|v| {
            v.iter()
                .any(|v| v.get("containerDisk").is_some() || v.get("emptyDisk").is_some())
        });
    let pvcs = world
        .pvcs
        .get(str_at(vmi, "/metadata/namespace").unwrap_or_default())
        .unwrap_or(&world.no_pvcs);
    let ready = condition(pod, "Ready").is_some_and(|c| c["status"] == "True");
    let conditions = merge_conditions(
        vmi,
        &[
            if ready {
                cond("Ready", "True", None, None, now)
            } else {
                cond("Ready", "False", Some("PodNotReady"), None, now)
            },
            migratable::condition(vmi, pvcs, node_has_host_model(vmi, Some(pod), world), now),
        ],
        &["PodScheduled"],
    )
    .unwrap_or_else(|| current_conditions(vmi).as_array().cloned().unwrap_or_default());
    let guest = launcher::guest_memory(vmi)
        .map(crate::quantity::format_bytes)
        .unwrap_or_default();
    let node = str_at(pod, "/spec/nodeName").unwrap_or_default();
    let requested = str_at(vmi, "/spec/domain/machine/type")
        .filter(|m| !m.is_empty())
        .unwrap_or(match str_at(vmi, "/spec/architecture") {
            Some("arm64") => "virt",
            Some("s390x") => "s390-ccw-virtio",
            _ => "q35",
        });
    let no_labels = Default::default();
    let machine = super::machine::expanded(requested, world.node_labels.get(node).unwrap_or(&no_labels));
    let status = Map::from_iter([
        ("machine".to_string(), json!({"type": machine})),
        ("conditions".to_string(), json!(conditions)),
        (
            "interfaces".to_string(),
            json!([{"name": iface, "interfaceName": "eth0", "ipAddress": ip, "ipAddresses": [ip], "mac": mac(vmi), "infoSource": "domain, guest-agent"}]),
        ),
        (
            "migrationMethod".to_string(),
            json!(if local_disks {
                "BlockMigration"
            } else {
                "LiveMigration"
            }),
        ),
        ("migrationTransport".to_string(), json!("Unix")),
        (
            "launcherContainerImageVersion".to_string(),
            json!(launcher::LAUNCHER_IMAGE),
        ),
        (
            "qosClass".to_string(),
            pod.pointer("/status/qosClass")
                .cloned()
                .unwrap_or(json!("Burstable")),
        ),
        (
            "memory".to_string(),
            json!({"guestAtBoot": guest, "guestCurrent": guest, "guestRequested": guest}),
        ),
        (
            "currentCPUTopology".to_string(),
            json!({"sockets": launcher::vcpus(vmi), "cores": 1, "threads": 1}),
        ),
        (
            "guestOSInfo".to_string(),
            json!({"id": "fedora", "name": "Fedora Linux"}),
        ),
    ]);
    phase_patch(vmi, "Running", now, status)
}

fn mac(vmi: &Value) -> String {
    let uid = str_at(vmi, "/metadata/uid").unwrap_or_default().replace('-', "");
    let b = uid.as_bytes();
    let hex = |i: usize| std::str::from_utf8(&b[i..i + 2]).unwrap_or("00").to_string();
    if b.len() >= 6 {
        format!("02:00:00:{}:{}:{}", hex(0), hex(2), hex(4))
    } else {
        "02:00:00:00:00:01".into()
    }
}

fn running_checks(
    vmi: &Value,
    pod: Option<&Value>,
    world: &World,
    patch: &dyn Fn(Value) -> Action,
) -> Vec<Action> {
    let now = world.now.as_str();
    let Some(pod) = pod else {
        return vec![patch(failed(vmi, world, None))];
    };
    match pod_phase(pod) {
        "Failed" => return vec![patch(failed(vmi, world, None))],
        "Succeeded" => return vec![patch(phase_patch(vmi, "Succeeded", now, Map::new()))],
        _ => {}
    }
    let ready = if pod_is_terminating(pod) {
        cond("Ready", "False", Some("PodTerminating"), None, now)
    } else if condition(pod, "Ready").is_some_and(|c| c["status"] == "True") {
        cond("Ready", "True", None, None, now)
    } else {
        let c = condition(pod, "Ready");
        cond(
            "Ready",
            "False",
            c.and_then(|c| c["reason"].as_str()).or(Some("PodNotReady")),
            c.and_then(|c| c["message"].as_str()),
            now,
        )
    };
    let mut new = vec![ready];
    let mut remove: Vec<&str> = Vec::new();
    if str_at(vmi, "/status/evacuationNodeName").is_some_and(|n| !n.is_empty()) {
        new.push(cond(
            "EvictionRequested",
            "True",
            Some("EvictionRequested"),
            Some("VMI is marked for eviction"),
            now,
        ));
    } else {
        remove.push("EvictionRequested");
    }
    let node = str_at(vmi, "/status/nodeName").unwrap_or_default();
    if !world.nodes_down.contains(node) {
        let pvcs = world
            .pvcs
            .get(str_at(vmi, "/metadata/namespace").unwrap_or_default())
            .unwrap_or(&world.no_pvcs);
        new.push(migratable::condition(
            vmi,
            pvcs,
            node_has_host_model(vmi, Some(pod), world),
            now,
        ));
    }
    match merge_conditions(vmi, &new, &remove) {
        Some(conds) => vec![patch(json!({"status": {"conditions": conds}}))],
        None => vec![],
    }
}

/// The VMI goes Failed; with reason NodeUnresponsive when its node's virt-handler is dead.
fn failed(vmi: &Value, world: &World, reason: Option<&str>) -> Value {
    let node = str_at(vmi, "/status/nodeName").unwrap_or_default();
    let reason = reason.or_else(|| world.nodes_down.contains(node).then_some("NodeUnresponsive"));
    let now = world.now.as_str();
    let mut status = Map::new();
    if let Some(r) = reason {
        status.insert("reason".into(), json!(r));
    }
    let conds = merge_conditions(
        vmi,
        &[cond(
            "Ready",
            "False",
            Some("PodNotExists"),
            Some("virt-launcher pod has not yet been scheduled or is gone"),
            now,
        )],
        &[],
    );
    if let Some(c) = conds {
        status.insert("conditions".into(), json!(c));
    }
    phase_patch(vmi, "Failed", now, status)
}

/// Deep merge of two JSON objects (b wins).
pub fn merge(mut a: Value, b: Value) -> Value {
    match (a.as_object_mut(), b) {
        (Some(ao), Value::Object(bo)) => {
            for (k, v) in bo {
                let merged = match ao.remove(&k) {
                    Some(old) if old.is_object() && v.is_object() => merge(old, v),
                    _ => v,
                };
                ao.insert(k, merged);
            }
            a
        }
        (_, b) => b,
    }
}

#[cfg(test)]
mod tests;
