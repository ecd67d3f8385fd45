//! Where a launcher pod may run: the nodeSelector and the required node affinity
//! KubeVirt's renderer derives from the VMI (CPU model and features, host-model, machine
//! type, architecture, dedicated CPUs, SEV) on top of the VMI's own, and the node-labeller
//! label prefixes they match (KubeVirt: `pkg/virt-controller/services/nodeselectorrenderer.go`,
//! `template.go`).

use serde_json::{Map, Value, json};

use super::guest::{dedicated_cpus, is_host_model};
use crate::kubevirt::confidential;
use crate::kubevirt::config::ClusterConfig;
use crate::kubevirt::world::str_at;

/// Prefix of the CPU feature labels the node-labeller writes.
pub const CPU_FEATURE_PREFIX: &str = "cpu-feature.node.kubevirt.io/";
/// Prefix of the CPU model labels (usable models).
pub const CPU_MODEL_PREFIX: &str = "cpu-model.node.kubevirt.io/";
/// Prefix of the labels naming every model a host-model guest may migrate as.
pub const CPU_MODEL_MIGRATION_PREFIX: &str = "cpu-model-migration.node.kubevirt.io/";
/// Prefix of the label naming the node's host-model CPU.
pub const HOST_MODEL_CPU_PREFIX: &str = "host-model-cpu.node.kubevirt.io/";
/// Prefix of the labels listing the host-model's required features.
pub const HOST_MODEL_REQUIRED_FEATURES_PREFIX: &str = "host-model-required-features.node.kubevirt.io/";
/// Prefix of the CPU vendor label.
pub const CPU_VENDOR_PREFIX: &str = "cpu-vendor.node.kubevirt.io/";
/// Prefix of the machine type labels.
pub const MACHINE_TYPE_PREFIX: &str = "machine-type.node.kubevirt.io/";
/// Label of nodes whose host-model is obsolete (host-model VMIs avoid them).
pub const OBSOLETE_HOST_MODEL: &str = "node-labeller.kubevirt.io/obsolete-host-model";

/// The VMI's CPU features as (name, policy); the policy defaults to `""` (= require).
fn cpu_features(vmi: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vmi
        .pointer("/spec/domain/cpu/features")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some((
                f.get("name")?.as_str()?.to_string(),
                f.get("policy")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ))
        })
        .collect();
    // The webhook adds `vmx` (require) when EVMCS is enabled (defaults/hyperv.go).
    let evmcs = vmi.pointer("/spec/domain/features/hyperv/evmcs");
    if evmcs.is_some_and(|e| e.get("enabled").and_then(Value::as_bool) != Some(false))
        && !out.iter().any(|(n, _)| n == "vmx")
    {
        out.push(("vmx".into(), "require".into()));
    }
    out
}

/// The launcher pod's nodeSelector (reference §1a), in the order of
/// `nodeselectorrenderer.go`: `kubevirt.io/schedulable` and the architecture, then the
/// cluster-wide selectors and the VMI's own (which may override those two), then the labels
/// KubeVirt derives from the VMI (dedicated CPUs, a named CPU model, required CPU features,
/// the machine type, TSC frequency, realtime, SEV), each `"true"`, which replace a value the
/// VMI set under the same key (`enableSelectorLabel` writes over the merged map).
pub fn node_selector(vmi: &Value, cfg: &ClusterConfig) -> Map<String, Value> {
    let mut sel = Map::new();
    sel.insert("kubevirt.io/schedulable".into(), json!("true"));
    if let Some(arch) = str_at(vmi, "/spec/architecture").filter(|a| !a.is_empty()) {
        sel.insert("kubernetes.io/arch".into(), json!(arch.to_lowercase()));
    }
    for (k, v) in &cfg.node_selectors {
        sel.insert(k.clone(), json!(v));
    }
    if let Some(own) = vmi.pointer("/spec/nodeSelector").and_then(Value::as_object) {
        for (k, v) in own {
            sel.insert(k.clone(), v.clone());
        }
    }
    let mut derived: Vec<String> = Vec::new();
    if dedicated_cpus(vmi) {
        derived.push("kubevirt.io/cpumanager".into());
    }
    if let Some(model) = str_at(vmi, "/spec/domain/cpu/model")
        .filter(|m| !m.is_empty() && *m != "host-model" && *m != "host-passthrough")
    {
        derived.push(format!("{CPU_MODEL_PREFIX}{model}"));
    }
    if let Some(machine) = str_at(vmi, "/status/machine/type")
        .filter(|m| !m.is_empty())
        .or_else(|| str_at(vmi, "/spec/domain/machine/type").filter(|m| !m.is_empty()))
    {
        derived.push(format!("{MACHINE_TYPE_PREFIX}{machine}"));
    }
    for (name, policy) in cpu_features(vmi) {
        if policy.is_empty() || policy == "require" {
            derived.push(format!("{CPU_FEATURE_PREFIX}{name}"));
        }
    }
    if let Some(label) = crate::kubevirt::tsc::selector_label(vmi) {
        derived.push(label);
    }
    if vmi
        .pointer("/spec/domain/cpu/realtime")
        .is_some_and(|r| !r.is_null())
    {
        derived.push("kubevirt.io/realtime".into());
    }
    derived.extend(confidential::selector_labels(vmi));
    for label in derived {
        sel.insert(label, json!("true"));
    }
    sel
}

/// ANDs `expr` into every required node-affinity term of `affinity` (or adds it as the only
/// term).
fn and_required_expression(affinity: &mut Value, expr: Value) {
    if !affinity.is_object() {
        *affinity = json!({});
    }
    if !affinity.get("nodeAffinity").is_some_and(Value::is_object) {
        affinity["nodeAffinity"] = json!({});
    }
    let na = &mut affinity["nodeAffinity"];
    if !na
        .get("requiredDuringSchedulingIgnoredDuringExecution")
        .is_some_and(Value::is_object)
    {
        na["requiredDuringSchedulingIgnoredDuringExecution"] = json!({});
    }
    let req = &mut na["requiredDuringSchedulingIgnoredDuringExecution"];
    match req.get_mut("nodeSelectorTerms").and_then(Value::as_array_mut) {
        Some(terms) if !terms.is_empty() => {
            for term in terms.iter_mut() {
                if !term.is_object() {
                    *term = json!({});
                }
                match term.get_mut("matchExpressions").and_then(Value::as_array_mut) {
                    Some(exprs) => exprs.push(expr.clone()),
                    None => term["matchExpressions"] = json!([expr.clone()]),
                }
            }
        }
        _ => req["nodeSelectorTerms"] = json!([{"matchExpressions": [expr]}]),
    }
}

/// The launcher pod's affinity (reference §1b): a copy of the VMI's, with
/// `obsolete-host-model DoesNotExist` for host-model VMIs and `cpu-feature.…/<f>
/// DoesNotExist` for each forbidden feature, ANDed into every required term.
pub fn affinity(vmi: &Value) -> Value {
    let mut affinity = vmi.pointer("/spec/affinity").cloned().unwrap_or(Value::Null);
    if is_host_model(vmi) {
        and_required_expression(
            &mut affinity,
            json!({"key": OBSOLETE_HOST_MODEL, "operator": "DoesNotExist"}),
        );
    }
    for (name, policy) in cpu_features(vmi) {
        if policy == "forbid" {
            and_required_expression(
                &mut affinity,
                json!({"key": format!("{CPU_FEATURE_PREFIX}{name}"), "operator": "DoesNotExist"}),
            );
        }
    }
    affinity
}
