//! The snapshot each pass of the simulated KubeVirt decides on ([`World`]) and the writes
//! the decisions return ([`Action`]), with the small JSON helpers every controller uses.
//! The controllers in the sibling modules are pure functions from a `World` and an
//! object to `Action`s; [`super::passes`] builds the snapshot and [`super::perform`] makes
//! the writes. KubeVirt's controllers read the same from their informers' caches
//! (`pkg/virt-controller/watch`).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::config::ClusterConfig;
use super::migratable::PvcAccessModes;

/// A snapshot of what the controllers look at.
pub struct World {
    /// The cluster's KubeVirt configuration.
    pub config: ClusterConfig,
    /// PVC access modes by namespace, then claim name.
    pub pvcs: HashMap<String, PvcAccessModes>,
    /// Nodes whose kubelet and virt-handler are down or cut off from the API server.
    pub nodes_down: HashSet<String>,
    /// Now, RFC 3339.
    pub now: String,
    /// VMI UIDs with a launcher pod just created but not yet seen.
    pub pods_expected: HashSet<String>,
    /// An empty PVC map, for namespaces without PVCs.
    pub no_pvcs: PvcAccessModes,
    /// Base of the VM start-failure backoff, ms (KubeVirt: 10 s).
    pub start_backoff_base_ms: u64,
    /// Labels of every node, by node name (the migration controller reads the source
    /// node's CPU labels).
    pub node_labels: HashMap<String, BTreeMap<String, String>>,
    /// The NetworkAttachmentDefinitions, with their device-plugin resource names.
    pub nads: super::nad::Nads,
}

impl World {
    /// Whether a launcher pod for this VMI was just created.
    pub fn expecting_pod(&self, vmi_uid: &str) -> bool {
        self.pods_expected.contains(vmi_uid)
    }
}

/// A write the simulated KubeVirt makes.
#[derive(Debug, Clone)]
pub enum Action {
    /// Merge patch on a VMI (main resource: the VMI has no status subresource).
    PatchVmi {
        /// Namespace.
        ns: String,
        /// Name.
        name: String,
        /// Merge patch.
        patch: Value,
    },
    /// Create a launcher pod.
    CreatePod {
        /// UID of the VMI it is for.
        vmi_uid: String,
        /// The pod.
        pod: Value,
    },
    /// Strategic merge patch on a pod's status.
    PatchPodStatus {
        /// Namespace.
        ns: String,
        /// Name.
        name: String,
        /// Patch.
        patch: Value,
    },
    /// Graceful delete of a pod.
    DeletePod {
        /// Namespace.
        ns: String,
        /// Name.
        name: String,
        /// UID precondition.
        uid: String,
    },
    /// Create a VMI.
    CreateVmi {
        /// Namespace.
        ns: String,
        /// The VMI.
        vmi: Value,
    },
    /// Delete a VMI.
    DeleteVmi {
        /// Namespace.
        ns: String,
        /// Name.
        name: String,
        /// UID precondition.
        uid: String,
    },
    /// Merge patch on a node (virt-controller's node topology updater: TSC labels).
    PatchNode {
        /// Name.
        name: String,
        /// Merge patch.
        patch: Value,
    },
    /// Merge patch on a VM's spec.
    PatchVm {
        /// Namespace.
        ns: String,
        /// Name.
        name: String,
        /// Merge patch.
        patch: Value,
    },
    /// Create a VMI (generateName) for an owner such as a replica set.
    CreateOwnedVmi {
        /// UID of the owner.
        owner_uid: String,
        /// Which of the missing replicas this is.
        index: usize,
        /// The VMI.
        vmi: Value,
    },
    /// Merge patch on the status subresource of a KubeVirt kind.
    PatchStatus {
        /// The kind.
        kind: &'static str,
        /// Namespace.
        ns: String,
        /// Name.
        name: String,
        /// Merge patch.
        patch: Value,
    },
    /// Create a migration (generateName) for a VMI.
    CreateVmim {
        /// UID of the VMI.
        vmi_uid: String,
        /// The migration.
        vmim: Value,
    },
    /// Merge patch on a VMIM (metadata).
    PatchVmim {
        /// Namespace.
        ns: String,
        /// Name.
        name: String,
        /// Merge patch.
        patch: Value,
    },
    /// Merge patch on a VMIM's status subresource.
    PatchVmimStatus {
        /// Namespace.
        ns: String,
        /// Name.
        name: String,
        /// Merge patch.
        patch: Value,
    },
    /// Merge patch on a VM's status subresource.
    PatchVmStatus {
        /// Namespace.
        ns: String,
        /// Name.
        name: String,
        /// Merge patch.
        patch: Value,
    },
}

impl Action {
    /// Graceful deletion of `pod`.
    pub fn delete_pod(pod: &Value) -> Action {
        Action::DeletePod {
            ns: str_at(pod, "/metadata/namespace").unwrap_or_default().into(),
            name: str_at(pod, "/metadata/name").unwrap_or_default().into(),
            uid: str_at(pod, "/metadata/uid").unwrap_or_default().into(),
        }
    }

    /// The object this action writes, to avoid repeating it while the watch lags.
    pub(crate) fn key(&self) -> String {
        match self {
            Action::PatchVmi { ns, name, .. } => format!("patch-vmi/{ns}/{name}"),
            Action::CreatePod { vmi_uid, .. } => format!("create-pod/{vmi_uid}"),
            Action::PatchPodStatus { ns, name, .. } => format!("patch-pod-status/{ns}/{name}"),
            Action::DeletePod { ns, name, .. } => format!("delete-pod/{ns}/{name}"),
            Action::CreateVmi { ns, vmi } => format!(
                "create-vmi/{ns}/{}",
                str_at(vmi, "/metadata/name").unwrap_or_default()
            ),
            Action::DeleteVmi { ns, name, .. } => format!("delete-vmi/{ns}/{name}"),
            Action::PatchNode { name, .. } => format!("patch-node/{name}"),
            Action::PatchVm { ns, name, .. } => format!("patch-vm/{ns}/{name}"),
            Action::PatchVmStatus { ns, name, .. } => format!("patch-vm-status/{ns}/{name}"),
            Action::PatchVmim { ns, name, .. } => format!("patch-vmim/{ns}/{name}"),
            Action::CreateVmim { vmi_uid, .. } => format!("create-vmim/{vmi_uid}"),
            Action::CreateOwnedVmi { owner_uid, index, .. } => {
                format!("create-owned-vmi/{owner_uid}/{index}")
            }
            Action::PatchStatus { kind, ns, name, .. } => format!("patch-status/{kind}/{ns}/{name}"),
            Action::PatchVmimStatus { ns, name, .. } => format!("patch-vmim-status/{ns}/{name}"),
        }
    }
}

/// A string at a JSON pointer.
pub fn str_at<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    v.pointer(p).and_then(Value::as_str)
}

/// Whether a VMI or pod phase is final.
pub fn is_final(phase: &str) -> bool {
    phase == "Succeeded" || phase == "Failed"
}

/// A pod's phase ("Pending" when unset).
pub fn pod_phase(pod: &Value) -> &str {
    str_at(pod, "/status/phase").unwrap_or("Pending")
}

/// Whether a pod has a deletion timestamp.
pub fn pod_is_terminating(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_some()
}
