//! Waiting for a maintained node to come back, and the health gate after it: the checks a
//! careful operator makes by hand before touching the next node.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};
use vm_core::kubevirt::VirtualMachineInstance;

use crate::drain::{DrainError, retry};
use crate::error::{ApiError, Scope};

use vm_core::placement::SCHEDULABLE_LABEL;

/// How often the waits look again.
const POLL: Duration = Duration::from_secs(2);

/// Why a node is not back yet, in words; `None` when it is Ready and KubeVirt-schedulable.
#[must_use]
pub fn not_back(node: Option<&Node>) -> Option<String> {
    let Some(node) = node else {
        return Some("the Node object is gone".into());
    };
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    if ready != Some("True") {
        return Some(format!("not Ready (Ready is {})", ready.unwrap_or("unknown")));
    }
    let schedulable = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SCHEDULABLE_LABEL))
        .map(String::as_str);
    if schedulable != Some("true") {
        return Some(format!(
            "Ready, but KubeVirt does not schedule VMs to it yet ({SCHEDULABLE_LABEL} is {})",
            schedulable.unwrap_or("absent")
        ));
    }
    None
}

/// Waits until `node` is Ready and KubeVirt-schedulable, for at most `timeout`.
///
/// # Errors
/// API errors; the timeout, with what the node still lacked.
pub async fn wait_node_back(client: &Client, node: &str, timeout: Duration) -> Result<(), DrainError> {
    let api: Api<Node> = Api::all(client.clone());
    let started = Instant::now();
    loop {
        let current = retry::transient(&format!("reading node {node}"), || api.get_opt(node))
            .await
            .map_err(|e| DrainError::Api(ApiError::from_kube(e, "get", "nodes", Scope::Cluster)))?;
        let Some(why) = not_back(current.as_ref()) else {
            return Ok(());
        };
        if started.elapsed() >= timeout {
            return Err(DrainError::Other(format!(
                "node {node} did not come back within --node-timeout ({} s): {why}",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Why a VM is not healthy yet; `None` when its VMI runs, and is Ready where it has a
/// readiness probe (KubeVirt sets the VMI's Ready condition from the probe then).
#[must_use]
pub fn not_healthy(vmi: Option<&VirtualMachineInstance>) -> Option<String> {
    let Some(vmi) = vmi else {
        return Some("no VMI".into());
    };
    let status = vmi.status.clone().unwrap_or_default();
    let phase = status.phase.as_deref().unwrap_or("");
    if phase != "Running" {
        return Some(format!(
            "VMI phase {}",
            if phase.is_empty() { "unset" } else { phase }
        ));
    }
    if vmi.spec.readiness_probe.is_some() {
        let ready = status.condition("Ready").map(|c| c.status.as_str());
        if ready != Some("True") {
            return Some(format!(
                "Running, but its readiness probe has not passed (Ready is {})",
                ready.unwrap_or("unknown")
            ));
        }
    }
    None
}

/// Waits until every VM of `vms` (`ns/name`) is healthy ([`not_healthy`]), for at most
/// `timeout`.
///
/// # Errors
/// API errors; the timeout, naming each VM that is not healthy and why.
pub async fn wait_vms_healthy(client: &Client, vms: &[String], timeout: Duration) -> Result<(), DrainError> {
    let started = Instant::now();
    loop {
        let mut sick = Vec::new();
        for id in vms {
            let (ns, name) = id.split_once('/').unwrap_or(("default", id));
            let api: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), ns);
            let vmi = retry::transient(&format!("reading VMI {id}"), || api.get_opt(name))
                .await
                .map_err(|e| {
                    DrainError::Api(ApiError::from_kube(
                        e,
                        "get",
                        "virtualmachineinstances.kubevirt.io",
                        Scope::Namespace(ns.to_string()),
                    ))
                })?;
            if let Some(why) = not_healthy(vmi.as_ref()) {
                sick.push(format!("{id}: {why}"));
            }
        }
        if sick.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(DrainError::Other(format!(
                "the health gate failed after {} s (--node-timeout): {}",
                timeout.as_secs(),
                sick.join("; ")
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vmi(spec: serde_json::Value, status: serde_json::Value) -> VirtualMachineInstance {
        serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": spec, "status": status})).unwrap()
    }

    #[test]
    fn a_vm_is_healthy_once_running_and_ready_where_it_has_a_readiness_probe() {
        assert_eq!(not_healthy(None).as_deref(), Some("no VMI"));
        let scheduling = vmi(json!({}), json!({"phase": "Scheduling"}));
        assert_eq!(
            not_healthy(Some(&scheduling)).as_deref(),
            Some("VMI phase Scheduling")
        );
        // Without a readiness probe, Running is enough, whatever Ready says.
        let running = vmi(
            json!({}),
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}),
        );
        assert_eq!(not_healthy(Some(&running)), None);
        // With one, KubeVirt's Ready condition follows the probe: it must be True.
        let probe = json!({"readinessProbe": {"tcpSocket": {"port": 80}}});
        let not_ready = vmi(
            probe.clone(),
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}),
        );
        assert_eq!(
            not_healthy(Some(&not_ready)).as_deref(),
            Some("Running, but its readiness probe has not passed (Ready is False)")
        );
        let unknown = vmi(probe.clone(), json!({"phase": "Running"}));
        assert!(not_healthy(Some(&unknown)).is_some_and(|w| w.ends_with("(Ready is unknown)")));
        let ready = vmi(
            probe,
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
        );
        assert_eq!(not_healthy(Some(&ready)), None);
    }
}
