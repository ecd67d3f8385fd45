//! The VirtualMachineInstanceReplicaSet controller: keeps `spec.replicas` VMIs from the
//! template (name `<replicaset>` + random suffix, owned by the replica set), removes
//! finished ones so they are replaced, and reports `replicas`/`readyReplicas`.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::vmi::apply_defaults;
use super::world::{Action, World, is_final, str_at};

fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let exact = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    let exprs = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|es| {
            es.iter().all(|e| {
                let key = e["key"].as_str().unwrap_or_default();
                let values: Vec<&str> = e["values"]
                    .as_array()
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match e["operator"].as_str().unwrap_or_default() {
                    "In" => label(key).is_some_and(|l| values.contains(&l)),
                    "NotIn" => label(key).is_none_or(|l| !values.contains(&l)),
                    "Exists" => label(key).is_some(),
                    "DoesNotExist" => label(key).is_none(),
                    _ => false,
                }
            })
        });
    exact && exprs
}

/// What to do for all replica sets. `expecting` holds replica sets whose creations are not
/// visible yet.
pub fn reconcile(
    sets: &[&Value],
    vmis: &[&Value],
    world: &World,
    expecting: &HashSet<String>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for rs in sets.iter().copied() {
        let ns = str_at(rs, "/metadata/namespace").unwrap_or_default();
        let name = str_at(rs, "/metadata/name").unwrap_or_default();
        let uid = str_at(rs, "/metadata/uid").unwrap_or_default();
        if rs.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let selector = rs.pointer("/spec/selector").cloned().unwrap_or(json!({}));
        let owned: Vec<&Value> = vmis
            .iter()
            .copied()
            .filter(|v| str_at(v, "/metadata/namespace") == Some(ns))
            .filter(|v| {
                v.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|o| o.iter().any(|o| o["uid"] == uid && o["controller"] == true))
            })
            .filter(|v| selector_matches(&selector, v.pointer("/metadata/labels").unwrap_or(&Value::Null)))
            .collect();
        let active: Vec<&&Value> = owned
            .iter()
            .filter(|v| {
                v.pointer("/metadata/deletionTimestamp").is_none()
                    && !is_final(str_at(v, "/status/phase").unwrap_or_default())
            })
            .collect();
        for finished in owned.iter().filter(|v| {
            v.pointer("/metadata/deletionTimestamp").is_none()
                && is_final(str_at(v, "/status/phase").unwrap_or_default())
        }) {
            actions.push(Action::DeleteVmi {
                ns: ns.into(),
                name: str_at(finished, "/metadata/name").unwrap_or_default().into(),
                uid: str_at(finished, "/metadata/uid").unwrap_or_default().into(),
            });
        }
        let paused = rs.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
        let want = rs.pointer("/spec/replicas").and_then(Value::as_u64).unwrap_or(1) as usize;
        if !paused && active.len() < want && !expecting.contains(uid) {
            for i in active.len()..want {
                let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
                let mut vmi = json!({
                    "apiVersion": "kubevirt.io/v1",
                    "kind": "VirtualMachineInstance",
                    "metadata": {
                        "generateName": name,
                        "namespace": ns,
                        "labels": template.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
                        "annotations": template.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
                        "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceReplicaSet", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}],
                    },
                    "spec": template.get("spec").cloned().unwrap_or(json!({})),
                });
                apply_defaults(&mut vmi, world);
                actions.push(Action::CreateOwnedVmi {
                    owner_uid: uid.into(),
                    index: i,
                    vmi,
                });
            }
        } else if !paused && active.len() > want {
            let mut extra: Vec<&&&Value> = active.iter().collect();
            extra.sort_by_key(|v| {
                std::cmp::Reverse(
                    str_at(v, "/metadata/creationTimestamp")
                        .unwrap_or_default()
                        .to_string(),
                )
            });
            for v in extra.into_iter().take(active.len() - want) {
                actions.push(Action::DeleteVmi {
                    ns: ns.into(),
                    name: str_at(v, "/metadata/name").unwrap_or_default().into(),
                    uid: str_at(v, "/metadata/uid").unwrap_or_default().into(),
                });
            }
        }
        let ready = active
            .iter()
            .filter(|v| {
                v.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            })
            .count();
        let label_selector = selector
            .get("matchLabels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let status =
            json!({"replicas": active.len(), "readyReplicas": ready, "labelSelector": label_selector});
        let current = rs.get("status").cloned().unwrap_or(Value::Null);
        if ["replicas", "readyReplicas", "labelSelector"]
            .iter()
            .any(|k| current.get(*k) != status.get(*k))
        {
            actions.push(Action::PatchStatus {
                kind: "VirtualMachineInstanceReplicaSet",
                ns: ns.into(),
                name: name.into(),
                patch: json!({"status": status}),
            });
        }
    }
    actions
}
