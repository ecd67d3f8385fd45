//! What the inter-pod filters read of one pod: its namespace and labels, and its required
//! affinity, anti-affinity and hard topology spread, from a pod or from a VMI's rendered pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Pod, PodAffinityTerm, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{CREATED_BY_LABEL, HOSTNAME_LABEL};
use crate::kubevirt::VirtualMachineInstance;

/// What the inter-pod filters read of one pod: who it is (namespace, labels) and its own
/// required terms.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodTerms {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's labels, which other pods' terms select.
    pub labels: BTreeMap<String, String>,
    /// `requiredDuringSchedulingIgnoredDuringExecution` of `podAffinity`.
    pub affinity: Vec<PodAffinityTerm>,
    /// `requiredDuringSchedulingIgnoredDuringExecution` of `podAntiAffinity`.
    pub anti_affinity: Vec<PodAffinityTerm>,
    /// The spread constraints with `whenUnsatisfiable: DoNotSchedule`.
    pub spread: Vec<TopologySpreadConstraint>,
}

impl PodTerms {
    /// The terms of a pod as the API server holds it.
    #[must_use]
    pub fn of_pod(pod: &Pod) -> Self {
        let spec = pod.spec.as_ref();
        let affinity = spec.and_then(|s| s.affinity.as_ref());
        Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            affinity: required_affinity(affinity),
            anti_affinity: required_anti_affinity(affinity),
            spread: hard_spread(spec.and_then(|s| s.topology_spread_constraints.as_ref())),
        }
    }

    /// The terms of the pod KubeVirt renders for `vmi` (§1b, §1c): the VMI's labels plus
    /// KubeVirt's own (those of `launcher`, the running pod, where there is one), and the
    /// VMI's current affinity and spread constraints, which KubeVirt re-renders into a target.
    #[must_use]
    pub fn of_vmi(vmi: &VirtualMachineInstance, launcher: Option<&Pod>) -> Self {
        let mut labels = vmi.metadata.labels.clone().unwrap_or_default();
        match launcher.and_then(|p| p.metadata.labels.as_ref()) {
            Some(pod_labels) => labels.extend(pod_labels.clone()),
            None => {
                labels.insert("kubevirt.io".into(), "virt-launcher".into());
                if let Some(uid) = &vmi.metadata.uid {
                    labels.insert(CREATED_BY_LABEL.into(), uid.clone());
                }
                if let Some(name) = &vmi.metadata.name {
                    labels.insert("vm.kubevirt.io/name".into(), name.clone());
                }
            }
        }
        let affinity = vmi.spec.affinity.as_ref();
        Self {
            namespace: vmi.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            labels,
            affinity: required_affinity(affinity),
            anti_affinity: required_anti_affinity(affinity),
            spread: hard_spread(vmi.spec.topology_spread_constraints.as_ref()),
        }
    }

    /// The terms of `vmi`'s migration target pod: [`Self::of_vmi`] plus the anti-affinity
    /// virt-controller appends against the VMI's own pods by hostname (§3, MIG:889-911), which
    /// keeps the target off the source node and off any node with a leftover target pod.
    #[must_use]
    pub fn of_migration_target(vmi: &VirtualMachineInstance, launcher: Option<&Pod>) -> Self {
        let mut terms = Self::of_vmi(vmi, launcher);
        if let Some(uid) = terms.labels.get(CREATED_BY_LABEL).cloned() {
            terms.anti_affinity.push(PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(CREATED_BY_LABEL.to_string(), uid)])),
                    ..LabelSelector::default()
                }),
                topology_key: HOSTNAME_LABEL.into(),
                ..PodAffinityTerm::default()
            });
        }
        terms
    }

    /// Whether the pod has terms of its own for these filters to check.
    #[must_use]
    pub fn has_terms(&self) -> bool {
        !self.affinity.is_empty() || !self.anti_affinity.is_empty() || !self.spread.is_empty()
    }
}

fn required_affinity(affinity: Option<&Affinity>) -> Vec<PodAffinityTerm> {
    affinity
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.clone())
        .unwrap_or_default()
}

fn required_anti_affinity(affinity: Option<&Affinity>) -> Vec<PodAffinityTerm> {
    affinity
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.clone())
        .unwrap_or_default()
}

fn hard_spread(constraints: Option<&Vec<TopologySpreadConstraint>>) -> Vec<TopologySpreadConstraint> {
    constraints
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == "DoNotSchedule")
        .cloned()
        .collect()
}

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
