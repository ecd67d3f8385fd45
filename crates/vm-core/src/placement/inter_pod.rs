//! The scheduler's filters that look at other pods: required inter-pod affinity and
//! anti-affinity (kube-scheduler's InterPodAffinity, both the incoming pod's terms and the
//! existing pods' anti-affinity against it) and topology spread constraints with
//! `whenUnsatisfiable: DoNotSchedule` (PodTopologySpread).
//!
//! KubeVirt copies the VMI's `affinity` and `topologySpreadConstraints` to its launcher and
//! target pods, gives those pods the VMI's labels, and adds to every migration target a
//! required anti-affinity against the VMI's own pods by hostname (reference
//! `kubevirt-pod-constraints.md` §1b, §1c, §3). A joint plan must also see the VMs it has
//! already placed: they are pods on their target nodes for the VMs placed after them.
//!
//! Not evaluated: a `namespaceSelector` with labels (the snapshot holds no Namespace objects;
//! such a term is taken to match every namespace) and `matchLabelKeys`.

//!
//! One job a submodule: `terms` (what the filters read of one pod), `occupancy` (the pods on
//! the nodes, bound and planned) and `check` (one incoming pod's filters, asked of each node).

mod check;
mod occupancy;
mod terms;

pub use check::InterPodCheck;
pub(crate) use occupancy::NodeLabels;
pub use occupancy::{Occupancy, PlannedOccupancy};
pub use terms::PodTerms;

/// The label KubeVirt puts on every pod of a VMI, with the VMI's UID.
pub const CREATED_BY_LABEL: &str = "kubevirt.io/created-by";
/// The hostname label, the topology of KubeVirt's own anti-affinity.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

#[cfg(test)]
mod tests;
