//! The pods on the nodes as the inter-pod filters see them: those bound (or, read from
//! manifests, rendered for a running VMI) and those a plan adds, indexed by label; and the
//! preparation of one incoming pod's check against them (domains and spread counts).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::check::{Domain, InterPodCheck, SpreadCount};
use super::terms::{Occupant, PodTerms};
use crate::labels::selector_matches;
use crate::placement::constraints::Constraints;
use crate::placement::launchers::TargetSources;
use crate::placement::node::{NodeView, pod_is_finished};
use crate::snapshot::ClusterSnapshot;

/// The pods bound to nodes, and the ones a plan adds as it places VMs.
#[derive(Clone, Debug, Default)]
pub struct Occupancy {
    pub(super) occupants: Vec<Occupant>,
    /// The indices of occupants with required anti-affinity terms, which every incoming pod
    /// must be checked against; usually few.
    pub(super) with_anti_affinity: Vec<usize>,
    /// The indices of occupants by each of their labels, so that a term with `matchLabels`
    /// (KubeVirt's own by the VMI's UID among them) looks at the few pods that can match
    /// instead of every pod of the cluster.
    pub(super) by_label: HashMap<(String, String), Vec<usize>>,
}

impl Occupancy {
    /// The unfinished pods of `pods` that are bound to a node.
    #[must_use]
    pub fn of(pods: &[Pod]) -> Self {
        let mut occupancy = Self::default();
        for pod in pods.iter().filter(|p| !pod_is_finished(p)) {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            let terms = PodTerms::of_pod(pod);
            let display = match terms.labels.get("vm.kubevirt.io/name") {
                Some(vm) => format!("VM {}/{vm}", terms.namespace),
                None => format!(
                    "pod {}/{}",
                    terms.namespace,
                    pod.metadata.name.as_deref().unwrap_or_default()
                ),
            };
            occupancy.push(Occupant {
                display,
                node,
                terms,
                terminating: pod.metadata.deletion_timestamp.is_some(),
            });
        }
        occupancy
    }

    /// The pods of a snapshot, and for each running VMI without a launcher pod in it (read
    /// from manifests) the pod KubeVirt renders for it on its node, so that file mode and live
    /// mode see the same VMs.
    #[must_use]
    pub fn of_snapshot(snapshot: &ClusterSnapshot, launchers: &TargetSources<'_>) -> Self {
        let mut occupancy = Self::of(&snapshot.pods);
        for vmi in &snapshot.vmis {
            let status = vmi.status.as_ref();
            let Some(node) = status.and_then(|s| s.node_name.as_deref()) else {
                continue;
            };
            let running = matches!(
                status.and_then(|s| s.phase.as_deref()),
                Some("Running" | "Scheduled")
            );
            if running && launchers.of_vmi(vmi).is_none() {
                let terms = PodTerms::of_vmi(vmi, None);
                let id = format!(
                    "{}/{}",
                    terms.namespace,
                    vmi.metadata.name.as_deref().unwrap_or_default()
                );
                occupancy.push(Occupant {
                    display: format!("VM {id}"),
                    node: node.to_string(),
                    terms,
                    terminating: false,
                });
            }
        }
        occupancy
    }

    /// Records a pod the plan puts on `node`: `id` is what reasons call it (`ns/name`).
    pub fn add(&mut self, node: &str, id: &str, terms: &PodTerms) {
        self.push(Occupant {
            display: format!("VM {id} (placed there by this plan)"),
            node: node.to_string(),
            terms: terms.clone(),
            terminating: false,
        });
    }

    fn push(&mut self, occupant: Occupant) {
        let index = self.occupants.len();
        if !occupant.terms.anti_affinity.is_empty() {
            self.with_anti_affinity.push(index);
        }
        for (key, value) in &occupant.terms.labels {
            self.by_label
                .entry((key.clone(), value.clone()))
                .or_default()
                .push(index);
        }
        self.occupants.push(occupant);
    }

    /// The occupants `term` can select: those with its first `matchLabels` pair, or all.
    pub(super) fn candidates(&self, term: &PodAffinityTerm) -> Box<dyn Iterator<Item = &Occupant> + '_> {
        self.selectable_by(term.label_selector.as_ref())
    }

    /// The occupants `selector` can select: those with its first `matchLabels` pair, or all.
    pub(super) fn selectable_by(
        &self,
        selector: Option<&LabelSelector>,
    ) -> Box<dyn Iterator<Item = &Occupant> + '_> {
        let first_pair = selector
            .and_then(|s| s.match_labels.as_ref())
            .and_then(|m| m.iter().next());
        match first_pair {
            Some((key, value)) => Box::new(
                self.by_label
                    .get(&(key.clone(), value.clone()))
                    .into_iter()
                    .flatten()
                    .map(|&i| &self.occupants[i]),
            ),
            None => Box::new(self.occupants.iter()),
        }
    }
}

/// The pods already bound to nodes and those a plan has placed so far, without copying the
/// first for every node a plan is made for.
#[derive(Debug)]
pub struct PlannedOccupancy<'a> {
    pub(super) bound: &'a Occupancy,
    pub(super) placed: Occupancy,
}

impl<'a> PlannedOccupancy<'a> {
    /// Nothing placed yet.
    #[must_use]
    pub fn new(bound: &'a Occupancy) -> Self {
        Self {
            bound,
            placed: Occupancy::default(),
        }
    }

    /// Records a pod the plan puts on `node` (see [`Occupancy::add`]).
    pub fn add(&mut self, node: &str, id: &str, terms: &PodTerms) {
        self.placed.add(node, id, terms);
    }
}

/// The labels of each node by its name: the topology domains of the pods bound there.
#[derive(Debug)]
pub(crate) struct NodeLabels<'a>(pub(super) HashMap<&'a str, &'a BTreeMap<String, String>>);

impl<'a> NodeLabels<'a> {
    pub(crate) fn of(nodes: &'a [NodeView]) -> Self {
        Self(nodes.iter().map(|n| (n.name.as_str(), &n.labels)).collect())
    }
}

impl Occupancy {
    /// Prepares the checks of one incoming pod against every node: the topology domains its
    /// terms and the existing pods' anti-affinity forbid or require, and its spread counts.
    /// `nodes` are all nodes (for the topology labels of the pods' nodes, and the domains
    /// topology spread counts); `constraints` are the pod's node selector and affinity, which
    /// decide which nodes topology spread counts.
    #[must_use]
    pub fn prepare<'a>(
        &'a self,
        incoming: &'a PodTerms,
        constraints: &Constraints,
        nodes: &'a [NodeView],
    ) -> InterPodCheck<'a> {
        prepare_among(&[self], incoming, constraints, nodes, &NodeLabels::of(nodes))
    }
}

impl PlannedOccupancy<'_> {
    /// [`Occupancy::prepare`] over the bound and the placed pods.
    #[must_use]
    pub fn prepare<'b>(
        &'b self,
        incoming: &'b PodTerms,
        constraints: &Constraints,
        nodes: &'b [NodeView],
    ) -> InterPodCheck<'b> {
        self.prepare_indexed(incoming, constraints, nodes, &NodeLabels::of(nodes))
    }

    /// [`Self::prepare`] with the nodes' labels indexed once by the caller, who prepares the
    /// checks of many pods against the same nodes.
    #[must_use]
    pub(crate) fn prepare_indexed<'b>(
        &'b self,
        incoming: &'b PodTerms,
        constraints: &Constraints,
        nodes: &'b [NodeView],
        labels_of: &NodeLabels<'_>,
    ) -> InterPodCheck<'b> {
        prepare_among(
            &[self.bound, &self.placed],
            incoming,
            constraints,
            nodes,
            labels_of,
        )
    }
}

fn prepare_among<'a>(
    layers: &[&'a Occupancy],
    incoming: &'a PodTerms,
    constraints: &Constraints,
    nodes: &'a [NodeView],
    labels_of: &NodeLabels<'_>,
) -> InterPodCheck<'a> {
    {
        if !incoming.has_terms() && layers.iter().all(|l| l.with_anti_affinity.is_empty()) {
            return InterPodCheck {
                incoming,
                forbidden_by_existing: Vec::new(),
                forbidden_by_own: Vec::new(),
                required: BTreeMap::new(),
                self_affine: true,
                spread: Vec::new(),
            };
        }
        let labels_of = &labels_of.0;
        let domain_of = |occupant: &Occupant, key: &str| -> Option<String> {
            labels_of.get(occupant.node.as_str())?.get(key).cloned()
        };

        // Existing pods whose anti-affinity selects the incoming pod forbid their domain.
        let mut forbidden_by_existing = Vec::new();
        let with_anti_affinity = layers
            .iter()
            .flat_map(|l| l.with_anti_affinity.iter().map(|&i| &l.occupants[i]));
        for occupant in with_anti_affinity {
            for term in &occupant.terms.anti_affinity {
                if term_selects(term, &occupant.terms.namespace, incoming)
                    && let Some(value) = domain_of(occupant, &term.topology_key)
                {
                    forbidden_by_existing.push(Domain {
                        key: term.topology_key.clone(),
                        value,
                        witness: occupant,
                    });
                }
            }
        }

        // The incoming pod's anti-affinity: the domains of the pods each term selects.
        let mut forbidden_by_own = Vec::new();
        // Its affinity: the domains holding a pod that matches all its terms.
        let mut required: BTreeMap<(String, String), usize> = BTreeMap::new();
        for term in &incoming.anti_affinity {
            for occupant in layers.iter().flat_map(|l| l.candidates(term)) {
                if term_selects(term, &incoming.namespace, &occupant.terms)
                    && let Some(value) = domain_of(occupant, &term.topology_key)
                {
                    forbidden_by_own.push(Domain {
                        key: term.topology_key.clone(),
                        value,
                        witness: occupant,
                    });
                }
            }
        }
        if let Some(first) = incoming.affinity.first() {
            for occupant in layers.iter().flat_map(|l| l.candidates(first)) {
                if incoming
                    .affinity
                    .iter()
                    .all(|t| term_selects(t, &incoming.namespace, &occupant.terms))
                {
                    for term in &incoming.affinity {
                        if let Some(value) = domain_of(occupant, &term.topology_key) {
                            *required.entry((term.topology_key.clone(), value)).or_default() += 1;
                        }
                    }
                }
            }
        }
        let self_affine = incoming
            .affinity
            .iter()
            .all(|t| term_selects(t, &incoming.namespace, incoming));

        let spread = incoming
            .spread
            .iter()
            .map(|c| spread_count(c, incoming, constraints, nodes, layers))
            .collect();

        InterPodCheck {
            incoming,
            forbidden_by_existing,
            forbidden_by_own,
            required,
            self_affine,
            spread,
        }
    }
}

/// The counts of `constraint` of the incoming pod over `nodes` and the pods of `layers`.
fn spread_count<'a>(
    constraint: &'a TopologySpreadConstraint,
    incoming: &PodTerms,
    constraints: &Constraints,
    nodes: &[NodeView],
    layers: &[&Occupancy],
) -> SpreadCount<'a> {
    let key = constraint.topology_key.as_str();
    let keys: Vec<&str> = incoming.spread.iter().map(|c| c.topology_key.as_str()).collect();
    // The nodes the constraint counts: those the pod's node selector and required node
    // affinity admit (nodeAffinityPolicy Honor, the default) that carry every topology
    // key of the pod's constraints; taints are ignored (nodeTaintsPolicy Ignore).
    let honor_taints = constraint.node_taints_policy.as_deref() == Some("Honor");
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let mut counted_nodes: HashMap<&str, &str> = HashMap::new();
    for node in nodes {
        let eligible = keys.iter().all(|k| node.labels.contains_key(*k))
            && constraints.admits_labels(node)
            && (!honor_taints || constraints.tolerates_taints(node));
        if eligible && let Some(value) = node.labels.get(key) {
            counts.entry(value.clone()).or_default();
            counted_nodes.insert(node.name.as_str(), value.as_str());
        }
    }
    let selector = constraint.label_selector.as_ref();
    let occupants = layers.iter().flat_map(|l| l.selectable_by(selector));
    for occupant in occupants.filter(|o| !o.terminating) {
        let Some(value) = counted_nodes.get(occupant.node.as_str()) else {
            continue;
        };
        if occupant.terms.namespace == incoming.namespace
            && selector.is_some_and(|s| selector_matches(s, &occupant.terms.labels))
        {
            *counts.entry((*value).to_string()).or_default() += 1;
        }
    }
    let min_domains = constraint.min_domains.unwrap_or(1).max(1);
    let min = if counts.len() < usize::try_from(min_domains).unwrap_or(1) {
        Some(0)
    } else {
        counts.values().copied().min()
    };
    let self_match = i64::from(selector.is_some_and(|s| selector_matches(s, &incoming.labels)));
    SpreadCount {
        constraint,
        counts,
        min,
        self_match,
    }
}

/// Whether `term`, written in a pod of namespace `owner_namespace`, selects the pod `other`.
fn term_selects(term: &PodAffinityTerm, owner_namespace: &str, other: &PodTerms) -> bool {
    let namespaces = term.namespaces.as_deref().unwrap_or_default();
    let in_namespace = if term.namespace_selector.is_some() {
        // `{}` selects every namespace; a selector with labels is taken to as well (see the
        // module's note), unless the listed namespaces alone are meant.
        true
    } else if namespaces.is_empty() {
        other.namespace == owner_namespace
    } else {
        namespaces.contains(&other.namespace)
    };
    in_namespace
        && term
            .label_selector
            .as_ref()
            .is_some_and(|s| selector_matches(s, &other.labels))
}
