//! What is where when a drain stops part-way: the VMIs still on the node and the state of
//! their migrations, so that the operator knows what a re-run will pick up.

use kube::api::ListParams;
use kube::{Api, Client};
use vm_core::kubevirt::{VirtualMachineInstance, VirtualMachineInstanceMigration};

use super::{DrainError, NODE_LABEL, retry};
use crate::error::{ApiError, Scope};

fn list_error(e: kube::Error, resource: &'static str) -> DrainError {
    DrainError::Api(ApiError::from_kube(e, "list", resource, Scope::Cluster))
}

/// One line per active VMI still on `node`: `ns/name`, plus the phase of the drain's migration
/// of it when one is still in flight (it is left to finish; a re-run adopts it).
///
/// # Errors
/// Listing VMIs or migrations failed.
pub async fn left_on_node(client: &Client, node: &str) -> Result<Vec<String>, DrainError> {
    let vmis: Api<VirtualMachineInstance> = Api::all(client.clone());
    let everything = ListParams::default();
    let on_node = retry::transient("listing VMIs", || vmis.list(&everything))
        .await
        .map_err(|e| list_error(e, "virtualmachineinstances.kubevirt.io"))?;
    let migrations: Api<VirtualMachineInstanceMigration> = Api::all(client.clone());
    let selector = ListParams::default().labels(&format!("{NODE_LABEL}={node}"));
    let ours = retry::transient("listing migrations", || migrations.list(&selector))
        .await
        .map_err(|e| list_error(e, "virtualmachineinstancemigrations.kubevirt.io"))?;
    let mut lines = Vec::new();
    for vmi in on_node.items.iter().filter(|v| {
        vm_core::drain::vmi_is_active(v)
            && v.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
    }) {
        let ns = vmi.metadata.namespace.as_deref().unwrap_or_default();
        let name = vmi.metadata.name.as_deref().unwrap_or_default();
        let in_flight = ours.items.iter().find_map(|m| {
            let phase = m
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("Pending");
            (m.metadata.namespace.as_deref() == Some(ns)
                && m.spec.vmi_name == name
                && !matches!(phase, "Succeeded" | "Failed"))
            .then_some(phase)
        });
        lines.push(match in_flight {
            Some(phase) => format!("{ns}/{name} (migration {phase}, left to finish)"),
            None => format!("{ns}/{name}"),
        });
    }
    Ok(lines)
}
