//! The destructive steps of a recovery, each idempotent: the out-of-service taint, the
//! force-deletion of launcher pods, the release of VolumeAttachments.

use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use vm_core::drain::controller_kind;
use vm_core::recover::OUT_OF_SERVICE_TAINT;

use super::vigil::Vigil;
use crate::delete::delete_if_present;
use crate::drain::DrainError;
use crate::drain::retry::transient;
use crate::error::{ApiError, Scope};

/// The taint as `kubectl taint` writes it, for messages.
pub const TAINT_TEXT: &str = "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute";

fn err(e: kube::Error, verb: &'static str, resource: &str, scope: Scope) -> DrainError {
    DrainError::Api(ApiError::from_kube(e, verb, resource, scope))
}

/// Whether `node` carries the out-of-service taint.
#[must_use]
pub fn has_out_of_service_taint(node: &Node) -> bool {
    taints(node).iter().any(|t| t.key == OUT_OF_SERVICE_TAINT)
}

fn taints(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
}

/// Replaces the node's taints, guarded by its resourceVersion so that a concurrent change of
/// another taint is never lost (a conflict is retried on a fresh read).
async fn edit_taints(
    nodes: &Api<Node>,
    name: &str,
    edit: impl Fn(&mut Vec<Taint>) -> bool,
) -> Result<bool, DrainError> {
    loop {
        let node = transient(&format!("reading node {name}"), || nodes.get(name))
            .await
            .map_err(|e| err(e, "get", "nodes", Scope::Cluster))?;
        let mut list = taints(&node);
        if !edit(&mut list) {
            return Ok(false);
        }
        let patch = json!({
            "metadata": {"resourceVersion": node.metadata.resource_version},
            "spec": {"taints": list},
        });
        let (params, merge) = (PatchParams::default(), Patch::Merge(&patch));
        let what = format!("updating the taints of node {name}");
        match transient(&what, || nodes.patch(name, &params, &merge)).await {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(err(e, "patch", "nodes", Scope::Cluster)),
        }
    }
}

/// Adds the out-of-service taint; `false` when it was there already.
///
/// # Errors
/// Reading or patching the node failed.
pub async fn add_out_of_service_taint(nodes: &Api<Node>, name: &str) -> Result<bool, DrainError> {
    edit_taints(nodes, name, |list| {
        if list.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT) {
            return false;
        }
        list.push(Taint {
            key: OUT_OF_SERVICE_TAINT.to_string(),
            value: Some("nodeshutdown".to_string()),
            effect: "NoExecute".to_string(),
            time_added: None,
        });
        true
    })
    .await
}

/// Removes the out-of-service taint (`--cleanup`); `false` when there was none.
///
/// # Errors
/// Reading or patching the node failed.
pub async fn remove_out_of_service_taint(nodes: &Api<Node>, name: &str) -> Result<bool, DrainError> {
    edit_taints(nodes, name, |list| {
        let before = list.len();
        list.retain(|t| t.key != OUT_OF_SERVICE_TAINT);
        list.len() != before
    })
    .await
}

/// Whether a pod on a dead node belongs to a VM: a virt-launcher pod (controlled by its VMI),
/// or a hotplug-volume pod (`hp-volume-*`, controlled by a launcher pod).
fn is_vm_pod(pod: &Pod) -> bool {
    controller_kind(pod) == Some("VirtualMachineInstance")
        || (controller_kind(pod) == Some("Pod")
            && pod
                .metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("hp-volume-")))
}

/// Force-deletes (grace period 0) every VM pod on `node`, asking `vigil` before each one;
/// returns the pods deleted (`ns/name`), and the Lease's new `renewTime` if the node came back
/// and the deleting stopped.
///
/// # Errors
/// Listing or deleting pods, or reading the Lease, failed (a pod already gone is fine).
pub async fn force_delete_launchers(
    client: &Client,
    node: &str,
    vigil: &Vigil,
    log: &(dyn Fn(String) + Send + Sync),
) -> Result<(Vec<String>, Option<String>), DrainError> {
    let all: Api<Pod> = Api::all(client.clone());
    let on_node_only = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let on_node = transient(&format!("listing the pods of node {node}"), || {
        all.list(&on_node_only)
    })
    .await
    .map_err(|e| err(e, "list", "pods", Scope::Cluster))?;
    let mut deleted = Vec::new();
    for pod in on_node.items.iter().filter(|p| is_vm_pod(p)) {
        if let Some(renewed) = vigil.renewed_since_assessment().await? {
            return Ok((deleted, Some(renewed)));
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        let what = format!("force-deleting pod {ns}/{name}");
        if transient(&what, || delete_if_present(&api, &name, &params))
            .await
            .map_err(|e| err(e, "delete", "pods", Scope::Namespace(ns.clone())))?
        {
            log(format!("force-deleted pod {ns}/{name}"));
            deleted.push(format!("{ns}/{name}"));
        }
    }
    Ok((deleted, None))
}

/// Deletes the named VolumeAttachments; returns those it deleted.
///
/// # Errors
/// A deletion failed (one already gone is fine).
pub async fn delete_attachments(client: &Client, names: &[String]) -> Result<Vec<String>, DrainError> {
    let api: Api<VolumeAttachment> = Api::all(client.clone());
    let mut deleted = Vec::new();
    for name in names {
        let (what, params) = (
            format!("deleting VolumeAttachment {name}"),
            DeleteParams::default(),
        );
        if transient(&what, || delete_if_present(&api, name, &params))
            .await
            .map_err(|e| err(e, "delete", "volumeattachments.storage.k8s.io", Scope::Cluster))?
        {
            deleted.push(name.clone());
        }
    }
    Ok(deleted)
}
