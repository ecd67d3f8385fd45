//! A VMI's single-node (RWO) volumes and the VolumeAttachments that pin them to its node: until
//! they are released, the VM cannot start anywhere else ("Multi-Attach error", reference §7).

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::VolumeAttachment;

use crate::kubevirt::VirtualMachineInstance;
use crate::snapshot::ClusterSnapshot;

/// Whether a claim can be attached to one node only (`ReadWriteOnce` or `ReadWriteOncePod`),
/// by its bound access modes, else its requested ones.
#[must_use]
pub fn is_single_node(pvc: &PersistentVolumeClaim) -> bool {
    let modes = pvc.spec.as_ref().and_then(|s| s.access_modes.as_ref());
    let status_modes = pvc.status.as_ref().and_then(|s| s.access_modes.as_ref());
    status_modes
        .or(modes)
        .is_some_and(|m| m.iter().any(|m| m == "ReadWriteOnce" || m == "ReadWriteOncePod"))
}

/// The claims of `vmi` (persistentVolumeClaim and dataVolume volumes, a DataVolume's claim
/// having its name) that are single-node, as known to the snapshot.
#[must_use]
pub fn rwo_claims<'a>(
    snapshot: &'a ClusterSnapshot,
    vmi: &VirtualMachineInstance,
) -> Vec<&'a PersistentVolumeClaim> {
    let namespace = vmi.metadata.namespace.as_deref().unwrap_or("default");
    vmi.spec
        .volumes
        .iter()
        .filter_map(|v| {
            v.persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str())
                .or_else(|| v.data_volume.as_ref().map(|d| d.name.as_str()))
        })
        .filter_map(|claim| {
            snapshot.pvcs.iter().find(|p| {
                p.metadata.name.as_deref() == Some(claim)
                    && p.metadata.namespace.as_deref().unwrap_or("default") == namespace
            })
        })
        .filter(|p| is_single_node(p))
        .collect()
}

/// The VolumeAttachments on `node` of the volumes bound to `claims`.
#[must_use]
pub fn attachments_on<'a>(
    attachments: &'a [VolumeAttachment],
    node: &str,
    claims: &[&PersistentVolumeClaim],
) -> Vec<&'a VolumeAttachment> {
    let volumes: Vec<&str> = claims
        .iter()
        .filter_map(|c| c.spec.as_ref().and_then(|s| s.volume_name.as_deref()))
        .collect();
    attachments
        .iter()
        .filter(|a| a.spec.node_name == node)
        .filter(|a| {
            a.spec
                .source
                .persistent_volume_name
                .as_deref()
                .is_some_and(|pv| volumes.contains(&pv))
        })
        .collect()
}
