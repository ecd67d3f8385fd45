//! The evacuation controller (reference §3.2): every VMI marked by the eviction webhook
//! (`status.evacuationNodeName` equal to its node) that should migrate on eviction gets a
//! `kubevirt-evacuation-` migration. The mark stays after a failed migration, so new
//! migrations follow, with KubeVirt's backoff (20 s, doubling per consecutive failure);
//! only a successful migration clears it.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::world::{Action, World, is_final, str_at};

/// Annotation KubeVirt puts on evacuation migrations.
pub const EVACUATION_ANNOTATION: &str = "kubevirt.io/evacuationMigration";

/// What to do; `vmims` are all migrations, `backoff_ms` the first retry delay.
pub fn reconcile(
    vmis: &[&Value],
    vmims: &[&Value],
    world: &World,
    backoff_ms: u64,
    expecting: &HashSet<String>,
) -> Vec<Action> {
    let now = jiff::Timestamp::now();
    let mut actions = Vec::new();
    for vmi in vmis.iter().copied() {
        let ns = str_at(vmi, "/metadata/namespace").unwrap_or_default();
        let name = str_at(vmi, "/metadata/name").unwrap_or_default();
        let uid = str_at(vmi, "/metadata/uid").unwrap_or_default();
        let Some(mark) = str_at(vmi, "/status/evacuationNodeName").filter(|m| !m.is_empty()) else {
            continue;
        };
        if str_at(vmi, "/status/nodeName") != Some(mark)
            || vmi.pointer("/metadata/deletionTimestamp").is_some()
            || is_final(str_at(vmi, "/status/phase").unwrap_or_default())
            || expecting.contains(uid)
        {
            continue;
        }
        let migratable = vmi
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "LiveMigratable" && c["status"] == "True")
            });
        let on_eviction =
            match str_at(vmi, "/spec/evictionStrategy").unwrap_or(world.config.eviction_strategy.as_str()) {
                "LiveMigrate" => true,
                "LiveMigrateIfPossible" => migratable,
                _ => false,
            };
        if !on_eviction || !migratable {
            continue;
        }
        let mut mine: Vec<&Value> = vmims
            .iter()
            .copied()
            .filter(|m| {
                str_at(m, "/metadata/namespace") == Some(ns) && str_at(m, "/spec/vmiName") == Some(name)
            })
            .collect();
        if mine
            .iter()
            .any(|m| !is_final(str_at(m, "/status/phase").unwrap_or_default()))
        {
            continue;
        }
        // Backoff after consecutive failed evacuation migrations, newest first.
        mine.sort_by_key(|m| {
            std::cmp::Reverse(
                str_at(m, "/metadata/creationTimestamp")
                    .unwrap_or_default()
                    .to_string(),
            )
        });
        let failures: Vec<&&Value> = mine
            .iter()
            .take_while(|m| str_at(m, "/status/phase") == Some("Failed"))
            .filter(|m| {
                m.pointer(&format!(
                    "/metadata/annotations/{}",
                    EVACUATION_ANNOTATION.replace('/', "~1")
                ))
                .is_some()
            })
            .collect();
        if let Some(last) = failures.first() {
            let shift = (failures.len() as u32 - 1).min(4);
            let wait = backoff_ms.saturating_mul(1 << shift);
            let failed_at = last
                .pointer("/status/phaseTransitionTimestamps")
                .and_then(Value::as_array)
                .and_then(|t| t.last())
                .and_then(|t| t["phaseTransitionTimestamp"].as_str())
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            if failed_at.is_some_and(|t| (now.duration_since(t).as_millis().max(0) as u64) < wait) {
                continue;
            }
        }
        actions.push(Action::CreateVmim {
            vmi_uid: uid.to_string(),
            vmim: json!({
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachineInstanceMigration",
                "metadata": {
                    "generateName": "kubevirt-evacuation-",
                    "namespace": ns,
                    "annotations": {EVACUATION_ANNOTATION: mark},
                },
                "spec": {"vmiName": name, "priority": "system-critical"},
            }),
        });
    }
    actions
}
