//! Where a VMI's launcher pod could run: node selectors, required node affinity, taints and
//! tolerations, and room, checked the way kube-scheduler's filters do.
//!
//! `place_jointly` puts several VMs at once onto the free room of a set of nodes, biggest
//! first, each onto the eligible node with the most free memory (the scheduler's default
//! LeastAllocated scoring spreads the same way). It is advisory: it answers "is there room for
//! all of them together?", and the real scheduler picks the real node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};

use crate::kubevirt::VirtualMachineInstanceSpec;
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
}

impl NodeView {
    /// Builds the view of `node` with the requests of `pods` bound to it.
    #[must_use]
    pub fn new(node: &Node, pods: &[Pod]) -> Self {
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
        let requested = pods
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str()))
            .filter(|p| !pod_is_finished(p))
            .map(pod_requests)
            .fold(Requests::default(), |a, b| a + b);
        Self {
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default(),
            allocatable: Requests {
                cpu: get("cpu"),
                memory: get("memory"),
            },
            requested,
            ready,
            cordoned: node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true),
            name,
        }
    }

    /// Allocatable minus requested.
    #[must_use]
    pub fn free(&self) -> Requests {
        Requests {
            cpu: self.allocatable.cpu - self.requested.cpu,
            memory: self.allocatable.memory - self.requested.memory,
        }
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
    let of = |c: &k8s_openapi::api::core::v1::Container| {
        let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let get = |k: &str| {
            req.and_then(|r| r.get(k))
                .and_then(|q| parse_quantity(q).ok())
                .unwrap_or(0.0)
        };
        Requests {
            cpu: get("cpu"),
            memory: get("memory"),
        }
    };
    let sum = spec
        .containers
        .iter()
        .map(of)
        .fold(Requests::default(), |a, b| a + b);
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(of)
        .fold(Requests::default(), |a, b| Requests {
            cpu: a.cpu.max(b.cpu),
            memory: a.memory.max(b.memory),
        });
    Requests {
        cpu: sum.cpu.max(init.cpu),
        memory: sum.memory.max(init.memory),
    }
}

/// The scheduling constraints of a launcher pod, taken from its VMI spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Constraints {
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// `requiredDuringSchedulingIgnoredDuringExecution` terms (ORed).
    pub required_terms: Vec<NodeSelectorTerm>,
    /// `spec.tolerations`.
    pub tolerations: Vec<Toleration>,
}

impl Constraints {
    /// The constraints of `spec`.
    #[must_use]
    pub fn of(spec: &VirtualMachineInstanceSpec) -> Self {
        Self {
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_terms: required_terms(spec.affinity.as_ref()),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
        }
    }

    /// Whether anything narrows the nodes at all.
    #[must_use]
    pub fn narrows(&self) -> bool {
        !self.node_selector.is_empty() || !self.required_terms.is_empty()
    }

    /// `Ok` when a pod with these constraints may run on `node`, else why not.
    ///
    /// # Errors
    /// A sentence naming the selector, term or taint that excludes the node.
    pub fn admit(&self, node: &NodeView) -> Result<(), String> {
        for (key, value) in &self.node_selector {
            if node.labels.get(key) != Some(value) {
                return Err(format!(
                    "nodeSelector {key}={value} does not match node {}",
                    node.name
                ));
            }
        }
        if !self.required_terms.is_empty() && !self.required_terms.iter().any(|t| term_matches(t, node)) {
            return Err(format!(
                "required node affinity does not match node {}",
                node.name
            ));
        }
        for taint in &node.taints {
            let blocking = matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute");
            if blocking && !self.tolerations.iter().any(|t| tolerates(t, taint)) {
                let value = taint
                    .value
                    .as_deref()
                    .map(|v| format!("={v}"))
                    .unwrap_or_default();
                return Err(format!(
                    "node {} has taint {}{value}:{} that the VM does not tolerate",
                    node.name, taint.key, taint.effect
                ));
            }
        }
        Ok(())
    }
}

fn required_terms(affinity: Option<&Affinity>) -> Vec<NodeSelectorTerm> {
    affinity
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref())
        .map(|sel| sel.node_selector_terms.clone())
        .unwrap_or_default()
}

fn term_matches(term: &NodeSelectorTerm, node: &NodeView) -> bool {
    let exprs = term.match_expressions.iter().flatten();
    let fields = term.match_fields.iter().flatten();
    let has_any = term.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
        || term.match_fields.as_ref().is_some_and(|f| !f.is_empty());
    // An empty term matches no node (k8s nodeaffinity semantics).
    has_any
        && exprs
            .clone()
            .all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)))
        && fields.clone().all(|r| {
            let value = (r.key == "metadata.name").then_some(node.name.as_str());
            requirement_matches(r, value)
        })
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (value.and_then(|v| v.parse::<i64>().ok()), values.first()) else {
                return false;
            };
            let Ok(bound) = bound.parse::<i64>() else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether `toleration` tolerates `taint` (core/v1 `Toleration.ToleratesTaint`).
#[must_use]
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        _ => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
    }
}

/// One VM to place.
#[derive(Clone, Debug)]
pub struct Demand {
    /// An identifier the caller understands (`ns/name`).
    pub id: String,
    /// What its launcher pod requests.
    pub requests: Requests,
    /// Where it may go.
    pub constraints: Constraints,
}

/// The outcome for one VM of a joint placement.
#[derive(Clone, Debug, PartialEq)]
pub enum Placement {
    /// Room on this node.
    Placed(String),
    /// No room anywhere, with one reason per candidate node.
    Unplaceable(Vec<String>),
}

/// Places every demand at once onto `nodes`, biggest memory first; each placement takes its
/// room from the node so the next VM sees what is left. The result is in the input order.
#[must_use]
pub fn place_jointly(demands: &[Demand], nodes: &[NodeView]) -> Vec<Placement> {
    let mut free: Vec<Requests> = nodes.iter().map(NodeView::free).collect();
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by(|&a, &b| {
        demands[b]
            .requests
            .memory
            .total_cmp(&demands[a].requests.memory)
            .then(a.cmp(&b))
    });
    let mut result = vec![Placement::Unplaceable(Vec::new()); demands.len()];
    for i in order {
        let demand = &demands[i];
        let mut reasons = Vec::new();
        let mut best: Option<usize> = None;
        for (n, node) in nodes.iter().enumerate() {
            if let Some(reason) = node.unavailable_reason() {
                reasons.push(reason);
                continue;
            }
            if let Err(reason) = demand.constraints.admit(node) {
                reasons.push(reason);
                continue;
            }
            if let Some(reason) = shortfall(&demand.requests, &free[n], &node.name) {
                reasons.push(reason);
                continue;
            }
            if best.is_none_or(|b| free[n].memory > free[b].memory) {
                best = Some(n);
            }
        }
        result[i] = match best {
            Some(n) => {
                free[n].cpu -= demand.requests.cpu;
                free[n].memory -= demand.requests.memory;
                Placement::Placed(nodes[n].name.clone())
            }
            None => Placement::Unplaceable(reasons),
        };
    }
    result
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

#[cfg(test)]
mod tests;
