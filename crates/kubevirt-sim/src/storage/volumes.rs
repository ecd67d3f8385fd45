//! Which volumes each pod needs and whether they are ready: the claims a pod mounts, the
//! VolumeAttachments of the simulated CSI driver and the names Kubernetes gives them
//! (`pkg/volume/csi/csi_attacher.go`). The kubelet ([`crate::kubelet`]) keeps a pod
//! ContainerCreating until [`VolumeIndex::waiting_for`] is empty; the storage controller
//! ([`super::controller`]) reads the same index.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio::sync::Notify;

/// The simulated CSI driver: provisioner of the PVs and attacher of their VolumeAttachments.
pub const DRIVER: &str = "sim.csi.kubevirt.io";

/// The name Kubernetes gives the VolumeAttachment of a CSI volume on a node.
pub fn attachment_name(volume_handle: &str, driver: &str, node: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{volume_handle}{driver}{node}").as_bytes(),
    );
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("csi-{hex}")
}

/// The Multi-Attach message of the attach/detach controller for `pv`, wanted by a pod in
/// `namespace` while `users` (namespace, pod) on other nodes still use it.
pub fn multi_attach_message(pv: &str, namespace: &str, users: &[(String, String)]) -> String {
    let detail = if users.is_empty() {
        "Volume is already exclusively attached to one node and can't be attached to another".to_string()
    } else {
        let local: Vec<&str> = users
            .iter()
            .filter(|(ns, _)| ns == namespace)
            .map(|(_, name)| name.as_str())
            .collect();
        let others = users.len() - local.len();
        match (local.is_empty(), others) {
            (false, 0) => format!("Volume is already used by pod(s) {}", local.join(", ")),
            (false, n) => format!(
                "Volume is already used by pod(s) {} and {n} pod(s) in different namespaces",
                local.join(", ")
            ),
            (true, n) => format!("Volume is already used by {n} pod(s) in different namespaces"),
        }
    };
    format!("Multi-Attach error for volume \"{pv}\" {detail}")
}

/// `(pod volume name, claim name)` of the PVCs a pod mounts.
pub fn pod_claims(pod: &Pod) -> impl Iterator<Item = (&str, &str)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let claim = v.persistent_volume_claim.as_ref()?;
            Some((v.name.as_str(), claim.claim_name.as_str()))
        })
}

/// Watches of PVCs, PVs and VolumeAttachments.
#[derive(Clone)]
pub struct VolumeView {
    pub(super) pvcs: Store<PersistentVolumeClaim>,
    pub(super) pvs: Store<PersistentVolume>,
    pub(super) attachments: Store<VolumeAttachment>,
}

impl VolumeView {
    /// Starts the watches; `notify` is woken on every change.
    pub fn start(client: &kube::Client, notify: Arc<Notify>) -> Self {
        let cfg = watcher::Config::default;
        VolumeView {
            pvcs: crate::watch::store(Api::all(client.clone()), cfg(), notify.clone()),
            pvs: crate::watch::store(Api::all(client.clone()), cfg(), notify.clone()),
            attachments: crate::watch::store(Api::all(client.clone()), cfg(), notify),
        }
    }

    /// Waits for the first listing of each watch.
    pub async fn wait_until_ready(&self) {
        let _ = self.pvcs.wait_until_ready().await;
        let _ = self.pvs.wait_until_ready().await;
        let _ = self.attachments.wait_until_ready().await;
    }

    /// A snapshot of the bindings and attachments.
    pub fn index(&self) -> VolumeIndex {
        VolumeIndex::new(&self.pvcs.state(), &self.pvs.state(), &self.attachments.state())
    }
}

/// Who is bound and attached where, from a snapshot of PVCs, PVs and VolumeAttachments.
#[derive(Debug, Default)]
pub struct VolumeIndex {
    /// PV of each bound claim, by (namespace, claim).
    pub(super) bound: HashMap<(String, String), String>,
    /// `(driver, volume handle)` of each PV of [`DRIVER`].
    pub(super) csi: HashMap<String, (String, String)>,
    /// Whether multi-node attachment is forbidden, by PV.
    pub(super) exclusive: HashMap<String, bool>,
    /// `(name, attached)` of the VolumeAttachment of each (PV, node).
    pub(super) attachments: HashMap<(String, String), (String, bool)>,
}

impl VolumeIndex {
    /// Indexes the given objects.
    pub fn new(
        pvcs: &[Arc<PersistentVolumeClaim>],
        pvs: &[Arc<PersistentVolume>],
        attachments: &[Arc<VolumeAttachment>],
    ) -> Self {
        let mut index = VolumeIndex::default();
        for pvc in pvcs {
            if let Some(pv) = pvc
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .filter(|v| !v.is_empty())
            {
                let key = (
                    pvc.metadata.namespace.clone().unwrap_or_default(),
                    pvc.metadata.name.clone().unwrap_or_default(),
                );
                index.bound.insert(key, pv);
            }
        }
        for pv in pvs {
            let name = pv.metadata.name.clone().unwrap_or_default();
            let spec = pv.spec.as_ref();
            if let Some(csi) = spec.and_then(|s| s.csi.as_ref()).filter(|c| c.driver == DRIVER) {
                index
                    .csi
                    .insert(name.clone(), (csi.driver.clone(), csi.volume_handle.clone()));
            }
            let modes = spec.and_then(|s| s.access_modes.clone()).unwrap_or_default();
            // The attach/detach controller's isMultiAttachAllowed.
            let shared =
                modes.is_empty() || modes.iter().any(|m| m == "ReadWriteMany" || m == "ReadOnlyMany");
            index.exclusive.insert(name, !shared);
        }
        for va in attachments {
            let Some(pv) = va.spec.source.persistent_volume_name.clone() else {
                continue;
            };
            let attached = va.status.as_ref().is_some_and(|s| s.attached);
            index.attachments.insert(
                (pv, va.spec.node_name.clone()),
                (va.metadata.name.clone().unwrap_or_default(), attached),
            );
        }
        index
    }

    /// The PV bound to a claim.
    pub fn bound_pv(&self, namespace: &str, claim: &str) -> Option<&str> {
        self.bound
            .get(&(namespace.to_string(), claim.to_string()))
            .map(String::as_str)
    }

    /// The pod volumes that keep `pod` from starting on `node`: claims not bound yet, and
    /// volumes of [`DRIVER`] not attached to the node.
    pub fn waiting_for(&self, pod: &Pod, node: &str) -> Vec<String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        pod_claims(pod)
            .filter(|(_, claim)| match self.bound_pv(ns, claim) {
                None => true,
                Some(pv) => {
                    self.csi.contains_key(pv)
                        && !self
                            .attachments
                            .get(&(pv.to_string(), node.to_string()))
                            .is_some_and(|(_, attached)| *attached)
                }
            })
            .map(|(volume, _)| volume.to_string())
            .collect()
    }
}
