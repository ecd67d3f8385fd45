//! A node as the placement engine sees it: its labels, taints and availability, its room
//! (allocatable less what its unfinished pods request), and the sentences that say what room a
//! demand lacks there.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use crate::quantity::{format_bytes, format_cpu, parse_quantity};
use crate::resources::Requests;

/// Label that virt-handler keeps `"true"` on nodes that can run VMs; launcher pods select it.
pub const SCHEDULABLE_LABEL: &str = "kubevirt.io/schedulable";

/// A node as the placement engine sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Node taints.
    pub taints: Vec<Taint>,
    /// `status.allocatable`.
    pub allocatable: Requests,
    /// Sum of the requests of the pods bound to it that have not finished.
    pub requested: Requests,
    /// Ready condition is True.
    pub ready: bool,
    /// `spec.unschedulable` (cordoned).
    pub cordoned: bool,
    /// `status.allocatable.pods`: how many pods the kubelet admits (`None`: not reported).
    pub max_pods: Option<f64>,
    /// How many unfinished pods are bound to it.
    pub pod_count: usize,
}

impl NodeView {
    /// Builds the view of `node` with the requests of `pods` bound to it.
    #[must_use]
    pub fn new(node: &Node, pods: &[Pod]) -> Self {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let bound: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name))
            .collect();
        Self::with_pods(node, &bound)
    }

    /// The views of all `nodes`, with one pass over `pods`.
    #[must_use]
    pub fn all(nodes: &[Node], pods: &[Pod]) -> Vec<Self> {
        let mut by_node: std::collections::HashMap<&str, Vec<&Pod>> = std::collections::HashMap::new();
        for pod in pods {
            if let Some(n) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                by_node.entry(n).or_default().push(pod);
            }
        }
        nodes
            .iter()
            .map(|n| {
                let name = n.metadata.name.as_deref().unwrap_or_default();
                Self::with_pods(n, by_node.get(name).map_or(&[][..], Vec::as_slice))
            })
            .collect()
    }

    /// The view of `node` with the pods bound to it.
    #[must_use]
    pub fn with_pods(node: &Node, bound: &[&Pod]) -> Self {
        let name = node.metadata.name.clone().unwrap_or_default();
        let status = node.status.as_ref();
        let alloc = status.and_then(|s| s.allocatable.as_ref());
        let get = |key: &str| {
            alloc
                .and_then(|a| a.get(key))
                .and_then(|q| parse_quantity(q).ok())
                .unwrap_or(0.0)
        };
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let bound: Vec<&Pod> = bound.iter().copied().filter(|p| !pod_is_finished(p)).collect();
        let mut requested = Requests::default();
        for pod in &bound {
            requested += &pod_requests(pod);
        }
        let mut allocatable = Requests::new(get("cpu"), get("memory"));
        for (key, q) in alloc.into_iter().flatten() {
            if !matches!(key.as_str(), "cpu" | "memory" | "pods")
                && let Ok(v) = parse_quantity(q)
            {
                allocatable.add(key, v);
            }
        }
        Self {
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default(),
            allocatable,
            requested,
            max_pods: alloc
                .and_then(|a| a.get("pods"))
                .and_then(|q| parse_quantity(q).ok()),
            pod_count: bound.len(),
            ready,
            cordoned: node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true),
            name,
        }
    }

    /// Allocatable minus requested, for every resource name either side has.
    #[must_use]
    pub fn free(&self) -> Requests {
        let mut free = self.allocatable.clone();
        free -= &self.requested;
        free
    }

    /// Whether virt-handler marks the node able to run VMs.
    #[must_use]
    pub fn is_kubevirt_schedulable(&self) -> bool {
        self.labels.get(SCHEDULABLE_LABEL).map(String::as_str) == Some("true")
    }

    /// [`Self::unavailable_reason`] without the sentence.
    #[must_use]
    pub fn unavailable_reason_kind(&self) -> Option<()> {
        (self.cordoned || !self.ready || !self.is_kubevirt_schedulable()).then_some(())
    }

    /// Why no new launcher pod can land here at all, if so.
    #[must_use]
    pub fn unavailable_reason(&self) -> Option<String> {
        if self.cordoned {
            Some(format!("node {} is cordoned", self.name))
        } else if !self.ready {
            Some(format!("node {} is not Ready", self.name))
        } else if self.labels.get(SCHEDULABLE_LABEL).map(String::as_str) != Some("true") {
            Some(format!(
                "node {} does not carry {SCHEDULABLE_LABEL}=true",
                self.name
            ))
        } else {
            None
        }
    }
}

/// Whether the pod has finished (its requests no longer count).
#[must_use]
pub fn pod_is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// A pod's effective requests: the sum over its containers, or the largest init container.
#[must_use]
pub fn pod_requests(pod: &Pod) -> Requests {
    let Some(spec) = pod.spec.as_ref() else {
        return Requests::default();
    };
    // A request that is not set defaults to the limit (API defaulting), so a pod read from a
    // manifest counts the same as one read back from the API server.
    let of = |c: &k8s_openapi::api::core::v1::Container| {
        let mut r = Requests::default();
        let res = c.resources.as_ref();
        let requests = res.and_then(|r| r.requests.as_ref());
        let limits = res.and_then(|r| r.limits.as_ref());
        for (k, q) in limits.into_iter().flatten() {
            if requests.is_none_or(|req| !req.contains_key(k))
                && let Ok(v) = parse_quantity(q)
            {
                r.add(k, v);
            }
        }
        for (k, q) in requests.into_iter().flatten() {
            if let Ok(v) = parse_quantity(q) {
                r.add(k, v);
            }
        }
        r
    };
    let mut sum = Requests::default();
    for c in &spec.containers {
        sum += &of(c);
    }
    // Native sidecars (init containers with restartPolicy Always) run beside the others and
    // count in the sum; ordinary init containers count only as a maximum.
    let mut init_max = Requests::default();
    for c in spec.init_containers.iter().flatten() {
        let r = of(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sum += &r;
        } else {
            for (k, v) in r.iter() {
                if v > init_max.get(k) {
                    let delta = v - init_max.get(k);
                    init_max.add(k, delta);
                }
            }
        }
    }
    for (k, v) in init_max.iter() {
        if v > sum.get(k) {
            let delta = v - sum.get(k);
            sum.add(k, delta);
        }
    }
    sum
}

/// Every resource of `need` that `free` lacks on `node`, one sentence each. A resource that the
/// node does not report at all is missing there, except KubeVirt's own device plugins and
/// ephemeral storage, which nodes read from hand-written manifests often leave out: those are
/// checked only where the node reports them.
#[must_use]
pub fn shortfalls(need: &Requests, free: &Requests, node: &NodeView) -> Vec<String> {
    let mut out: Vec<String> = shortfall(need, free, &node.name).into_iter().collect();
    for (name, amount) in &need.extended {
        if *amount <= 0.0 {
            continue;
        }
        let reported = node.allocatable.extended.contains_key(name);
        if !reported && (name.starts_with("devices.kubevirt.io/") || name == "ephemeral-storage") {
            continue;
        }
        let have = free.get(name);
        if *amount > have + 1e-9 {
            let amount_text = format_amount(name, *amount);
            out.push(if node.allocatable.get(name) <= 0.0 {
                format!("node {} has no {name}, {amount_text} needed", node.name)
            } else {
                format!(
                    "node {} has {} {name} free, {amount_text} needed",
                    node.name,
                    format_amount(name, have.max(0.0))
                )
            });
        }
    }
    out
}

/// An amount of a resource in its own units: bytes for memory-like ones, a count otherwise.
fn format_amount(name: &str, amount: f64) -> String {
    if name.starts_with("hugepages-") || name == "ephemeral-storage" {
        format_bytes(amount)
    } else {
        format!("{amount}")
    }
}

/// Why `need` does not fit into `free` on `node`, naming the resource and the amounts.
#[must_use]
pub fn shortfall(need: &Requests, free: &Requests, node: &str) -> Option<String> {
    if need.memory > free.memory {
        Some(format!(
            "node {node} has {} memory free, {} needed",
            format_bytes(free.memory.max(0.0)),
            format_bytes(need.memory)
        ))
    } else if need.cpu > free.cpu + 1e-9 {
        Some(format!(
            "node {node} has {} CPU free, {} needed",
            format_cpu(free.cpu.max(0.0)),
            format_cpu(need.cpu)
        ))
    } else {
        None
    }
}
