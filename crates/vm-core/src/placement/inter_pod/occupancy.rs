//! The pods on the nodes as the inter-pod filters see them: those bound (or, read from
//! manifests, rendered for a running VMI) and those a plan adds, indexed by label.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::terms::PodTerms;
use crate::placement::launchers::TargetSources;
use crate::placement::node::{NodeView, pod_is_finished};
use crate::snapshot::ClusterSnapshot;

/// One pod bound to a node, as the inter-pod filters see it.
#[derive(Clone, Debug)]
pub(super) struct Occupant {
    /// What reasons call it: the VM (`ns/name`) for a launcher pod, else the pod.
    pub(super) display: String,
    pub(super) node: String,
    pub(super) terms: PodTerms,
    /// Being deleted: topology spread does not count it (kube-scheduler skips terminating
    /// pods there), the affinity filters still do.
    pub(super) terminating: bool,
}

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
