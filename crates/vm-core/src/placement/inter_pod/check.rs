//! One incoming pod's inter-pod filters, prepared once against the occupancy and then asked of
//! each node: the domains existing pods' anti-affinity and its own terms forbid or require,
//! and its topology spread counts, with the sentence for each failure.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{PodAffinityTerm, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::HOSTNAME_LABEL;
use super::occupancy::{NodeLabels, Occupancy, Occupant, PlannedOccupancy};
use super::terms::PodTerms;
use crate::labels::selector_matches;
use crate::placement::constraints::Constraints;
use crate::placement::node::NodeView;

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
            .map(|c| SpreadCount::of(c, incoming, constraints, nodes, layers))
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

/// A topology domain (`key=value`) and the pod that puts it in play.
#[derive(Debug)]
struct Domain<'a> {
    key: String,
    value: String,
    witness: &'a Occupant,
}

/// The per-domain counts of one spread constraint.
#[derive(Debug)]
struct SpreadCount<'a> {
    constraint: &'a TopologySpreadConstraint,
    /// Matching pods per value of the topology key, over the nodes the constraint counts.
    counts: BTreeMap<String, i64>,
    /// The smallest count over those domains (`None`: no domain, nothing to compare).
    min: Option<i64>,
    /// 1 when the incoming pod matches its own selector.
    self_match: i64,
}

impl<'a> SpreadCount<'a> {
    fn of(
        constraint: &'a TopologySpreadConstraint,
        incoming: &PodTerms,
        constraints: &Constraints,
        nodes: &[NodeView],
        layers: &[&Occupancy],
    ) -> Self {
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
        Self {
            constraint,
            counts,
            min,
            self_match,
        }
    }
}

/// The inter-pod checks of one incoming pod, ready to ask of each node.
#[derive(Debug)]
pub struct InterPodCheck<'a> {
    incoming: &'a PodTerms,
    forbidden_by_existing: Vec<Domain<'a>>,
    forbidden_by_own: Vec<Domain<'a>>,
    /// The domains holding a pod that matches all the incoming pod's affinity terms.
    required: BTreeMap<(String, String), usize>,
    /// The incoming pod matches its own affinity terms: the first of a group may go anywhere.
    self_affine: bool,
    spread: Vec<SpreadCount<'a>>,
}

impl InterPodCheck<'_> {
    /// `Ok` when these filters let the pod onto `node`, else every reason they do not, one
    /// sentence each, naming the pod or the constraint to act on.
    ///
    /// # Errors
    /// The reasons.
    pub fn admit(&self, node: &NodeView) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        let value = |key: &str| node.labels.get(key);
        for constraint in &self.spread {
            let key = &constraint.constraint.topology_key;
            let Some(domain) = value(key) else {
                reasons.push(format!(
                    "topology spread over {key}: no {key} label on node {}",
                    node.name
                ));
                continue;
            };
            let Some(min) = constraint.min else { continue };
            let count = constraint.counts.get(domain).copied().unwrap_or(0);
            let skew = count + constraint.self_match - min;
            if skew > i64::from(constraint.constraint.max_skew) {
                reasons.push(format!(
                    "topology spread over {key} (maxSkew {}): {count} matching pods in {key}={domain} against {min} in the emptiest, so skew {skew} on node {}",
                    constraint.constraint.max_skew, node.name
                ));
            }
        }
        if !self.incoming.affinity.is_empty() {
            let missing_key = self
                .incoming
                .affinity
                .iter()
                .find(|t| value(&t.topology_key).is_none());
            let unmet = self.incoming.affinity.iter().find(|t| {
                value(&t.topology_key)
                    .is_some_and(|v| !self.required.contains_key(&(t.topology_key.clone(), v.clone())))
            });
            if let Some(term) = missing_key {
                reasons.push(format!(
                    "pod affinity over {}: no such label on node {}",
                    term.topology_key, node.name
                ));
            } else if let Some(term) = unmet
                && !(self.required.is_empty() && self.self_affine)
            {
                reasons.push(format!(
                    "pod affinity: no pod matching {} in the same {} as node {}",
                    describe_selector(term.label_selector.as_ref()),
                    term.topology_key,
                    node.name
                ));
            }
        }
        let own = self
            .forbidden_by_own
            .iter()
            .find(|d| value(&d.key) == Some(&d.value));
        if let Some(d) = &own {
            reasons.push(format!(
                "anti-affinity with {}{} on node {}",
                d.witness.display,
                same_domain(&d.key, &d.value),
                node.name
            ));
        }
        // Mutual anti-affinity (the usual case) is said once, as the incoming pod's own.
        if let Some(d) = self.forbidden_by_existing.iter().find(|d| {
            value(&d.key) == Some(&d.value) && own.is_none_or(|o| !std::ptr::eq(o.witness, d.witness))
        }) {
            reasons.push(format!(
                "{} has required anti-affinity against it{} on node {}",
                d.witness.display,
                same_domain(&d.key, &d.value),
                node.name
            ));
        }
        if reasons.is_empty() { Ok(()) } else { Err(reasons) }
    }

    /// [`Self::admit`] without the sentences.
    #[must_use]
    pub fn admits(&self, node: &NodeView) -> bool {
        self.admit(node).is_ok()
    }
}

/// " (same zone=a)" for a topology wider than the node itself, else nothing.
fn same_domain(key: &str, value: &str) -> String {
    if key == HOSTNAME_LABEL {
        String::new()
    } else {
        format!(" (same {key}={value})")
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

/// `app=db,tier In (a,b)`, for reasons.
fn describe_selector(selector: Option<&LabelSelector>) -> String {
    let Some(selector) = selector else {
        return "nothing".into();
    };
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    parts.extend(
        selector
            .match_expressions
            .iter()
            .flatten()
            .map(|e| match e.values.as_deref() {
                Some(values) if !values.is_empty() => {
                    format!("{} {} ({})", e.key, e.operator, values.join(","))
                }
                _ => format!("{} {}", e.key, e.operator),
            }),
    );
    if parts.is_empty() {
        "anything".into()
    } else {
        parts.join(",")
    }
}
