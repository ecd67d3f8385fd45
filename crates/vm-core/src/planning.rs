//! What the drain and the recovery planners share, so that both say the same thing about the
//! same VMI: its live-migratability in words, the nodes it could move to, and a one-line summary
//! of why no node takes it.

use std::collections::BTreeMap;

use crate::kubevirt::VirtualMachineInstance;
use crate::migratability::{Migratability, MigratabilityInput, live_migratability};
use crate::placement::NodeView;
use crate::snapshot::ClusterSnapshot;

/// Whether KubeVirt can live-migrate `vmi`: its `LiveMigratable` condition, else the same checks
/// computed from its spec and the claims in the snapshot.
#[must_use]
pub fn vmi_migratability(snapshot: &ClusterSnapshot, vmi: &VirtualMachineInstance) -> Migratability {
    let no_annotations = BTreeMap::new();
    live_migratability(&MigratabilityInput {
        annotations: vmi.metadata.annotations.as_ref().unwrap_or(&no_annotations),
        spec: &vmi.spec,
        status: vmi.status.as_ref(),
        namespace: vmi.metadata.namespace.as_deref().unwrap_or("default"),
        pvcs: &snapshot.pvcs,
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
        Migratability::Unknown(why) => Some(format!("live-migratability unknown: {why}")),
    }
}

/// Every node but `node`, as the placement engine sees them (cordoned, NotReady and
/// unschedulable ones included: the engine says why each one takes nothing).
#[must_use]
pub fn other_nodes(snapshot: &ClusterSnapshot, node: &str) -> Vec<NodeView> {
    snapshot
        .nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(node))
        .map(|n| NodeView::new(n, &snapshot.pods))
        .collect()
}

/// The reasons a joint placement gave for one VM, at most three distinct ones, on one line.
#[must_use]
pub fn summarise(reasons: &[String]) -> String {
    let mut unique: Vec<&str> = Vec::new();
    for r in reasons {
        if !unique.contains(&r.as_str()) {
            unique.push(r);
        }
    }
    let more = unique.len().saturating_sub(3);
    let mut text = unique.into_iter().take(3).collect::<Vec<_>>().join("; ");
    if more > 0 {
        text.push_str(&format!("; and {more} more"));
    }
    if text.is_empty() {
        "no other node".into()
    } else {
        text
    }
}
