//! Makes the simulated KubeVirt's [`Action`]s on the API server: patches, creates and
//! deletes of VMs, VMIs, migrations, pods and nodes, as virt-controller and virt-handler
//! write them (not-found and conflicts are ignored: the next pass decides again).

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};

use super::world::{Action, str_at};
use crate::crds::kubevirt_resource;

/// The field manager of every write.
pub(super) const MANAGER: &str = "kubevirt-sim";

pub(super) async fn perform(client: &kube::Client, action: &Action) -> Result<(), kube::Error> {
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let ignore = |r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        other => other,
    };
    let dyn_api = |kind: &str, ns: &str| -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), ns, &kubevirt_resource(kind))
    };
    match action {
        Action::PatchVmi { ns, name, patch } => ignore(
            dyn_api("VirtualMachineInstance", ns)
                .patch(name, &pp, &Patch::Merge(patch))
                .await
                .map(|_| ()),
        ),
        Action::CreatePod { pod, .. } => {
            let ns = str_at(pod, "/metadata/namespace").unwrap_or("default");
            let pod: Pod = serde_json::from_value(pod.clone()).map_err(kube::Error::SerdeError)?;
            Api::<Pod>::namespaced(client.clone(), ns)
                .create(&PostParams::default(), &pod)
                .await
                .map(|_| ())
        }
        Action::PatchPodStatus { ns, name, patch } => ignore(
            Api::<Pod>::namespaced(client.clone(), ns)
                .patch_status(name, &pp, &Patch::Strategic(patch))
                .await
                .map(|_| ()),
        ),
        Action::DeletePod { ns, name, uid } => {
            let dp = only_if_uid(uid);
            ignore(
                Api::<Pod>::namespaced(client.clone(), ns)
                    .delete(name, &dp)
                    .await
                    .map(|_| ()),
            )
        }
        Action::CreateVmi { ns, vmi } => {
            let obj: DynamicObject = serde_json::from_value(vmi.clone()).map_err(kube::Error::SerdeError)?;
            ignore(
                dyn_api("VirtualMachineInstance", ns)
                    .create(&PostParams::default(), &obj)
                    .await
                    .map(|_| ()),
            )
        }
        Action::DeleteVmi { ns, name, uid } => {
            let dp = only_if_uid(uid);
            ignore(
                dyn_api("VirtualMachineInstance", ns)
                    .delete(name, &dp)
                    .await
                    .map(|_| ()),
            )
        }
        Action::PatchNode { name, patch } => Api::<Node>::all(client.clone())
            .patch(name, &pp, &Patch::Merge(patch))
            .await
            .map(|_| ()),
        Action::PatchVm { ns, name, patch } => ignore(
            dyn_api("VirtualMachine", ns)
                .patch(name, &pp, &Patch::Merge(patch))
                .await
                .map(|_| ()),
        ),
        Action::CreateOwnedVmi { vmi, .. } => {
            let ns = str_at(vmi, "/metadata/namespace").unwrap_or("default");
            let obj: DynamicObject = serde_json::from_value(vmi.clone()).map_err(kube::Error::SerdeError)?;
            dyn_api("VirtualMachineInstance", ns)
                .create(&PostParams::default(), &obj)
                .await
                .map(|_| ())
        }
        Action::PatchStatus {
            kind,
            ns,
            name,
            patch,
        } => ignore(
            dyn_api(kind, ns)
                .patch_status(name, &pp, &Patch::Merge(patch))
                .await
                .map(|_| ()),
        ),
        Action::CreateVmim { vmim, .. } => {
            let ns = str_at(vmim, "/metadata/namespace").unwrap_or("default");
            let obj: DynamicObject = serde_json::from_value(vmim.clone()).map_err(kube::Error::SerdeError)?;
            dyn_api("VirtualMachineInstanceMigration", ns)
                .create(&PostParams::default(), &obj)
                .await
                .map(|_| ())
        }
        Action::PatchVmim { ns, name, patch } => ignore(
            dyn_api("VirtualMachineInstanceMigration", ns)
                .patch(name, &pp, &Patch::Merge(patch))
                .await
                .map(|_| ()),
        ),
        Action::PatchVmimStatus { ns, name, patch } => ignore(
            dyn_api("VirtualMachineInstanceMigration", ns)
                .patch_status(name, &pp, &Patch::Merge(patch))
                .await
                .map(|_| ()),
        ),
        Action::PatchVmStatus { ns, name, patch } => ignore(
            dyn_api("VirtualMachine", ns)
                .patch_status(name, &pp, &Patch::Merge(patch))
                .await
                .map(|_| ()),
        ),
    }
}

/// A delete that applies only to the object with this UID: a pod or VMI recreated under the
/// same name meanwhile is left alone.
fn only_if_uid(uid: &str) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..Default::default()
    }
}
