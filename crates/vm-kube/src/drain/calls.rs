//! Small helpers shared by the steps of a drain: how a step ends short of done, `ns/name`
//! ids, API errors named after their call, migration phases, and where a VMI runs now.

use kube::{Api, Client};
use vm_core::kubevirt::{VirtualMachineInstance, VirtualMachineInstanceMigration};

use super::{DrainError, Stopped, retry};
use crate::error::{ApiError, Scope};

/// Why the steps of a drain did not all run.
pub(super) enum WorkEnd {
    Stopped(Stopped),
    Failed(DrainError),
}

impl From<DrainError> for WorkEnd {
    fn from(e: DrainError) -> Self {
        Self::Failed(e)
    }
}

pub(super) fn api_error(e: kube::Error, verb: &'static str, resource: &str, ns: &str) -> DrainError {
    DrainError::Api(ApiError::from_kube(
        e,
        verb,
        resource,
        Scope::Namespace(ns.to_string()),
    ))
}

pub(super) fn split(id: &str) -> (&str, &str) {
    id.split_once('/').unwrap_or(("default", id))
}

pub(super) fn phase(m: &VirtualMachineInstanceMigration) -> &str {
    m.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

pub(super) fn is_final(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed")
}

/// Where a VMI runs now, if it is active.
pub(super) async fn vmi_node(client: &Client, id: &str) -> Result<Option<String>, DrainError> {
    let (ns, name) = split(id);
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), ns);
    let vmi = retry::transient(&format!("reading VMI {id}"), || vmis.get_opt(name))
        .await
        .map_err(|e| api_error(e, "get", "virtualmachineinstances.kubevirt.io", ns))?;
    Ok(vmi
        .filter(|v| vm_core::drain::vmi_is_active(v) && v.metadata.deletion_timestamp.is_none())
        .and_then(|v| v.status.and_then(|s| s.node_name)))
}

pub(super) fn list_err_vmim(e: kube::Error) -> DrainError {
    DrainError::Api(ApiError::from_kube(
        e,
        "list",
        "virtualmachineinstancemigrations.kubevirt.io",
        Scope::Cluster,
    ))
}
