//! The device-plugin resources of a VMI's Multus networks: each network whose
//! NetworkAttachmentDefinition carries the annotation `k8s.v1.cni.cncf.io/resourceName` (SR-IOV
//! VFs, typically) makes the launcher pod request one of that resource
//! (`pkg/network/multus/nad.go` `NetworkToResource`, `renderresources.go`
//! `WithNetworkResources`). A live launcher pod already carries them; a VMI read from manifests
//! needs the NetworkAttachmentDefinition in the input, and without it the count is unknown.

use super::requests::Requests;
use crate::kubevirt::{NetworkAttachmentDefinition, VirtualMachineInstanceSpec};

/// The NAD annotation naming the resource a pod on that network requests.
pub const RESOURCE_NAME_ANNOTATION: &str = "k8s.v1.cni.cncf.io/resourceName";

/// What the VMI's Multus networks add to its launcher pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetworkResources {
    /// One of each named resource per network (`intel.com/sriov_netdevice`: 2, say).
    pub requests: Requests,
    /// `namespace/name` of each NAD a network names that is not known: its resource, if it
    /// has one, is not counted.
    pub unknown: Vec<String>,
}

/// The NAD `ns/name` a Multus `networkName` refers to: `ns/name` as written, else in the VMI's
/// namespace (`NetAttachDefNamespacedName`).
fn nad_key(namespace: &str, network_name: &str) -> (String, String) {
    match network_name.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (namespace.to_string(), network_name.to_string()),
    }
}

/// The resources of `spec`'s Multus networks, read from `nads`.
#[must_use]
pub fn network_resources(
    spec: &VirtualMachineInstanceSpec,
    namespace: &str,
    nads: &[NetworkAttachmentDefinition],
) -> NetworkResources {
    let mut out = NetworkResources::default();
    for network in &spec.networks {
        let Some(name) = network
            .multus
            .as_ref()
            .and_then(|m| m.get("networkName"))
            .and_then(serde_json::Value::as_str)
        else {
            continue;
        };
        let (ns, nad_name) = nad_key(namespace, name);
        let found = nads.iter().find(|n| {
            n.metadata.name.as_deref() == Some(nad_name.as_str())
                && n.metadata.namespace.as_deref().unwrap_or("default") == ns
        });
        match found {
            Some(nad) => {
                if let Some(resource) = nad
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(RESOURCE_NAME_ANNOTATION))
                    .filter(|r| !r.is_empty())
                {
                    out.requests.add(resource, 1.0);
                }
            }
            None => out.unknown.push(format!("{ns}/{nad_name}")),
        }
    }
    out
}

/// The sentence for NADs whose resources could not be counted, or `None` when all are known;
/// `where_looked` is the snapshot's "in the input" or "in the cluster".
#[must_use]
pub fn unknown_network_resources_note(unknown: &[String], where_looked: &str) -> Option<String> {
    (!unknown.is_empty()).then(|| {
        format!(
            "NetworkAttachmentDefinition {} is not {where_looked}, so the device-plugin resource its {RESOURCE_NAME_ANNOTATION} annotation may name (SR-IOV, say) is not counted in the launcher pod's requests",
            unknown.join(", ")
        )
    })
}
