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
    /// Annotations as written.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// `spec.unschedulable` (cordoned).
    #[serde(default)]
    pub unschedulable: bool,
    /// Further capacity besides cpu, memory and pods: extended resources (`hugepages-1Gi`,
    /// `nvidia.com/gpu`, SR-IOV pools, ...), `ephemeral-storage`, or the KubeVirt device
    /// plugins (which default to 1000 each).
    #[serde(default)]
    pub extra_capacity: BTreeMap<String, String>,
    /// Allocatable where it differs from capacity.
    #[serde(default)]
    pub allocatable: BTreeMap<String, String>,
}

/// The device plugins virt-handler registers on every node, with their default count
/// (`--max-devices`).
pub const KUBEVIRT_DEVICES: [&str; 3] = [
    "devices.kubevirt.io/kvm",
    "devices.kubevirt.io/tun",
    "devices.kubevirt.io/vhost-net",
];
const KUBEVIRT_DEVICE_COUNT: &str = "1000";

/// Node annotation describing the node's CPU, expanded into the node-labeller's labels
/// (see [`cpu_labels`]).
pub const CPU_ANNOTATION: &str = "sandbox.kubevirt-sim.io/cpu";
/// Node annotation `"false"`: the node has no `/dev/kvm` (`devices.kubevirt.io/kvm: 0`).
pub const KVM_ANNOTATION: &str = "sandbox.kubevirt-sim.io/kvm";

/// The CPU of default nodes: an Intel Skylake, as the node-labeller would describe it.
pub const DEFAULT_CPU: &str = "vendor=Intel model=Skylake-Client-IBRS \
    features=vmx,ss,tsc_adjust,clflushopt,umip,md-clear,ssbd,xsaves \
    models=Broadwell-noTSX-IBRS,Haswell-noTSX-IBRS,IvyBridge-IBRS,SandyBridge-IBRS,Westmere-IBRS,Nehalem-IBRS,Penryn";

/// Machine types a node advertises unless told otherwise.
const DEFAULT_MACHINE_TYPES: &str = "q35,pc-q35-rhel9.6.0";

/// The labels KubeVirt's node-labeller writes for a CPU described as space-separated
/// `key=value` words (all label values `"true"`):
///
/// - `vendor=AMD`: `cpu-vendor.node.kubevirt.io/AMD`;
/// - `model=EPYC-Milan`: the host-model, `host-model-cpu.node.kubevirt.io/EPYC-Milan`, plus
///   `cpu-model.…` and `cpu-model-migration.…` for it;
/// - `features=avx2,sev`: `host-model-required-features.node.kubevirt.io/<f>` and
///   `cpu-feature.node.kubevirt.io/<f>` for each;
/// - `models=EPYC-Rome,EPYC`: further (older) usable models, `cpu-model.…` and
///   `cpu-model-migration.…`;
/// - `machine-types=q35,pc-q35-rhel9.6.0`: `machine-type.node.kubevirt.io/<m>` (this default
///   when not given).
pub fn cpu_labels(spec: &str) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut add = |k: String| {
        labels.insert(k, "true".to_string());
    };
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let mut machine_types = list(DEFAULT_MACHINE_TYPES);
    for word in spec.split_whitespace() {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| Error::Other(format!("{CPU_ANNOTATION}: {word:?} is not key=value")))?;
        match key {
            "vendor" => add(format!("cpu-vendor.node.kubevirt.io/{value}")),
            "model" => {
                add(format!("host-model-cpu.node.kubevirt.io/{value}"));
                add(format!("cpu-model.node.kubevirt.io/{value}"));
                add(format!("cpu-model-migration.node.kubevirt.io/{value}"));
            }
            "features" => {
                for f in list(value) {
                    add(format!("host-model-required-features.node.kubevirt.io/{f}"));
                    add(format!("cpu-feature.node.kubevirt.io/{f}"));
                }
            }
            "models" => {
                for m in list(value) {
                    add(format!("cpu-model.node.kubevirt.io/{m}"));
                    add(format!("cpu-model-migration.node.kubevirt.io/{m}"));
                }
            }
            "machine-types" => machine_types = list(value),
            _ => {
                return Err(Error::Other(format!(
                    "{CPU_ANNOTATION}: unknown key {key:?} (vendor, model, features, models, machine-types)"
                )));
            }
        }
    }
    for m in machine_types {
        add(format!("machine-type.node.kubevirt.io/{m}"));
    }
    Ok(labels)
}

/// Node annotation the sandbox sets on a scenario node whose labels it completed: the labels
/// it added, comma-separated, so that `vm-sandbox up` and `kubectl describe node` say so.
pub const FILLED_LABELS_ANNOTATION: &str = "sandbox.kubevirt-sim.io/filled-labels";

const MACHINE_TYPE_PREFIX: &str = "machine-type.node.kubevirt.io/";

/// Completes a scenario node written with node-labeller labels but no
/// `machine-type.node.kubevirt.io/*` label. Every launcher pod selects one (KubeVirt 1.6+,
/// `nodeselectorrenderer.go`), so such a node would take no VM and nothing would say why; the
/// node-labeller of a real node always writes the machine types of its libvirt
/// (`node_labeller.go`). The defaults of the node's architecture are added (amd64:
/// [`DEFAULT_MACHINE_TYPES`]; arm64: `virt`); returns the labels added, if any.
fn fill_machine_types(labels: &mut BTreeMap<String, String>) -> Option<Vec<String>> {
    if labels.keys().any(|k| k.starts_with(MACHINE_TYPE_PREFIX)) {
        return None;
    }
    let types = match labels.get("kubernetes.io/arch").map(String::as_str) {
        Some("arm64") => "virt",
        Some("s390x") => "s390-ccw-virtio",
        _ => DEFAULT_MACHINE_TYPES,
    };
    let added: Vec<String> = types
        .split(',')
        .map(|m| format!("{MACHINE_TYPE_PREFIX}{m}"))
        .collect();
    for key in &added {
        labels.insert(key.clone(), "true".to_string());
    }
    Some(added)
}

/// Whether a label is one the node-labeller writes.
fn is_labeller_label(key: &str) -> bool {
    key.split_once('/').is_some_and(|(prefix, _)| {
        prefix.ends_with(".node.kubevirt.io") || prefix == "node-labeller.kubevirt.io"
    })
}

impl NodeTemplate {
    /// A worker `name` with the given capacity.
    /// It carries the node-labeller labels of [`DEFAULT_CPU`], like every node of a uniform
    /// Intel cluster.
    pub fn worker(name: impl Into<String>, cpu: &str, memory: &str, pods: &str) -> Self {
        NodeTemplate {
            name: name.into(),
            cpu: cpu.into(),
            memory: memory.into(),
            pods: pods.into(),
            labels: cpu_labels(DEFAULT_CPU).unwrap_or_default(),
            taints: Vec::new(),
            annotations: BTreeMap::new(),
            unschedulable: false,
            extra_capacity: BTreeMap::new(),
            allocatable: BTreeMap::new(),
        }
    }

    /// `count` workers `node-1`..`node-N`.
    pub fn workers(count: usize, cpu: &str, memory: &str, pods: &str) -> Vec<Self> {
        (1..=count)
            .map(|i| Self::worker(format!("node-{i}"), cpu, memory, pods))
            .collect()
    }

    /// From a scenario's Node object: its name, labels, annotations, taints,
    /// `spec.unschedulable`, capacity and allocatable as written (missing cpu, memory and
    /// pods capacity falls back to the defaults given; allocatable defaults to capacity).
    /// The annotation [`CPU_ANNOTATION`] adds the node-labeller labels it describes; a node
    /// with neither that nor any node-labeller label gets those of [`DEFAULT_CPU`]. Labels
    /// written in the scenario win. [`KVM_ANNOTATION`] `"false"` sets
    /// `devices.kubevirt.io/kvm` to 0 unless the capacity names it.
    pub fn from_node(node: &Node, default: &NodeTemplate) -> Result<Self> {
        let name = node
            .metadata
            .name
            .clone()
            .ok_or_else(|| Error::Other("a scenario Node has no name".into()))?;
        let status = node.status.as_ref();
        let capacity = status.and_then(|s| s.capacity.clone()).unwrap_or_default();
        let get = |key: &str, fallback: &str| {
            capacity
                .get(key)
                .map(|q| q.0.clone())
                .unwrap_or_else(|| fallback.to_string())
        };
        let mut extra_capacity: BTreeMap<String, String> = capacity
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "cpu" | "memory" | "pods"))
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        let allocatable: BTreeMap<String, String> = status
            .and_then(|s| s.allocatable.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        let annotations = node.metadata.annotations.clone().unwrap_or_default();
        let written = node.metadata.labels.clone().unwrap_or_default();
        let mut labels = match annotations.get(CPU_ANNOTATION) {
            Some(spec) => cpu_labels(spec).map_err(|e| Error::Other(format!("node {name}: {e}")))?,
            // The default identity is an Intel CPU: not for arm64 nodes, on which the labeller
            // writes no CPU model, feature, host-model or vendor labels (`arch_labeller.go`);
            // they only get their machine types below.
            None if !written.keys().any(|k| is_labeller_label(k))
                && written.get("kubernetes.io/arch").map(String::as_str) != Some("arm64") =>
            {
                cpu_labels(DEFAULT_CPU)?
            }
            None => BTreeMap::new(),
        };
        labels.extend(written);
        let mut annotations = annotations;
        // A CPU annotation says which machine types there are (`machine-types=`), none included.
        if !annotations.contains_key(CPU_ANNOTATION)
            && let Some(filled) = fill_machine_types(&mut labels)
        {
            annotations.insert(FILLED_LABELS_ANNOTATION.to_string(), filled.join(","));
        }
        if annotations.get(KVM_ANNOTATION).map(String::as_str) == Some("false") {
            extra_capacity
                .entry(KUBEVIRT_DEVICES[0].to_string())
                .or_insert_with(|| "0".to_string());
        }
        Ok(NodeTemplate {
            cpu: get("cpu", &default.cpu),
            memory: get("memory", &default.memory),
            pods: get("pods", &default.pods),
            labels,
            taints: node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default(),
            annotations,
            unschedulable: node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true),
            extra_capacity,
            allocatable,
            name,
        })
    }

    /// The capacity the node's kubelet reports: cpu, memory, pods, the extra capacity and
    /// the KubeVirt device plugins (1000 each unless set).
    pub fn capacity(&self) -> BTreeMap<String, String> {
        let mut c = BTreeMap::from([
            ("cpu".to_string(), self.cpu.clone()),
            ("memory".to_string(), self.memory.clone()),
            ("pods".to_string(), self.pods.clone()),
        ]);
        for d in KUBEVIRT_DEVICES {
            c.insert(d.to_string(), KUBEVIRT_DEVICE_COUNT.to_string());
        }
        c.extend(self.extra_capacity.clone());
        c
    }

    /// The allocatable the node's kubelet reports: the capacity, overridden by what the
    /// template says.
    pub fn allocatable(&self) -> BTreeMap<String, String> {
        let mut a = self.capacity();
        a.extend(self.allocatable.clone());
        a
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
            serde_json::json!({"capacity": self.capacity(), "allocatable": self.allocatable()}).to_string();
        let mut annotations = self.annotations.clone();
        annotations.insert(CAPACITY_ANNOTATION.to_string(), capacity);
        Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: if self.taints.is_empty() {
                    None
                } else {
                    Some(self.taints.clone())
                },
                unschedulable: self.unschedulable.then_some(true),
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

/// Annotation recording the capacity and allocatable a simulated node reports, as JSON
/// `{"capacity": {...}, "allocatable": {...}}` (a flat map is read as both).
pub const CAPACITY_ANNOTATION: &str = "sandbox.kubevirt-sim.io/capacity";

/// The capacity and allocatable recorded on `node` (defaults: 32 CPUs, 128Gi, 110 pods,
/// the KubeVirt device plugins; `ephemeral-storage` 100Gi unless set).
fn reported_resources(node: &Node) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let recorded: Option<serde_json::Value> = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CAPACITY_ANNOTATION))
        .and_then(|c| serde_json::from_str(c).ok());
    let map = |v: Option<&serde_json::Value>| -> Option<BTreeMap<String, String>> {
        serde_json::from_value(v?.clone()).ok()
    };
    let (capacity, allocatable) = match &recorded {
        Some(r) if r.get("capacity").is_some_and(serde_json::Value::is_object) => {
            let c = map(r.get("capacity")).unwrap_or_default();
            let a = map(r.get("allocatable")).unwrap_or_else(|| c.clone());
            (c, a)
        }
        Some(r) => {
            let c = map(Some(r)).unwrap_or_default();
            (c.clone(), c)
        }
        None => {
            let t = NodeTemplate::worker("", "32", "128Gi", "110");
            (t.capacity(), t.allocatable())
        }
    };
    let quantities = |m: BTreeMap<String, String>| -> BTreeMap<String, Quantity> {
        let mut q: BTreeMap<String, Quantity> = m.into_iter().map(|(k, v)| (k, Quantity(v))).collect();
        q.entry("ephemeral-storage".into())
            .or_insert_with(|| Quantity("100Gi".into()));
        q
    };
    let cap = quantities(capacity);
    let mut alloc = quantities(allocatable);
    // Allocatable never names what capacity lacks, nor lacks what it has.
    for (k, v) in &cap {
        alloc.entry(k.clone()).or_insert_with(|| v.clone());
    }
    (cap, alloc)
}

/// The status a healthy simulated kubelet reports for `node`, with heartbeat `now`.
/// `index` makes the node's InternalIP unique.
pub fn ready_status(node: &Node, index: u32, now: Time) -> NodeStatus {
    let name = node.metadata.name.clone().unwrap_or_default();
    let (capacity, allocatable) = reported_resources(node);
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
        capacity: Some(capacity),
        allocatable: Some(allocatable),
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
            architecture: node
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/arch"))
                .cloned()
                .unwrap_or_else(|| "amd64".into()),
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

#[cfg(test)]
mod tests;
