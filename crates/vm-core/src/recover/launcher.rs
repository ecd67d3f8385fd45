//! A VMI's virt-launcher pods on its node, and whether they still hold it there: KubeVirt fails
//! the VMI (and the run strategy acts) only once no live launcher pod is left (reference §7).

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use crate::kubevirt::VirtualMachineInstance;
use crate::placement::pod_is_finished;

/// The state of a VMI's launcher pod on the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum LauncherState {
    /// A pod exists and nobody asked to delete it.
    Running,
    /// Deletion was requested (`deletionTimestamp`), but a dead kubelet never confirms it: the
    /// pod stays until someone force-deletes it, and holds the VMI meanwhile.
    Terminating,
    /// No live pod is left (none, or only finished ones): KubeVirt can fail the VMI.
    Gone,
}

/// Whether `pod` is a launcher pod of `vmi`: labelled `kubevirt.io=virt-launcher` and created by
/// the VMI's UID, or owned by the VMI.
#[must_use]
pub fn is_launcher_pod(pod: &Pod, vmi: &VirtualMachineInstance) -> bool {
    let Some(uid) = vmi.metadata.uid.as_deref() else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    let created_by =
        label("kubevirt.io") == Some("virt-launcher") && label("kubevirt.io/created-by") == Some(uid);
    let owned = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "VirtualMachineInstance" && o.uid == uid);
    created_by || owned
}

/// The launcher pods of `vmi` bound to `node`.
#[must_use]
pub fn launcher_pods<'a>(pods: &'a [Pod], node: &str, vmi: &VirtualMachineInstance) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .filter(|p| is_launcher_pod(p, vmi))
        .collect()
}

/// The state of the most alive of `pods`.
#[must_use]
pub fn launcher_state(pods: &[&Pod]) -> LauncherState {
    let live = pods.iter().filter(|p| !pod_is_finished(p));
    live.fold(LauncherState::Gone, |state, pod| {
        match (state, pod.metadata.deletion_timestamp.is_some()) {
            (LauncherState::Running, _) | (_, false) => LauncherState::Running,
            _ => LauncherState::Terminating,
        }
    })
}
