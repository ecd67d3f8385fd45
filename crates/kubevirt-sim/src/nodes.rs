//! Simulated nodes: the Node objects the sandbox creates, and the status their simulated
//! kubelet reports. The real scheduler places pods by this capacity, so it has to look
//! like a real worker's.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A node to create.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeTemplate {
    /// Node name.
    pub name: String,
    /// CPU capacity, e.g. `"32"`.
    pub cpu: String,
    /// Memory capacity, e.g. `"128Gi"`.
    pub memory: String,
    /// Pod capacity.
    pub pods: String,
    /// Extra labels (on top of the hostname, OS and `kubevirt.io/schedulable` labels).
    pub labels: BTreeMap<String, String>,
    /// Taints as written.
    pub taints: Vec<Taint>,
}

impl NodeTemplate {
    /// A worker `name` with the given capacity.
    pub fn worker(name: impl Into<String>, cpu: &str, memory: &str, pods: &str) -> Self {
        NodeTemplate {
            name: name.into(),
            cpu: cpu.into(),
            memory: memory.into(),
            pods: pods.into(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
        }
    }

    /// `count` workers `node-1`..`node-N`.
    pub fn workers(count: usize, cpu: &str, memory: &str, pods: &str) -> Vec<Self> {
        (1..=count)
            .map(|i| Self::worker(format!("node-{i}"), cpu, memory, pods))
            .collect()
    }

    /// From a scenario's Node object: its name, labels, taints and capacity as written
    /// (missing capacity falls back to the defaults given).
    pub fn from_node(node: &Node, default: &NodeTemplate) -> Result<Self> {
        let name = node
            .metadata
            .name
            .clone()
            .ok_or_else(|| Error::Other("a scenario Node has no name".into()))?;
        let capacity = node
            .status
            .as_ref()
            .and_then(|s| s.capacity.clone())
            .unwrap_or_default();
        let get = |key: &str, fallback: &str| {
            capacity
                .get(key)
                .map(|q| q.0.clone())
                .unwrap_or_else(|| fallback.to_string())
        };
        Ok(NodeTemplate {
            cpu: get("cpu", &default.cpu),
            memory: get("memory", &default.memory),
            pods: get("pods", &default.pods),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default(),
            name,
        })
    }

    /// The Node object to create. Capacity is kept in an annotation too, so the simulated
    /// kubelet (possibly another process) reports what was asked for.
    pub fn to_node(&self) -> Node {
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), self.name.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("kubernetes.io/arch".to_string(), "amd64".to_string()),
            ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
            ("beta.kubernetes.io/arch".to_string(), "amd64".to_string()),
            ("kubevirt.io/schedulable".to_string(), "true".to_string()),
        ]);
        labels.extend(self.labels.clone());
        let capacity =
            serde_json::json!({"cpu": self.cpu, "memory": self.memory, "pods": self.pods}).to_string();
        Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(labels),
                annotations: Some(BTreeMap::from([(CAPACITY_ANNOTATION.to_string(), capacity)])),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: if self.taints.is_empty() {
                    None
                } else {
                    Some(self.taints.clone())
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    /// Creates the Node, or leaves an existing one alone.
    pub async fn create(&self, client: &kube::Client) -> Result<()> {
        let nodes: Api<Node> = Api::all(client.clone());
        match nodes.create(&PostParams::default(), &self.to_node()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(Error::kube(format!("creating node {}", self.name), e)),
        }
    }
}

/// Annotation recording the capacity a simulated node reports.
pub const CAPACITY_ANNOTATION: &str = "sandbox.kubevirt-sim.io/capacity";

/// The status a healthy simulated kubelet reports for `node`, with heartbeat `now`.
/// `index` makes the node's InternalIP unique.
pub fn ready_status(node: &Node, index: u32, now: Time) -> NodeStatus {
    let name = node.metadata.name.clone().unwrap_or_default();
    let capacity: BTreeMap<String, String> = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CAPACITY_ANNOTATION))
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_else(|| {
            BTreeMap::from([
                ("cpu".into(), "32".into()),
                ("memory".into(), "128Gi".into()),
                ("pods".into(), "110".into()),
            ])
        });
    let mut resources: BTreeMap<String, Quantity> =
        capacity.into_iter().map(|(k, v)| (k, Quantity(v))).collect();
    resources
        .entry("ephemeral-storage".into())
        .or_insert_with(|| Quantity("100Gi".into()));
    let cond = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    // Keep the transition times the node already has, so `kubectl describe` reads true.
    let previous: BTreeMap<String, NodeCondition> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_.clone(), c))
        .collect();
    let conditions = [
        cond(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        cond(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        cond(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        cond(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status (simulated)",
        ),
    ]
    .into_iter()
    .map(|mut c| {
        if let Some(p) = previous.get(&c.type_)
            && p.status == c.status
        {
            c.last_transition_time = p.last_transition_time.clone();
        }
        c
    })
    .collect();
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(conditions),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: node_ip(index),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name,
            },
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            boot_id: format!("sim-boot-{index}"),
            container_runtime_version: "containerd://1.4.0-sim".into(),
            kernel_version: "6.1.0-sim".into(),
            kube_proxy_version: "v1.20.2".into(),
            kubelet_version: "v1.20.2".into(),
            machine_id: format!("sim-machine-{index}"),
            operating_system: "linux".into(),
            os_image: "Simulated node (kubevirt-sim)".into(),
            system_uuid: format!("sim-uuid-{index}"),
            ..Default::default()
        }),
        phase: None,
        ..Default::default()
    }
}

/// The InternalIP of the node with this index.
pub fn node_ip(index: u32) -> String {
    format!("10.0.{}.{}", index / 250, index % 250 + 1)
}
