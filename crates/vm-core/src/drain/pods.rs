//! The node's other pods, by `kubectl drain`'s rules (kubectl `pkg/drain/filters.go`).

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use crate::kubevirt::VirtualMachineInstance;
use crate::labels::selector_matches;
use crate::placement::pod_is_finished;
use crate::snapshot::ClusterSnapshot;

/// What happens to one pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PodAction {
    /// Evicted through the eviction API (PDBs honoured).
    Evict,
    /// Stays: a DaemonSet or mirror pod, as with `kubectl drain --ignore-daemonsets`.
    Stay,
    /// Blocks the drain until a flag allows it or its PDB allows a disruption.
    Blocked,
}

/// The plan for one pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PodPlan {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// The action.
    pub action: PodAction,
    /// Why.
    pub reasons: Vec<String>,
}

/// The kind of the pod's controlling owner (`DaemonSet`, `ReplicaSet`, `VirtualMachineInstance`…).
#[must_use]
pub fn controller_kind(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.kind.as_str())
}

/// A static pod: the kubelet owns it, the API only mirrors it.
#[must_use]
pub fn is_mirror_pod(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
}

/// Whether a drain leaves the pod where it is (DaemonSet and mirror pods, as kubectl drain
/// with `--ignore-daemonsets`).
#[must_use]
pub fn stays_on_node(pod: &Pod) -> bool {
    is_mirror_pod(pod) || controller_kind(pod) == Some("DaemonSet")
}

fn is_launcher_of(pod: &Pod, vmis: &[&VirtualMachineInstance]) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let is_launcher = labels.and_then(|l| l.get("kubevirt.io")).map(String::as_str) == Some("virt-launcher");
    let created_by = labels.and_then(|l| l.get("kubevirt.io/created-by"));
    is_launcher
        && vmis
            .iter()
            .any(|v| v.metadata.uid.is_some() && v.metadata.uid.as_ref() == created_by)
        || controller_kind(pod) == Some("VirtualMachineInstance")
}

/// Plans every pod bound to `node` that is not the launcher pod of one of `vmis`; `force` and
/// `delete_emptydir_data` are the drain policy's flags of those names.
pub(crate) fn plan_pods(
    snapshot: &ClusterSnapshot,
    node: &str,
    vmis: &[&VirtualMachineInstance],
    force: bool,
    delete_emptydir_data: bool,
) -> Vec<PodPlan> {
    let mut plans = Vec::new();
    for pod in &snapshot.pods {
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) || is_launcher_of(pod, vmis) {
            continue;
        }
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut plan = PodPlan {
            namespace: namespace.clone(),
            name,
            action: PodAction::Evict,
            reasons: Vec::new(),
        };
        if is_mirror_pod(pod) {
            plan.action = PodAction::Stay;
            plan.reasons
                .push("mirror (static) pod: the kubelet owns it".into());
        } else if controller_kind(pod) == Some("DaemonSet") {
            plan.action = PodAction::Stay;
            plan.reasons
                .push("DaemonSet pod: stays, as with --ignore-daemonsets".into());
        } else if pod_is_finished(pod) {
            plan.reasons.push("finished: removed without disruption".into());
        } else {
            if controller_kind(pod).is_none() {
                if force {
                    plan.reasons
                        .push("no controller: it is not recreated elsewhere (--force)".into());
                } else {
                    plan.action = PodAction::Blocked;
                    plan.reasons
                        .push("no controller manages it, so it would not come back (use --force)".into());
                }
            }
            let empty_dirs: Vec<&str> = pod
                .spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .filter(|v| v.empty_dir.is_some())
                .map(|v| v.name.as_str())
                .collect();
            if !empty_dirs.is_empty() {
                if delete_emptydir_data {
                    plan.reasons
                        .push(format!("emptyDir data is lost: {}", empty_dirs.join(", ")));
                } else {
                    plan.action = PodAction::Blocked;
                    plan.reasons.push(format!(
                        "uses emptyDir {} whose data would be lost (use --delete-emptydir-data)",
                        empty_dirs.join(", ")
                    ));
                }
            }
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            for pdb in snapshot
                .pdbs
                .iter()
                .filter(|p| p.metadata.namespace.as_deref().unwrap_or("default") == namespace)
            {
                let selects = pdb
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some_and(|sel| selector_matches(sel, &labels));
                let allowed = pdb.status.as_ref().map(|s| s.disruptions_allowed);
                if selects && allowed == Some(0) {
                    plan.action = PodAction::Blocked;
                    plan.reasons.push(format!(
                        "PodDisruptionBudget {} allows no disruption now (disruptionsAllowed: 0)",
                        pdb.metadata.name.as_deref().unwrap_or_default()
                    ));
                }
            }
        }
        plans.push(plan);
    }
    plans
}
