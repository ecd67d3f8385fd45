//! TSC frequency, as virt-controller handles it (`pkg/virt-controller/watch/topology/`):
//! a VMI that needs an invariant TSC (CPU feature `invtsc` with policy require or force, or
//! Hyper-V reenlightenment enabled) gets `status.topologyHints.tscFrequency`, the lowest
//! `cpu-timer.node.kubevirt.io/tsc-frequency` among the schedulable nodes (amd64 only,
//! `hinter.go`), and its launcher pod selects `scheduling.node.kubevirt.io/tsc-frequency-<Hz>`
//! (`nodeselectorrenderer.go`). The node topology updater labels each node with every
//! frequency it can serve (`nodetopologyupdater.go`, `tsc.go` `CalculateTSCLabelDiff`): its
//! own, and each frequency in use (or the lowest) within ±250 ppm of its own, or, on a node
//! whose TSC is scalable, any lower one.

use std::collections::BTreeMap;

use serde_json::Value;

/// Node label with the node's TSC frequency in Hz (virt-handler's node labeller).
pub const FREQUENCY_LABEL: &str = "cpu-timer.node.kubevirt.io/tsc-frequency";
/// Node label saying whether the node's TSC can be scaled (`true`/`false`).
pub const SCALABLE_LABEL: &str = "cpu-timer.node.kubevirt.io/tsc-scalable";
/// Prefix of the scheduling labels virt-controller writes (`-<Hz>` follows).
pub const SCHEDULING_PREFIX: &str = "scheduling.node.kubevirt.io/tsc-frequency-";

/// Qemu's tolerance for a non-scalable TSC, in parts per million (`filter.go`).
const TOLERANCE_PPM: u64 = 250;

/// Whether the VMI needs a TSC frequency (`GetTscFrequencyRequirement` is not NotRequired).
pub fn required(vmi: &Value) -> bool {
    let invtsc = required_for_boot(vmi);
    let reenlightenment = vmi
        .pointer("/spec/domain/features/hyperv/reenlightenment/enabled")
        .and_then(Value::as_bool)
        == Some(true);
    invtsc || reenlightenment
}

/// Whether the VMI has `invtsc` with policy require or force (`RequiredForBoot`, which
/// takes precedence over reenlightenment's `RequiredForMigration`).
pub fn required_for_boot(vmi: &Value) -> bool {
    vmi.pointer("/spec/domain/cpu/features")
        .and_then(Value::as_array)
        .is_some_and(|fs| {
            fs.iter().any(|f| {
                f.get("name").and_then(Value::as_str) == Some("invtsc")
                    && matches!(f.get("policy").and_then(Value::as_str), Some("require" | "force"))
            })
        })
}

/// `status.topologyHints.tscFrequency` when positive.
fn hinted(vmi: &Value) -> Option<u64> {
    vmi.pointer("/status/topologyHints/tscFrequency")
        .and_then(Value::as_u64)
        .filter(|f| *f > 0)
}

/// The launcher pod's TSC selector label (`IsManualTSCFrequencyRequired`): only for a VMI
/// that needs one and has the hint.
pub fn selector_label(vmi: &Value) -> Option<String> {
    if !required(vmi) {
        return None;
    }
    hinted(vmi).map(|f| format!("{SCHEDULING_PREFIX}{f}"))
}

/// A node's TSC frequency and whether it is scalable, from its labels.
pub fn node_frequency(labels: &BTreeMap<String, String>) -> Option<(u64, bool)> {
    let freq = labels
        .get(FREQUENCY_LABEL)?
        .parse::<u64>()
        .ok()
        .filter(|f| *f > 0)?;
    Some((
        freq,
        labels.get(SCALABLE_LABEL).map(String::as_str) == Some("true"),
    ))
}

/// The lowest TSC frequency of the cluster (`LowestTSCFrequencyOnCluster`): among the
/// nodes that have one and are schedulable (`kubevirt.io/schedulable`) or run VMIs
/// (`running` says which do).
pub fn lowest_frequency<'a>(
    nodes: impl IntoIterator<Item = (&'a String, &'a BTreeMap<String, String>)>,
    running: &dyn Fn(&str) -> bool,
) -> Option<u64> {
    nodes
        .into_iter()
        .filter(|(name, labels)| {
            labels.get("kubevirt.io/schedulable").map(String::as_str) == Some("true") || running(name)
        })
        .filter_map(|(_, labels)| node_frequency(labels).map(|(f, _)| f))
        .min()
}

/// The hint for a new VMI (`TopologyHintsForVMI`): amd64 VMIs that need one get the
/// [`lowest_frequency`].
pub fn hint<'a>(
    vmi: &Value,
    nodes: impl IntoIterator<Item = (&'a String, &'a BTreeMap<String, String>)>,
    running: &dyn Fn(&str) -> bool,
) -> Option<u64> {
    if !required(vmi) || vmi.pointer("/spec/architecture").and_then(Value::as_str) != Some("amd64") {
        return None;
    }
    lowest_frequency(nodes, running)
}

/// The merge patch of a node's labels that the node topology updater would write
/// (`calculateNodeLabelChanges`): `"true"` for each frequency to add, null for each
/// scheduling label to remove; `None` when nothing changes or the node has no TSC
/// frequency. `required` are the frequencies in use by VMIs plus the cluster's lowest
/// (`requiredFrequencies`).
pub fn node_label_patch(labels: &BTreeMap<String, String>, required: &[u64]) -> Option<Value> {
    let (frequency, scalable) = node_frequency(labels)?;
    let wanted: Vec<String> = node_scheduling_frequencies(required, frequency, scalable)
        .into_iter()
        .map(|f| format!("{SCHEDULING_PREFIX}{f}"))
        .collect();
    let mut patch = serde_json::Map::new();
    for key in labels.keys().filter(|k| k.starts_with(SCHEDULING_PREFIX)) {
        if !wanted.contains(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    for key in wanted {
        if labels.get(&key).map(String::as_str) != Some("true") {
            patch.insert(key, Value::String("true".into()));
        }
    }
    (!patch.is_empty()).then(|| serde_json::json!({"metadata": {"labels": patch}}))
}

/// The labels the node-labeller writes for a node with this TSC (`node_labeller.go`): add
/// them to a scenario node (`NodeTemplate::labels`) to give it a TSC frequency.
pub fn node_labels(frequency: u64, scalable: bool) -> BTreeMap<String, String> {
    BTreeMap::from([
        (FREQUENCY_LABEL.to_string(), frequency.to_string()),
        (SCALABLE_LABEL.to_string(), scalable.to_string()),
    ])
}

/// The `scheduling.node.kubevirt.io/tsc-frequency-<Hz>` frequencies a node with
/// `(frequency, scalable)` should carry, given the frequencies in use in the cluster
/// (`CalculateTSCLabelDiff`: the node's own is always in use).
pub fn node_scheduling_frequencies(in_use: &[u64], frequency: u64, scalable: bool) -> Vec<u64> {
    let tolerance = frequency * TOLERANCE_PPM / 1_000_000;
    let mut out: Vec<u64> = in_use
        .iter()
        .copied()
        .chain([frequency])
        .filter(|f| *f > 0)
        .filter(|f| {
            let near = f.abs_diff(frequency) <= tolerance;
            if scalable { near || *f <= frequency } else { near }
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn which_vmis_need_a_frequency() {
        let with = |features: Value| json!({"spec": {"domain": {"cpu": {"features": features}}}});
        assert!(required(&with(json!([{"name": "invtsc", "policy": "require"}]))));
        assert!(required(&with(json!([{"name": "invtsc", "policy": "force"}]))));
        assert!(!required(&with(
            json!([{"name": "invtsc", "policy": "optional"}])
        )));
        assert!(!required(&with(json!([{"name": "invtsc"}]))));
        let hv =
            json!({"spec": {"domain": {"features": {"hyperv": {"reenlightenment": {"enabled": true}}}}}});
        assert!(required(&hv));
        assert_eq!(selector_label(&hv), None, "no hint yet");
        let mut hinted = hv.clone();
        hinted["status"] = json!({"topologyHints": {"tscFrequency": 2_400_000_000u64}});
        assert_eq!(
            selector_label(&hinted).as_deref(),
            Some("scheduling.node.kubevirt.io/tsc-frequency-2400000000")
        );
    }

    #[test]
    fn hint_is_the_lowest_frequency_of_usable_nodes_on_amd64() {
        let mut vmi = json!({"spec": {"architecture": "amd64", "domain": {"cpu": {"features": [{"name": "invtsc", "policy": "require"}]}}}});
        let nodes: BTreeMap<String, BTreeMap<String, String>> = [
            (
                "a",
                labels(&[
                    ("kubevirt.io/schedulable", "true"),
                    (FREQUENCY_LABEL, "2500000000"),
                ]),
            ),
            (
                "b",
                labels(&[
                    ("kubevirt.io/schedulable", "true"),
                    (FREQUENCY_LABEL, "2400000000"),
                ]),
            ),
            (
                "c",
                labels(&[("kubevirt.io/schedulable", "false"), (FREQUENCY_LABEL, "1000")]),
            ),
            ("d", labels(&[("kubevirt.io/schedulable", "true")])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(hint(&vmi, &nodes, &|_| false), Some(2_400_000_000));
        // An unschedulable node still counts while it runs VMIs.
        assert_eq!(hint(&vmi, &nodes, &|n| n == "c"), Some(1000));
        vmi["spec"]["architecture"] = json!("arm64");
        assert_eq!(hint(&vmi, &nodes, &|_| false), None);
    }

    #[test]
    fn node_label_patches_add_and_remove_scheduling_labels() {
        let mut node = node_labels(2_400_000_000, false);
        node.insert(format!("{SCHEDULING_PREFIX}1000"), "true".into());
        let patch = node_label_patch(&node, &[2_399_800_000]).unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"labels": {
                "scheduling.node.kubevirt.io/tsc-frequency-1000": null,
                "scheduling.node.kubevirt.io/tsc-frequency-2399800000": "true",
                "scheduling.node.kubevirt.io/tsc-frequency-2400000000": "true",
            }}})
        );
        node.remove(&format!("{SCHEDULING_PREFIX}1000"));
        node.insert(format!("{SCHEDULING_PREFIX}2399800000"), "true".into());
        node.insert(format!("{SCHEDULING_PREFIX}2400000000"), "true".into());
        assert_eq!(node_label_patch(&node, &[2_399_800_000]), None, "up to date");
        // A node without a TSC frequency is left alone.
        assert_eq!(node_label_patch(&BTreeMap::new(), &[1]), None);
    }

    #[test]
    fn scheduling_labels_follow_the_tolerance_or_scalability() {
        // 2.4 GHz: tolerance 600 kHz.
        let f = 2_400_000_000;
        let in_use = [2_399_500_000, 2_300_000_000, 2_500_000_000];
        assert_eq!(
            node_scheduling_frequencies(&in_use, f, false),
            vec![2_399_500_000, 2_400_000_000]
        );
        assert_eq!(
            node_scheduling_frequencies(&in_use, f, true),
            vec![2_300_000_000, 2_399_500_000, 2_400_000_000]
        );
    }
}
