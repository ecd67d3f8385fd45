//! EMULATED: non-graceful node shutdown as kube-controller-manager 1.28 and later handle it
//! (the 1.20 controller manager of the sandbox ignores the taint). On a node that is not
//! Ready and carries `node.kubernetes.io/out-of-service`, pods that do not tolerate the
//! taint are force-deleted and the node's VolumeAttachments are released, which is what
//! lets KubeVirt fail the VMIs (NodeUnresponsive) and restart them elsewhere.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, DeleteParams, ListParams};

/// The taint key.
pub const TAINT: &str = "node.kubernetes.io/out-of-service";

fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let key_ok = match t.key.as_deref() {
            None | Some("") => t.operator.as_deref() == Some("Exists"),
            Some(k) => k == taint.key,
        };
        let value_ok = t.operator.as_deref() == Some("Exists")
            || t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("");
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        key_ok && value_ok && effect_ok
    })
}

/// Runs until aborted.
pub async fn run(client: kube::Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let attachments: Api<VolumeAttachment> = Api::all(client.clone());
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Ok(list) = nodes.list(&ListParams::default()).await else {
            continue;
        };
        for node in list.items {
            let name = node.metadata.name.clone().unwrap_or_default();
            let Some(taint) = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .and_then(|t| t.iter().find(|t| t.key == TAINT))
                .cloned()
            else {
                continue;
            };
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                continue;
            }
            let on_node = pods
                .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
                .await;
            for pod in on_node.map(|l| l.items).unwrap_or_default() {
                let tolerations = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.tolerations.clone())
                    .unwrap_or_default();
                if tolerates(&tolerations, &taint) {
                    continue;
                }
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                tracing::info!(
                    "out-of-service taint on {name}: force-deleting pod {ns}/{pod_name} (emulated)"
                );
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                };
                let _ = Api::<Pod>::namespaced(client.clone(), &ns)
                    .delete(&pod_name, &dp)
                    .await;
            }
            if let Ok(vas) = attachments.list(&ListParams::default()).await {
                for va in vas.items.iter().filter(|va| va.spec.node_name == name) {
                    let _ = attachments
                        .delete(
                            va.metadata.name.as_deref().unwrap_or_default(),
                            &DeleteParams::default(),
                        )
                        .await;
                }
            }
        }
    }
}
