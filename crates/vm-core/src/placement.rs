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

pub mod inter_pod;

pub use inter_pod::{Occupancy, PlannedOccupancy, PodTerms};

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

/// The scheduling constraints of a launcher pod: taken from its VMI spec, or from the pod
/// KubeVirt really rendered, plus what a migration target adds (see [`crate::migration_target`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Constraints {
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// `requiredDuringSchedulingIgnoredDuringExecution` terms (ORed).
    pub required_terms: Vec<NodeSelectorTerm>,
    /// `spec.tolerations`.
    pub tolerations: Vec<Toleration>,
    /// Why KubeVirt put a node-selector key there ("host-model on node n1"), for reasons an
    /// operator can act on. Keys the VMI itself selects have no entry.
    pub origins: BTreeMap<String, String>,
}

impl Constraints {
    /// The constraints of `spec`.
    #[must_use]
    pub fn of(spec: &VirtualMachineInstanceSpec) -> Self {
        Self {
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_terms: required_terms(spec.affinity.as_ref()),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            origins: BTreeMap::new(),
        }
    }

    /// The constraints of a pod as the API server holds it (a running launcher pod).
    #[must_use]
    pub fn of_pod(pod: &Pod) -> Self {
        let spec = pod.spec.as_ref();
        Self {
            node_selector: spec.and_then(|s| s.node_selector.clone()).unwrap_or_default(),
            required_terms: required_terms(spec.and_then(|s| s.affinity.as_ref())),
            tolerations: spec.and_then(|s| s.tolerations.clone()).unwrap_or_default(),
            origins: BTreeMap::new(),
        }
    }

    /// Whether the pod tolerates the taint that cordoning stands for (such a VMI may be placed
    /// on cordoned nodes, kube-scheduler's NodeUnschedulable filter).
    #[must_use]
    pub fn tolerates_cordon(&self) -> bool {
        let cordon = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        self.tolerations.iter().any(|t| tolerates(t, &cordon))
    }

    /// Whether anything narrows the nodes at all.
    #[must_use]
    pub fn narrows(&self) -> bool {
        !self.node_selector.is_empty() || !self.required_terms.is_empty()
    }

    /// Whether a pod with these constraints may run on `node`: [`Self::admit`] without the
    /// sentence, for the many nodes a planner only needs a yes or no from.
    #[must_use]
    pub fn admits(&self, node: &NodeView) -> bool {
        self.admits_labels(node) && self.tolerates_taints(node)
    }

    /// Whether the node selector and the required node affinity admit `node` (the nodes
    /// topology spread counts, beside the scheduler's NodeAffinity filter).
    #[must_use]
    pub fn admits_labels(&self, node: &NodeView) -> bool {
        self.node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v))
            && (self.required_terms.is_empty() || self.required_terms.iter().any(|t| term_matches(t, node)))
    }

    /// Whether the tolerations cover every `NoSchedule` and `NoExecute` taint of `node`.
    #[must_use]
    pub fn tolerates_taints(&self, node: &NodeView) -> bool {
        node.taints.iter().all(|taint| {
            !matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
                || self.tolerations.iter().any(|t| tolerates(t, taint))
        })
    }

    /// `Ok` when a pod with these constraints may run on `node`, else why not.
    ///
    /// # Errors
    /// A sentence naming the selector, term or taint that excludes the node (the first of
    /// [`Self::failures`]).
    pub fn admit(&self, node: &NodeView) -> Result<(), String> {
        match self.failures(node).into_iter().next() {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// Every reason these constraints keep a pod off `node`, one sentence each: the node
    /// selector, the required node affinity, and each untolerated taint. The scheduler
    /// reports whichever of its filters fails first, so a plan names them all.
    #[must_use]
    pub fn failures(&self, node: &NodeView) -> Vec<String> {
        let mut failures = Vec::new();
        // Every selector entry the node lacks, in one sentence, grouped by why KubeVirt put it
        // there: "which labels does a target need, and why" is what an operator acts on.
        let missing: Vec<Label<'_>> = self
            .node_selector
            .iter()
            .filter(|(key, value)| node.labels.get(*key) != Some(*value))
            .collect();
        let missing = describe_missing(&missing, &self.origins);
        if !missing.is_empty() {
            failures.push(format!(
                "nodeSelector {missing} does not match node {}",
                node.name
            ));
        }
        if !self.required_terms.is_empty() && !self.required_terms.iter().any(|t| term_matches(t, node)) {
            failures.push(format!(
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
                failures.push(format!(
                    "node {} has taint {}{value}:{} that the VM does not tolerate",
                    node.name, taint.key, taint.effect
                ));
            }
        }
        failures
    }
}

/// A label's key and value.
type Label<'a> = (&'a String, &'a String);

/// The selector entries a node lacks, for a sentence: grouped by their origin ("host-model on
/// node n1"), keys of one label family shortened to `prefix/{a,b}`, and `=true`, the value of
/// every node-labeller label (`*.node.kubevirt.io/`), left out.
/// `cpu-feature.node.kubevirt.io/{pku,vmx}, cpu-model-migration.node.kubevirt.io/Cascadelake-Server
/// (host-model on node n1), disk=nvme`.
fn describe_missing(missing: &[Label<'_>], origins: &BTreeMap<String, String>) -> String {
    // Origins in the order their first key comes; the VMI's own keys (no origin) last.
    let mut groups: Vec<(Option<&String>, Vec<Label<'_>>)> = Vec::new();
    for &(key, value) in missing {
        let origin = origins.get(key);
        match groups.iter_mut().find(|(o, _)| *o == origin) {
            Some((_, entries)) => entries.push((key, value)),
            None => groups.push((origin, vec![(key, value)])),
        }
    }
    groups.sort_by_key(|(origin, _)| origin.is_none());
    groups
        .into_iter()
        .map(|(origin, entries)| {
            let labels = describe_labels(&entries);
            match origin {
                Some(why) => format!("{labels} ({why})"),
                None => labels,
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `a/{x,y}, b=v`: keys of one prefix together, a node-labeller label's `=true` left out.
fn describe_labels(entries: &[Label<'_>]) -> String {
    let mut by_prefix: Vec<(&str, Vec<String>)> = Vec::new();
    for &(key, value) in entries {
        let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key.as_str()));
        // The node-labeller's labels are all "true"; saying so is noise.
        let name = if value == "true" && prefix.ends_with(".node.kubevirt.io") {
            name.to_string()
        } else {
            format!("{name}={value}")
        };
        match by_prefix.iter_mut().find(|(p, _)| *p == prefix) {
            Some((_, names)) => names.push(name),
            None => by_prefix.push((prefix, vec![name])),
        }
    }
    by_prefix
        .into_iter()
        .map(|(prefix, names)| match (prefix, names.as_slice()) {
            ("", _) => names.join(", "),
            (_, [one]) => format!("{prefix}/{one}"),
            _ => format!("{prefix}/{{{}}}", names.join(",")),
        })
        .collect::<Vec<_>>()
        .join(", ")
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
    /// Its pod's labels and inter-pod terms (affinity, anti-affinity, topology spread).
    pub pod: PodTerms,
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
/// room (every resource name, and one pod slot) from the node so the next VM sees what is
/// left, and becomes a pod there for the inter-pod filters of the VMs placed after it.
/// The result is in the input order.
#[must_use]
pub fn place_jointly(demands: &[Demand], nodes: &[NodeView]) -> Vec<Placement> {
    place_jointly_except(demands, nodes, &Occupancy::default(), &[])
}

/// [`place_jointly`] among the pods of `occupancy` (those already bound to nodes), leaving out
/// the nodes named in `exclude` (the node being drained): they take nothing and are not
/// mentioned.
#[must_use]
pub fn place_jointly_except(
    demands: &[Demand],
    nodes: &[NodeView],
    occupancy: &Occupancy,
    exclude: &[&str],
) -> Vec<Placement> {
    Placer::new(nodes).place_except(demands, occupancy, exclude)
}

/// Joint placement onto one set of nodes, for callers that place many groups of VMs onto the
/// same nodes (the audit plans the evacuation of every node). What does not change between
/// groups is worked out once: the nodes' labels by name, and for each distinct set of
/// constraints the nodes it admits at all (labels, taints, availability), ordered by free
/// memory, so that a VM is offered the roomiest nodes first and the search stops as soon as
/// no node left can beat the best one found.
#[derive(Debug)]
pub struct Placer<'a> {
    nodes: &'a [NodeView],
    labels: inter_pod::NodeLabels<'a>,
    /// Node indices a set of constraints admits, by the constraints' key, roomiest first.
    admitted: std::collections::HashMap<String, std::rc::Rc<[usize]>>,
}

impl<'a> Placer<'a> {
    /// A placer onto `nodes`.
    #[must_use]
    pub fn new(nodes: &'a [NodeView]) -> Self {
        Self {
            nodes,
            labels: inter_pod::NodeLabels::of(nodes),
            admitted: std::collections::HashMap::new(),
        }
    }

    /// [`place_jointly_except`] onto this placer's nodes.
    #[must_use]
    pub fn place_except(
        &mut self,
        demands: &[Demand],
        occupancy: &Occupancy,
        exclude: &[&str],
    ) -> Vec<Placement> {
        let nodes = self.nodes;
        // What the plan has put on each node so far, by node index.
        let mut taken: std::collections::HashMap<usize, (Requests, usize)> = std::collections::HashMap::new();
        let mut placed = PlannedOccupancy::new(occupancy);
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
            let candidates = self.admitted_by(demand);
            let check = placed.prepare_indexed(&demand.pod, &demand.constraints, nodes, &self.labels);
            // The node with the most free memory left that takes the VM, the first in node order
            // among equals (the order of the nodes is the tie-break).
            let mut best: Option<(usize, f64)> = None;
            for &n in candidates.iter() {
                let node = &nodes[n];
                let base_free = free_memory(node);
                if best.is_some_and(|(_, m)| base_free < m) {
                    break; // what the plan took only lowers it: no node left can do better
                }
                if exclude.contains(&node.name.as_str()) {
                    continue;
                }
                let free = base_free - taken.get(&n).map_or(0.0, |(r, _)| r.memory);
                let better = best.is_none_or(|(b, m)| free > m || (free == m && n < b));
                if better && room_fits(demand, node, taken.get(&n)) && check.admits(node) {
                    best = Some((n, free));
                }
            }
            result[i] = match best {
                Some((n, _)) => {
                    drop(check);
                    let entry = taken.entry(n).or_default();
                    entry.0 += &demand.requests;
                    entry.1 += 1;
                    placed.add(&nodes[n].name, &demand.id, &demand.pod);
                    Placement::Placed(nodes[n].name.clone())
                }
                None => {
                    // Only now the sentences: most nodes fail most VMs of a large cluster.
                    let mut reasons = Vec::new();
                    for (n, node) in nodes.iter().enumerate() {
                        if !exclude.contains(&node.name.as_str()) {
                            reasons.extend(node_failures(demand, node, taken.get(&n)));
                            if node.unavailable_reason().is_none() || tolerated_cordon(demand, node) {
                                reasons.extend(check.admit(node).err().into_iter().flatten());
                            }
                        }
                    }
                    Placement::Unplaceable(reasons)
                }
            };
        }
        result
    }

    /// The nodes `demand`'s constraints admit before any room is counted: available (or a
    /// cordon it tolerates), selector, required node affinity and taints; roomiest first.
    fn admitted_by(&mut self, demand: &Demand) -> std::rc::Rc<[usize]> {
        let c = &demand.constraints;
        let key = format!(
            "{:?}{}{}",
            c.node_selector,
            serde_json::to_string(&c.required_terms).unwrap_or_default(),
            serde_json::to_string(&c.tolerations).unwrap_or_default()
        );
        let nodes = self.nodes;
        self.admitted
            .entry(key)
            .or_insert_with(|| {
                let mut admitted: Vec<usize> = (0..nodes.len())
                    .filter(|&n| {
                        let node = &nodes[n];
                        (node.unavailable_reason_kind().is_none() || tolerated_cordon(demand, node))
                            && c.admits(node)
                    })
                    .collect();
                admitted.sort_by(|&a, &b| {
                    free_memory(&nodes[b])
                        .total_cmp(&free_memory(&nodes[a]))
                        .then(a.cmp(&b))
                });
                admitted.into()
            })
            .clone()
    }
}

/// A node's free memory before the plan takes any.
fn free_memory(node: &NodeView) -> f64 {
    node.allocatable.memory - node.requested.memory
}

/// A cordoned node that the demand may still be placed on (it tolerates the cordon).
fn tolerated_cordon(demand: &Demand, node: &NodeView) -> bool {
    node.cordoned && node.ready && node.is_kubevirt_schedulable() && demand.constraints.tolerates_cordon()
}

/// Whether `node`, which the demand's constraints admit, has room for it now (every resource
/// name, and a pod slot), given what the plan already put there: the part of
/// [`node_failures`] that changes as a plan fills the nodes, without its sentences.
fn room_fits(demand: &Demand, node: &NodeView, taken: Option<&(Requests, usize)>) -> bool {
    if let Some(max) = node.max_pods
        && (node.pod_count + taken.map_or(0, |(_, n)| *n)) as f64 + 1.0 > max
    {
        return false;
    }
    let used = |name: &str| taken.map_or(0.0, |(r, _)| r.get(name));
    demand.requests.iter().all(|(name, amount)| {
        if amount <= 0.0 {
            return true;
        }
        let reported = matches!(name, "cpu" | "memory") || node.allocatable.extended.contains_key(name);
        if !reported {
            return name.starts_with("devices.kubevirt.io/") || name == "ephemeral-storage";
        }
        let free = node.allocatable.get(name) - node.requested.get(name) - used(name);
        if name == "memory" {
            amount <= free
        } else {
            amount <= free + 1e-9
        }
    })
}

/// Every reason `node` cannot take `demand` now, given what the plan already put there
/// (`taken`: requests and pod count). Empty when it can.
fn node_failures(demand: &Demand, node: &NodeView, taken: Option<&(Requests, usize)>) -> Vec<String> {
    let mut failures = Vec::new();
    match node.unavailable_reason() {
        Some(_) if tolerated_cordon(demand, node) => {}
        Some(reason) => return vec![reason],
        None => {}
    }
    failures.extend(demand.constraints.failures(node));
    let mut free = node.free();
    if let Some((used, _)) = taken {
        free -= used;
    }
    failures.extend(shortfalls(&demand.requests, &free, node));
    if let Some(max) = node.max_pods {
        let pods = node.pod_count + taken.map_or(0, |(_, n)| *n);
        if pods as f64 + 1.0 > max {
            failures.push(format!(
                "node {} already runs its maximum of {max} pods",
                node.name
            ));
        }
    }
    failures
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

#[cfg(test)]
mod tests;
