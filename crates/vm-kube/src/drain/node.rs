//! Node changes: cordon, uncordon, and the record of VMs a drain stopped (an annotation on
//! the node, so that `--uncordon` can restart them even from another machine).

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{DrainError, retry};
use crate::error::{ApiError, Scope};

/// Annotation on the node listing the VMs this drain stopped, as JSON.
pub const STOPPED_ANNOTATION: &str = "vm-drain-safe.kubevirt.io/stopped-vms";

/// A VM the drain stopped, and how to bring it back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoppedVm {
    /// Namespace.
    pub namespace: String,
    /// VM (or standalone VMI) name.
    pub name: String,
    /// The VM's run strategy before the drain; `None` for a standalone VMI (not recreated).
    pub run_strategy: Option<String>,
}

fn node_err(e: kube::Error, verb: &'static str) -> DrainError {
    DrainError::Api(ApiError::from_kube(e, verb, "nodes", Scope::Cluster))
}

/// Sets `spec.unschedulable` (cordon when `true`).
///
/// # Errors
/// API errors (a 404 names the node).
pub async fn set_unschedulable(api: &Api<Node>, node: &str, on: bool) -> Result<(), DrainError> {
    let patch = json!({"spec": {"unschedulable": if on { json!(true) } else { json!(null) }}});
    let what = format!("{} node {node}", if on { "cordoning" } else { "uncordoning" });
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    retry::transient(&what, || api.patch(node, &params, &patch))
        .await
        .map_err(|e| node_err(e, "patch"))?;
    Ok(())
}

/// The VMs recorded as stopped on `node`.
///
/// # Errors
/// API errors; an annotation that is not valid JSON.
pub async fn stopped_vms(api: &Api<Node>, node: &str) -> Result<Vec<StoppedVm>, DrainError> {
    let n = retry::transient(&format!("reading node {node}"), || api.get(node))
        .await
        .map_err(|e| node_err(e, "get"))?;
    let Some(text) = n
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(STOPPED_ANNOTATION))
    else {
        return Ok(Vec::new());
    };
    serde_json::from_str(text).map_err(|e| {
        DrainError::Other(format!(
            "node {node}: annotation {STOPPED_ANNOTATION} is not valid: {e}"
        ))
    })
}

/// Replaces the record on `node` (removes the annotation when `vms` is empty).
///
/// # Errors
/// API errors.
pub async fn record_stopped(api: &Api<Node>, node: &str, vms: &[StoppedVm]) -> Result<(), DrainError> {
    let value = if vms.is_empty() {
        serde_json::Value::Null
    } else {
        json!(serde_json::to_string(vms).unwrap_or_default())
    };
    // A merge patch of this one annotation: someone else's changes to the node never conflict.
    let patch = json!({"metadata": {"annotations": {STOPPED_ANNOTATION: value}}});
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    retry::transient(&format!("recording the stopped VMs on node {node}"), || {
        api.patch(node, &params, &patch)
    })
    .await
    .map_err(|e| node_err(e, "patch"))?;
    Ok(())
}
