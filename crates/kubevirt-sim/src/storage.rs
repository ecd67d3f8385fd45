//! Storage, as a cluster with a CSI driver has it (reference §7 "RWO volumes"). Without it
//! a PVC stays Pending and the real scheduler never places a pod that mounts it. EMULATED
//! here, for every PVC whatever its storageClassName:
//! - **Provisioner** (a CSI external-provisioner): for each Pending PVC a PV `pvc-<PVC uid>`
//!   with the claim's capacity, access modes, volume mode and class, CSI driver [`DRIVER`],
//!   reclaim policy Delete, pre-bound to the claim (`claimRef`). The real PV controller of
//!   kube-controller-manager then binds the pair (`spec.volumeName`, phases Bound) at once;
//!   should it not have after [`BIND_FALLBACK`], the provisioner binds them itself. PVs it
//!   provisioned are deleted once Released and no longer attached anywhere.
//! - **Attach/detach controller and the driver's external attacher**: for every (PV of
//!   [`DRIVER`], node) that a pod needs (bound to the node, not Succeeded/Failed, Terminating included)
//!   on a node that is up, a `storage.k8s.io/v1` VolumeAttachment named as Kubernetes names
//!   it (`csi-<sha256(volumeHandle + driver + node)>`), then `status.attached=true`. A
//!   volume whose PV is neither ReadWriteMany nor ReadOnlyMany (with access modes set) that
//!   has a VolumeAttachment to another node is not attached: each pod waiting for it gets
//!   one Warning Event `FailedAttachVolume` `Multi-Attach error for volume "<pv>" Volume is
//!   already exclusively attached to one node and can't be attached to another` (or `Volume
//!   is already used by pod(s) …` while a pod on the other node still uses it), as the real
//!   controller reports it, until that VolumeAttachment is gone.
//! - **Detach**: a VolumeAttachment that no pod needs any more is deleted when its node is
//!   up. On a node that is down it stays: the volume is pinned there (the kubelet cannot
//!   confirm the unmount) until someone deletes it, the out-of-service taint releases it
//!   ([`crate::outofservice`]), or, when [`crate::SimConfig::force_detach_timeout_ms`] is
//!   set, that time has passed (Kubernetes: 6 min).
//!
//! The kubelet side ([`crate::kubelet`]) keeps a pod Pending (ContainerCreating) until
//! [`VolumeIndex::waiting_for`] is empty: its claims bound and their volumes of [`DRIVER`]
//! attached to its node. PVs of other kinds or drivers (created by hand) are not attached
//! and nobody waits for them.
//!
//! The real attach/detach controller of the 1.20 controller manager leaves the simulated
//! nodes alone: it only manages nodes annotated
//! `volumes.kubernetes.io/controller-managed-attach-detach`, which they are not.
//! Simplifications: VolumeAttachments carry no finalizer (deleting one detaches at once;
//! only those of [`DRIVER`] are managed),
//! Node `status.volumesAttached`/`volumesInUse` are not reported, and a missing or unbound
//! claim gets no FailedMount event.
//!
//! Where things are: which volumes a pod needs in `storage/volumes.rs`, the provisioner's
//! and attach/detach controller's decisions in `storage/controller.rs`, the writes in
//! `storage/perform.rs`; this file runs the loop.

mod controller;
mod perform;
mod volumes;

pub use controller::{BIND_FALLBACK, Controller, Op, Snapshot};
pub use volumes::{DRIVER, VolumeIndex, VolumeView, attachment_name, multi_attach_message, pod_claims};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio::sync::Notify;

use crate::shared::Shared;
use perform::perform;

/// How long a write is not repeated while the watches catch up with it.
const REPEAT_AFTER: Duration = Duration::from_secs(5);

/// Runs the provisioner and the attach/detach controller until aborted.
pub async fn run(shared: Shared) {
    let notify = Arc::new(Notify::new());
    let client = shared.client.clone();
    let pods: Store<Pod> = crate::watch::store(
        Api::all(client.clone()),
        watcher::Config::default(),
        notify.clone(),
    );
    let view = VolumeView::start(&client, notify.clone());
    let _ = pods.wait_until_ready().await;
    view.wait_until_ready().await;
    let force = (shared.config.force_detach_timeout_ms > 0)
        .then(|| Duration::from_millis(shared.config.force_detach_timeout_ms));
    let mut controller = Controller::new(force);
    let mut recent: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = notify.notified() => {},
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
        }
        let (pods, pvcs, pvs, attachments) = (
            pods.state(),
            view.pvcs.state(),
            view.pvs.state(),
            view.attachments.state(),
        );
        // A partitioned node cannot report its unmounts either.
        let nodes_down = shared.nodes_unreachable();
        let world = Snapshot {
            pods: &pods,
            pvcs: &pvcs,
            pvs: &pvs,
            attachments: &attachments,
            nodes_down: &nodes_down,
        };
        let now = Instant::now();
        recent.retain(|_, t| now.duration_since(*t) < REPEAT_AFTER);
        // A write is sent again once REPEAT_AFTER has passed since it was last *sent*; deciding it
        // again meanwhile must not push that back, or a create that met the old object of the
        // same name (409 while it was being deleted) would never be retried.
        let ops: Vec<Op> = controller
            .decide(&world, now)
            .into_iter()
            .filter(|op| match recent.entry(op.key()) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(now);
                    true
                }
            })
            .collect();
        let failed: Vec<String> = stream::iter(ops)
            .map(|op| {
                let client = client.clone();
                async move {
                    match perform(&client, &op).await {
                        Ok(()) => None,
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => None,
                        Err(e) => {
                            tracing::warn!("{}: {e}", op.key());
                            Some(op.key())
                        }
                    }
                }
            })
            .buffer_unordered(shared.config.concurrency.max(1))
            .filter_map(|k| async move { k })
            .collect()
            .await;
        for key in failed {
            recent.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests;
