//! One incoming pod's inter-pod filters, prepared against the occupancy, asked of each node:
//! the domains that existing pods' anti-affinity and its own terms forbid or require, and its
//! topology spread counts, with the sentence for each failure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::HOSTNAME_LABEL;
use super::terms::{Occupant, PodTerms};
use crate::placement::node::NodeView;

/// A topology domain (`key=value`) and the pod that puts it in play.
#[derive(Debug)]
pub(super) struct Domain<'a> {
    pub(super) key: String,
    pub(super) value: String,
    pub(super) witness: &'a Occupant,
}

/// The per-domain counts of one spread constraint.
#[derive(Debug)]
pub(super) struct SpreadCount<'a> {
    pub(super) constraint: &'a TopologySpreadConstraint,
    /// Matching pods per value of the topology key, over the nodes the constraint counts.
    pub(super) counts: BTreeMap<String, i64>,
    /// The smallest count over those domains (`None`: no domain, nothing to compare).
    pub(super) min: Option<i64>,
    /// 1 when the incoming pod matches its own selector.
    pub(super) self_match: i64,
}

/// The inter-pod checks of one incoming pod, ready to ask of each node.
#[derive(Debug)]
pub struct InterPodCheck<'a> {
    pub(super) incoming: &'a PodTerms,
    pub(super) forbidden_by_existing: Vec<Domain<'a>>,
    pub(super) forbidden_by_own: Vec<Domain<'a>>,
    /// The domains holding a pod that matches all the incoming pod's affinity terms.
    pub(super) required: BTreeMap<(String, String), usize>,
    /// The incoming pod matches its own affinity terms: the first of a group may go anywhere.
    pub(super) self_affine: bool,
    pub(super) spread: Vec<SpreadCount<'a>>,
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
