//! Makes the simulated storage's [`Op`]s on the API server: PVs, bindings,
//! VolumeAttachments and FailedAttachVolume Events (not-found and conflicts ignored: the
//! next pass decides again).

use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::controller::Op;

const MANAGER: &str = "kubevirt-sim-storage";

pub(super) async fn perform(client: &kube::Client, op: &Op) -> Result<(), kube::Error> {
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let attachments: Api<VolumeAttachment> = Api::all(client.clone());
    match op {
        Op::CreatePv(pv) => {
            tracing::info!(
                "provisioning {} for {:?}",
                pv.metadata.name.as_deref().unwrap_or_default(),
                pv.spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref())
                    .and_then(|c| c.name.as_ref())
            );
            pvs.create(&PostParams::default(), pv).await.map(|_| ())
        }
        Op::Bind { pvc, pv } => {
            let ns = pvc.metadata.namespace.as_deref().unwrap_or_default();
            let name = pvc.metadata.name.as_deref().unwrap_or_default();
            tracing::info!("binding {ns}/{name} to {pv} (the PV controller has not)");
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
            let spec = pvc.spec.clone().unwrap_or_default();
            pvs.patch_status(pv, &pp, &Patch::Merge(json!({"status": {"phase": "Bound"}})))
                .await?;
            let bind = json!({
                "metadata": {"annotations": {
                    "pv.kubernetes.io/bind-completed": "yes",
                    "pv.kubernetes.io/bound-by-controller": "yes",
                }},
                "spec": {"volumeName": pv},
            });
            claims.patch(name, &pp, &Patch::Merge(bind)).await?;
            let storage = spec
                .resources
                .and_then(|r| r.requests)
                .and_then(|r| r.get("storage").cloned());
            let status = json!({"status": {
                "phase": "Bound",
                "accessModes": spec.access_modes,
                "capacity": {"storage": storage},
            }});
            claims
                .patch_status(name, &pp, &Patch::Merge(status))
                .await
                .map(|_| ())
        }
        Op::DeletePv(name) => pvs.delete(name, &DeleteParams::default()).await.map(|_| ()),
        Op::CreateAttachment(va) => {
            tracing::info!(
                "attaching {:?} to {} ({})",
                va.spec.source.persistent_volume_name,
                va.spec.node_name,
                va.metadata.name.as_deref().unwrap_or_default()
            );
            attachments.create(&PostParams::default(), va).await.map(|_| ())
        }
        Op::MarkAttached(name) => {
            let status = json!({"status": {"attached": true}});
            attachments
                .patch_status(name, &pp, &Patch::Merge(status))
                .await
                .map(|_| ())
        }
        Op::DeleteAttachment(name) => {
            tracing::info!("detaching {name}");
            attachments
                .delete(name, &DeleteParams::default())
                .await
                .map(|_| ())
        }
        Op::Event(event) => {
            let ns = event.metadata.namespace.as_deref().unwrap_or("default");
            Api::<Event>::namespaced(client.clone(), ns)
                .create(&PostParams::default(), event)
                .await
                .map(|_| ())
        }
    }
}
