//! The snapshot's launcher pods by the VMI that created them, and its nodes by name, indexed
//! once: what a migration target is rendered from and what the inter-pod filters read a VMI's
//! running pod from.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::node::pod_is_finished;
use crate::kubevirt::VirtualMachineInstance;
use crate::snapshot::ClusterSnapshot;

/// What a migration target is rendered from, indexed once so that planning many VMs does not
/// scan the whole snapshot for each: the unfinished launcher pods by the UID of the VMI that
/// created them, and the nodes by name.
#[derive(Debug, Default)]
pub struct TargetSources<'a> {
    launchers: HashMap<&'a str, Vec<&'a Pod>>,
    nodes: HashMap<&'a str, &'a Node>,
}

impl<'a> TargetSources<'a> {
    /// Indexes the pods and nodes of `snapshot`.
    #[must_use]
    pub fn of(snapshot: &'a ClusterSnapshot) -> Self {
        let mut launchers: HashMap<&str, Vec<&Pod>> = HashMap::new();
        for pod in snapshot.pods.iter().filter(|p| !pod_is_finished(p)) {
            if let Some(uid) = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubevirt.io/created-by"))
            {
                launchers.entry(uid.as_str()).or_default().push(pod);
            }
        }
        let nodes = snapshot
            .nodes
            .iter()
            .filter_map(|n| Some((n.metadata.name.as_deref()?, n)))
            .collect();
        Self { launchers, nodes }
    }

    /// The node called `name`, if the snapshot has it.
    #[must_use]
    pub fn node(&self, name: &str) -> Option<&'a Node> {
        self.nodes.get(name).copied()
    }

    /// The running launcher pod of `vmi`: bound to its node, owned by it, not finished.
    #[must_use]
    pub fn of_vmi(&self, vmi: &VirtualMachineInstance) -> Option<&'a Pod> {
        let uid = vmi.metadata.uid.as_deref()?;
        let node = vmi.status.as_ref()?.node_name.as_deref()?;
        self.launchers
            .get(uid)?
            .iter()
            .copied()
            .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
    }
}
