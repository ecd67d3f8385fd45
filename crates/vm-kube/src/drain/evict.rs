//! The end of a drain: evicting the pods left on the node once its VMs are gone (PDB refusals
//! retried), or with `--vms-only` waiting until no launcher pod is left.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{EvictParams, ListParams};
use kube::{Api, Client};
use vm_core::drain::{controller_kind, stays_on_node};

use super::calls::api_error;
use super::{DrainError, Event, ExecOptions, Reporter, Summary, retry};
use crate::error::{ApiError, Scope};

fn is_live_launcher(pod: &Pod) -> bool {
    controller_kind(pod) == Some("VirtualMachineInstance") && !vm_core::placement::pod_is_finished(pod)
}

async fn pods_on(client: &Client, node: &str) -> Result<Vec<Pod>, DrainError> {
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let list = retry::transient(&format!("listing the pods of node {node}"), || {
        pods.list(&on_node)
    })
    .await
    .map_err(|e| DrainError::Api(ApiError::from_kube(e, "list", "pods", Scope::Cluster)))?;
    Ok(list.items)
}

/// Empties the node of every pod that is not a DaemonSet or mirror pod: evicts what may be
/// evicted, and waits for the rest. A launcher pod whose VMI is still handing over is left to
/// KubeVirt until it completes; then it is evicted like any other pod, so one that completes
/// after the others were evicted is not left behind. PDB refusals (429) are retried.
pub(super) async fn evict_rest(
    client: &Client,
    node: &str,
    opts: &ExecOptions,
    reporter: &dyn Reporter,
    summary: &mut Summary,
) -> Result<(), DrainError> {
    let evict_params = EvictParams::default();
    let mut last_wait = String::new();
    loop {
        let must_leave: Vec<Pod> = pods_on(client, node)
            .await?
            .into_iter()
            .filter(|p| !stays_on_node(p))
            .collect();
        if must_leave.is_empty() {
            return Ok(());
        }
        let evictable: Vec<&Pod> = must_leave
            .iter()
            .filter(|p| !is_live_launcher(p) && p.metadata.deletion_timestamp.is_none())
            .collect();
        if evictable.is_empty() {
            let left: Vec<String> = must_leave.iter().map(pod_id).collect();
            report_waiting(reporter, &left, &mut last_wait);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let mut refused = false;
        for pod in evictable {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let id = pod_id(pod);
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let evicted = retry::retry_while(
                &format!("evicting pod {id}"),
                retry::is_transient_for_eviction,
                || api.evict(&name, &evict_params),
            )
            .await;
            match evicted {
                Ok(_) => {
                    reporter.event(&Event::Evicted { pod: id.clone() });
                    summary.evicted.push(id);
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(kube::Error::Api(s)) if s.code == 429 => {
                    refused = true;
                    reporter.event(&Event::EvictionRetry {
                        pod: id,
                        message: s.message.clone(),
                    });
                }
                Err(e) => return Err(api_evict_err(e, &ns)),
            }
        }
        if refused {
            tokio::time::sleep(opts.eviction_retry).await;
        }
    }
}

fn pod_id(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn api_evict_err(e: kube::Error, ns: &str) -> DrainError {
    api_error(e, "create", "pods/eviction", ns)
}

/// Waits until no live launcher pod is left on the node (`--vms-only`: other pods stay).
pub(super) async fn wait_for_launchers(
    client: &Client,
    node: &str,
    reporter: &dyn Reporter,
) -> Result<(), DrainError> {
    let mut last = String::new();
    loop {
        let left: Vec<String> = pods_on(client, node)
            .await?
            .iter()
            .filter(|p| is_live_launcher(p))
            .map(pod_id)
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        report_waiting(reporter, &left, &mut last);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Says which pods the drain waits for, once for each change of that list.
fn report_waiting(reporter: &dyn Reporter, left: &[String], last: &mut String) {
    let what = format!("{} pod(s) still on the node: {}", left.len(), left.join(", "));
    if what != *last {
        reporter.event(&Event::Waiting { what: what.clone() });
        *last = what;
    }
}
