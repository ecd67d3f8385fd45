//! virt-handler's node heartbeat and virt-controller's node controller: which nodes
//! KubeVirt counts as schedulable (`kubevirt.io/schedulable`, `kubevirt.io/heartbeat`;
//! KubeVirt: `pkg/virt-handler/heartbeat`, `pkg/virt-controller/watch/node.go`).

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};

use super::perform::MANAGER;
use crate::shared::Shared;

/// virt-handler's node heartbeat: `kubevirt.io/heartbeat` and `kubevirt.io/schedulable=true`
/// on nodes that are up and reachable (a partitioned virt-handler cannot patch its node);
/// virt-controller's node controller sets `schedulable=false` on a node whose heartbeat is
/// older than the timeout.
pub(super) async fn handler_heartbeats(shared: Shared) {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    loop {
        let down = shared.nodes_unreachable();
        let now = jiff::Timestamp::now();
        if let Ok(list) = nodes.list(&ListParams::default()).await {
            for n in list.items {
                let name = n.metadata.name.clone().unwrap_or_default();
                let labels = n.metadata.labels.clone().unwrap_or_default();
                let schedulable = labels.get("kubevirt.io/schedulable").map(String::as_str);
                let patch = if down.contains(&name) {
                    let last = n
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("kubevirt.io/heartbeat"))
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
                    let stale = last.is_none_or(|t| {
                        now.duration_since(t).as_millis() as u64 > shared.config.handler_timeout_ms
                    });
                    (stale && schedulable != Some("false")).then(
                        || serde_json::json!({"metadata": {"labels": {"kubevirt.io/schedulable": "false"}}}),
                    )
                } else {
                    Some(serde_json::json!({"metadata": {
                        "labels": {"kubevirt.io/schedulable": "true"},
                        "annotations": {"kubevirt.io/heartbeat": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()},
                    }}))
                };
                if let Some(p) = patch
                    && let Err(e) = nodes.patch(&name, &pp, &Patch::Merge(&p)).await
                {
                    tracing::warn!("virt-handler heartbeat of {name}: {e}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(shared.config.handler_heartbeat_ms.max(200))).await;
    }
}
