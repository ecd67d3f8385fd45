//! Which nodes a launcher pod's own scheduling constraints admit: node selector, required node
//! affinity, taints and tolerations, each checked the way kube-scheduler's filters do, with
//! the sentence that names what keeps a node out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};

use super::node::NodeView;
use crate::kubevirt::VirtualMachineInstanceSpec;

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
