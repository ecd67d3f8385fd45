//! The VM controller (`vm.go` `syncRunStrategy`), per runStrategy (reference §1):
//!
//! | runStrategy | VMI Failed | VMI Succeeded | no VMI |
//! |---|---|---|---|
//! | Always | delete, recreate | delete, recreate | create |
//! | RerunOnFailure | delete + Start request | delete, no restart | create on Start request or first sync |
//! | Manual | nothing | nothing | create on Start request |
//! | Halted | delete | delete | nothing (Start flips spec to Always) |
//! | Once | nothing | nothing | create |
//!
//! A new VMI is created only once the old VMI object is completely gone, and a VMI only
//! goes away once its launcher pods are gone (see [`super::vmi`]); so nothing restarts a
//! VM on a dead node until someone force-deletes its pod.

use serde_json::{Value, json};

use super::vmi::{VM_FINALIZER, apply_defaults};
use super::world::{Action, World, is_final, str_at};

/// The effective runStrategy: `spec.runStrategy`, else the deprecated `spec.running`
/// (true → Always, false or unset → Halted).
pub fn run_strategy(vm: &Value) -> String {
    if let Some(s) = str_at(vm, "/spec/runStrategy") {
        return s.to_string();
    }
    match vm.pointer("/spec/running").and_then(Value::as_bool) {
        Some(true) => "Always".into(),
        _ => "Halted".into(),
    }
}

fn requests(vm: &Value) -> Vec<Value> {
    vm.pointer("/status/stateChangeRequests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn has_request(vm: &Value, action: &str) -> bool {
    requests(vm).iter().any(|r| r["action"] == action)
}

/// The VMI the VM controller creates: same name, labels and annotations from the template,
/// owned by the VM, with the webhook's defaults.
pub fn new_vmi(vm: &Value, world: &World) -> Value {
    let name = str_at(vm, "/metadata/name").unwrap_or_default();
    let template = vm.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut vmi = json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": name,
            "namespace": str_at(vm, "/metadata/namespace").unwrap_or("default"),
            "labels": template.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
            "annotations": template.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
            "ownerReferences": [{
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachine",
                "name": name,
                "uid": str_at(vm, "/metadata/uid").unwrap_or_default(),
                "controller": true,
                "blockOwnerDeletion": true,
            }],
            "finalizers": [VM_FINALIZER],
        },
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    });
    apply_defaults(&mut vmi, world);
    vmi
}

/// What to do for one VM; `vmi` is the VMI of the same name it controls, if any.
pub fn reconcile(vm: &Value, vmi: Option<&Value>, world: &World) -> Vec<Action> {
    let ns = str_at(vm, "/metadata/namespace").unwrap_or_default().to_string();
    let name = str_at(vm, "/metadata/name").unwrap_or_default().to_string();
    let strategy = run_strategy(vm);
    let mut actions = Vec::new();
    let mut reqs = requests(vm);
    let vm_deleting = vm.pointer("/metadata/deletionTimestamp").is_some();
    let delete_vmi = |v: &Value| Action::DeleteVmi {
        ns: ns.clone(),
        name: name.clone(),
        uid: str_at(v, "/metadata/uid").unwrap_or_default().to_string(),
    };
    let mut start_failure = vm.pointer("/status/startFailure").cloned().unwrap_or(Value::Null);
    let create = |actions: &mut Vec<Action>| {
        actions.push(Action::CreateVmi {
            ns: ns.clone(),
            vmi: new_vmi(vm, world),
        })
    };

    match vmi {
        Some(v) if v.pointer("/metadata/deletionTimestamp").is_some() => {}
        Some(v) => {
            let phase = str_at(v, "/status/phase").unwrap_or_default();
            let vmi_uid = str_at(v, "/metadata/uid").unwrap_or_default();
            let stop = reqs
                .iter()
                .position(|r| r["action"] == "Stop" && r.get("uid").is_none_or(|u| u == vmi_uid));
            if vm_deleting {
                // The garbage collector deletes the VMI.
            } else if let Some(i) = stop.filter(|_| strategy != "Halted") {
                actions.push(delete_vmi(v));
                reqs.remove(i);
            } else {
                start_failure = track_start_failure(start_failure, v, &strategy, world);
                match (strategy.as_str(), phase) {
                    ("Always", "Failed" | "Succeeded") => actions.push(delete_vmi(v)),
                    ("RerunOnFailure", "Failed") => {
                        actions.push(delete_vmi(v));
                        if !reqs.iter().any(|r| r["action"] == "Start") {
                            reqs.push(json!({"action": "Start"}));
                        }
                    }
                    ("RerunOnFailure", "Succeeded") => actions.push(delete_vmi(v)),
                    ("Halted", _) => actions.push(delete_vmi(v)),
                    _ => {}
                }
            }
        }
        None if vm_deleting => {}
        None => {
            let start = reqs.iter().position(|r| r["action"] == "Start");
            // A Stop request for a VMI that is gone has been served.
            reqs.retain(|r| r["action"] != "Stop");
            let first_sync = str_at(vm, "/status/runStrategy") != Some(strategy.as_str());
            let backing_off = matches!(strategy.as_str(), "Always" | "RerunOnFailure")
                && retry_after(&start_failure).is_some_and(|t| t > jiff::Timestamp::now());
            match strategy.as_str() {
                _ if backing_off => {}
                "Always" | "Once" => create(&mut actions),
                "RerunOnFailure" if start.is_some() || first_sync => create(&mut actions),
                "Manual" if start.is_some() => create(&mut actions),
                "Halted" if start.is_some() => {
                    let field = if vm.pointer("/spec/running").is_some() {
                        json!({"running": true})
                    } else {
                        json!({"runStrategy": "Always"})
                    };
                    actions.push(Action::PatchVm {
                        ns: ns.clone(),
                        name: name.clone(),
                        patch: json!({"spec": field}),
                    });
                }
                _ => {}
            }
            if !actions.is_empty() {
                reqs.retain(|r| r["action"] != "Start");
            }
        }
    }

    let mut status = vm_status(vm, vmi, &strategy, &reqs);
    status["startFailure"] = start_failure.clone();
    let waiting = vmi.is_none_or(|v| is_final(str_at(v, "/status/phase").unwrap_or_default()));
    if waiting && retry_after(&start_failure).is_some_and(|t| t > jiff::Timestamp::now()) {
        status["printableStatus"] = json!("CrashLoopBackOff");
    }
    let changed = [
        "printableStatus",
        "ready",
        "created",
        "runStrategy",
        "stateChangeRequests",
        "startFailure",
    ]
    .iter()
    .any(|k| {
        vm.pointer(&format!("/status/{k}")).unwrap_or(&Value::Null) != status.get(*k).unwrap_or(&Value::Null)
    }) || vm.pointer("/status/conditions") != status.get("conditions");
    if changed {
        actions.push(Action::PatchVmStatus {
            ns,
            name,
            patch: json!({"status": status}),
        });
    }
    actions
}

fn retry_after(start_failure: &Value) -> Option<jiff::Timestamp> {
    str_at(start_failure, "/retryAfterTimestamp").and_then(|t| t.parse().ok())
}

/// KubeVirt's start-failure backoff (`vm.go` `syncStartFailureStatus`): a VMI that went
/// final without ever running counts as a failed start; the next one waits
/// `base × n²` (KubeVirt: 10 s × n², plus up to 50% jitter, not simulated), capped at
/// 300 s. A VMI that reaches Running resets the count.
fn track_start_failure(current: Value, vmi: &Value, strategy: &str, world: &World) -> Value {
    if !matches!(strategy, "Always" | "RerunOnFailure" | "Once") {
        return current;
    }
    let ran = vmi
        .pointer("/status/phaseTransitionTimestamps")
        .and_then(Value::as_array)
        .is_some_and(|t| t.iter().any(|p| p["phase"] == "Running"));
    if ran {
        return Value::Null;
    }
    let uid = str_at(vmi, "/metadata/uid").unwrap_or_default();
    if !is_final(str_at(vmi, "/status/phase").unwrap_or_default())
        || str_at(&current, "/lastFailedVMIUID") == Some(uid)
    {
        return current;
    }
    let count = current
        .get("consecutiveFailCount")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        + 1;
    let wait_ms = world
        .start_backoff_base_ms
        .saturating_mul(count * count)
        .min(300_000);
    let retry = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(wait_ms as i64);
    json!({
        "consecutiveFailCount": count,
        "lastFailedVMIUID": uid,
        "retryAfterTimestamp": retry.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    })
}

fn vm_status(vm: &Value, vmi: Option<&Value>, strategy: &str, reqs: &[Value]) -> Value {
    let ready = vmi
        .and_then(|v| v.pointer("/status/conditions"))
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
    let printable = match vmi {
        None => "Stopped",
        Some(_) if vm.pointer("/metadata/deletionTimestamp").is_some() => "Terminating",
        Some(v) if v.pointer("/metadata/deletionTimestamp").is_some() => "Stopping",
        Some(v) => {
            let unschedulable = v
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        c["type"] == "PodScheduled"
                            && c["status"] == "False"
                            && c["reason"] == "Unschedulable"
                    })
                });
            let migrating = v.pointer("/status/migrationState").is_some_and(|m| {
                m.get("completed") != Some(&json!(true)) && m.get("failed") != Some(&json!(true))
            });
            match str_at(v, "/status/phase").unwrap_or_default() {
                _ if unschedulable => "ErrorUnschedulable",
                "Running" if migrating => "Migrating",
                "Running" => "Running",
                "Succeeded" | "Failed" => "Stopped",
                _ => "Starting",
            }
        }
    };
    let mut status = json!({
        "printableStatus": printable,
        "ready": ready,
        "created": vmi.is_some(),
        "runStrategy": strategy,
        "stateChangeRequests": if reqs.is_empty() { Value::Null } else { json!(reqs) },
    });
    let ready_cond = json!([{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastProbeTime": null,
        "lastTransitionTime": vm.pointer("/status/conditions/0/lastTransitionTime").cloned().unwrap_or(Value::Null)}]);
    let unchanged = vm.pointer("/status/conditions/0/status").and_then(Value::as_str)
        == Some(if ready { "True" } else { "False" });
    status["conditions"] = if unchanged {
        vm.pointer("/status/conditions").cloned().unwrap_or(ready_cond)
    } else {
        ready_cond
    };
    if !unchanged {
        status["conditions"][0]["lastTransitionTime"] =
            json!(jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    if let Some(v) = vmi
        && is_final(str_at(v, "/status/phase").unwrap_or_default())
        && has_request(vm, "Start")
    {
        status["printableStatus"] = json!("Starting");
    }
    status
}
