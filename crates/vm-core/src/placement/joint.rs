//! Joint placement: several VMs at once onto the free room of a set of nodes, biggest first,
//! each onto the eligible node with the most free memory, every placement taking its room and
//! becoming a pod for the inter-pod filters of the VMs after it.

use std::collections::HashMap;
use std::rc::Rc;

use super::constraints::Constraints;
use super::inter_pod::{NodeLabels, Occupancy, PlannedOccupancy, PodTerms};
use super::node::{NodeView, shortfalls};
use crate::resources::Requests;

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
    labels: NodeLabels<'a>,
    /// Node indices a set of constraints admits, by the constraints' key, roomiest first.
    admitted: HashMap<String, Rc<[usize]>>,
}

impl<'a> Placer<'a> {
    /// A placer onto `nodes`.
    #[must_use]
    pub fn new(nodes: &'a [NodeView]) -> Self {
        Self {
            nodes,
            labels: NodeLabels::of(nodes),
            admitted: HashMap::new(),
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
        let mut taken: HashMap<usize, (Requests, usize)> = HashMap::new();
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
    fn admitted_by(&mut self, demand: &Demand) -> Rc<[usize]> {
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
