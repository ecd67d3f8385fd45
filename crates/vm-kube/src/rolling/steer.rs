//! Steering: the nodes a step's VMs may go to carry the label [`TARGET_LABEL`] with the
//! round's run id, and the step's migrations ask for it in `spec.addedNodeSelector`. The
//! scheduler still places every target pod (KubeVirt merges the added selector under the
//! VMI's own, so it can only narrow); the label only keeps VMs off the round's nodes still to
//! come, so that each moves once.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

use crate::drain::{DrainError, retry};
use crate::error::{ApiError, Scope};

/// The label on the nodes a step may migrate to; its value is the run id.
pub const TARGET_LABEL: &str = "vm-drain-safe.kubevirt.io/rolling-target";

fn node_err(e: kube::Error, verb: &'static str) -> DrainError {
    DrainError::Api(ApiError::from_kube(e, verb, "nodes", Scope::Cluster))
}

/// The `addedNodeSelector` of a steered migration.
#[must_use]
pub fn selector(run: &str) -> BTreeMap<String, String> {
    [(TARGET_LABEL.to_string(), run.to_string())].into()
}

async fn set_label(api: &Api<Node>, node: &str, value: Option<&str>) -> Result<(), DrainError> {
    let patch = json!({"metadata": {"labels": {TARGET_LABEL: value}}});
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    let what = format!("labelling node {node} for the round's migrations");
    match retry::transient(&what, || api.patch(node, &params, &patch)).await {
        Ok(_) => Ok(()),
        // A node deleted meanwhile takes no VM anyway.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(node_err(e, "patch")),
    }
}

/// Makes exactly `targets` carry the label with `run`: labels those that lack it, unlabels
/// the others (nodes of an earlier round's label included).
///
/// # Errors
/// API errors.
pub async fn label_targets(api: &Api<Node>, run: &str, targets: &BTreeSet<String>) -> Result<(), DrainError> {
    let all = ListParams::default();
    let nodes = retry::transient("listing the nodes", || api.list(&all))
        .await
        .map_err(|e| node_err(e, "list"))?;
    for n in nodes.items {
        let name = n.metadata.name.clone().unwrap_or_default();
        let current = n
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(TARGET_LABEL))
            .cloned();
        let wanted = targets.contains(&name);
        match (wanted, current.as_deref()) {
            (true, Some(v)) if v == run => {}
            (true, _) => set_label(api, &name, Some(run)).await?,
            (false, Some(_)) => set_label(api, &name, None).await?,
            (false, None) => {}
        }
    }
    Ok(())
}

/// Removes the label from every node (the round ended, or was aborted).
///
/// # Errors
/// API errors.
pub async fn clear(api: &Api<Node>) -> Result<(), DrainError> {
    label_targets(api, "", &BTreeSet::new()).await
}
