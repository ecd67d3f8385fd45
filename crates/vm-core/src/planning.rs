//! What the drain and the recovery planners share, so that both say the same thing about the
//! same VMI: its live-migratability in words, the nodes it could move to, and a one-line summary
//! of why no node takes it.

use std::collections::BTreeMap;

use crate::datavolume::{StorageObjects, vm_templates_of};
use crate::effective::ClusterConfig;
use crate::kubevirt::VirtualMachineInstance;
use crate::migratability::{Migratability, MigratabilityInput, live_migratability};
use crate::placement::NodeView;
use crate::snapshot::ClusterSnapshot;

/// Whether KubeVirt can live-migrate `vmi`: its `LiveMigratable` condition, else the same checks
/// computed from its spec and the claims in the snapshot (with the DataVolumes, its VM's
/// dataVolumeTemplates and the StorageProfiles for the claims CDI has yet to create), and the
/// pod network that `cluster`'s default binding gives a VMI that declares none.
#[must_use]
pub fn vmi_migratability(
    snapshot: &ClusterSnapshot,
    vmi: &VirtualMachineInstance,
    cluster: &ClusterConfig,
) -> Migratability {
    let no_annotations = BTreeMap::new();
    live_migratability(&MigratabilityInput {
        annotations: vmi.metadata.annotations.as_ref().unwrap_or(&no_annotations),
        spec: &vmi.spec,
        status: vmi.status.as_ref(),
        namespace: vmi.metadata.namespace.as_deref().unwrap_or("default"),
        storage: StorageObjects::of(snapshot),
        data_volume_templates: vm_templates_of(snapshot, vmi),
        cluster,
    })
}

/// Why a VMI cannot be live-migrated, in an operator's words with KubeVirt's reason, or `None`
/// when it can.
#[must_use]
pub fn migration_blocker(migratability: &Migratability) -> Option<String> {
    match migratability {
        Migratability::Migratable => None,
        Migratability::NotMigratable { reason, message, .. } if message.is_empty() => {
            Some(format!("not live-migratable ({reason})"))
        }
        Migratability::NotMigratable { reason, message, .. } => {
            Some(format!("not live-migratable ({reason}: {message})"))
        }
        Migratability::Unknown { why, .. } => Some(format!("live-migratability unknown: {why}")),
    }
}

/// Every node but `node`, as the placement engine sees them (cordoned, NotReady and
/// unschedulable ones included: the engine says why each one takes nothing).
#[must_use]
pub fn other_nodes(snapshot: &ClusterSnapshot, node: &str) -> Vec<NodeView> {
    let mut views = all_nodes(snapshot);
    views.retain(|v| v.name != node);
    views
}

/// Every node, as the placement engine sees it, built in one pass over the pods.
#[must_use]
pub fn all_nodes(snapshot: &ClusterSnapshot) -> Vec<NodeView> {
    NodeView::all(&snapshot.nodes, &snapshot.pods)
}

/// The reasons a joint placement gave for one VM, on one line: reasons that differ only in the
/// node they name are said once for all those nodes ("… does not match node (n2, n3)"), and at
/// most three distinct ones are kept.
#[must_use]
pub fn summarise(reasons: &[String]) -> String {
    let grouped = group_by_node(reasons);
    let more = grouped.len().saturating_sub(3);
    let mut text = grouped.into_iter().take(3).collect::<Vec<_>>().join("; ");
    if more > 0 {
        text.push_str(&format!("; and {more} more"));
    }
    if text.is_empty() {
        "no other node".into()
    } else {
        text
    }
}

/// Merges the reasons that are the same sentence about different nodes; exact repeats are
/// dropped. Reasons are taken in the order of the node they name (a node's own in the order
/// given), so the text does not depend on the order in which the nodes were listed.
#[must_use]
pub fn group_by_node(reasons: &[String]) -> Vec<String> {
    let mut ordered: Vec<&String> = reasons.iter().collect();
    ordered.sort_by_key(|r| split_at_node(r).1);
    // (text before the node name, text after it) → the node names, in order.
    let mut groups: Vec<((&str, &str), Vec<&str>)> = Vec::new();
    for reason in ordered {
        let (shape, node) = split_at_node(reason);
        match groups.iter_mut().find(|(s, _)| *s == shape) {
            Some((_, nodes)) => {
                if !nodes.contains(&node) {
                    nodes.push(node);
                }
            }
            None => groups.push((shape, vec![node])),
        }
    }
    groups
        .into_iter()
        .map(|((before, after), nodes)| match nodes.as_slice() {
            [one] => format!("{before}{one}{after}"),
            many => format!("{before}({}){after}", many.join(", ")),
        })
        .collect()
}

/// `reason` around the node it names: (before, after), and the name. The placement engine's
/// sentences name the node first ("node n2 is cordoned") or last ("… does not match node n2");
/// a reason that names no node is all "before".
fn split_at_node(reason: &str) -> ((&str, &str), &str) {
    const MARK: &str = "node ";
    let at = if reason.starts_with(MARK) {
        Some(0)
    } else {
        reason.rfind(MARK)
    };
    let Some(at) = at else {
        return ((reason, ""), "");
    };
    let start = at + MARK.len();
    let end = reason[start..]
        .find([' ', ';', ',', ':'])
        .map_or(reason.len(), |i| start + i);
    ((&reason[..start], &reason[end..]), &reason[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_about_several_nodes_are_said_once() {
        let reasons = vec![
            "nodeSelector disk=nvme does not match node n2".to_string(),
            "node n3 is cordoned".to_string(),
            "nodeSelector disk=nvme does not match node n4".to_string(),
            "nodeSelector disk=nvme does not match node n4".to_string(),
            "required node affinity does not match node n5".to_string(),
            "required node affinity does not match node n6".to_string(),
        ];
        assert_eq!(
            summarise(&reasons),
            "nodeSelector disk=nvme does not match node (n2, n4); node n3 is cordoned; \
             required node affinity does not match node (n5, n6)"
        );
    }

    #[test]
    fn different_amounts_stay_apart_and_only_three_are_kept() {
        let reasons: Vec<String> = (2..=6)
            .map(|i| format!("node n{i} has {i}Gi memory free, 8Gi needed"))
            .collect();
        let text = summarise(&reasons);
        assert!(
            text.starts_with("node n2 has 2Gi memory free, 8Gi needed; node n3"),
            "{text}"
        );
        assert!(text.ends_with("; and 2 more"), "{text}");
        assert_eq!(summarise(&[]), "no other node");
    }
}
