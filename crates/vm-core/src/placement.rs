//! Where a VMI's launcher pod could run: node selectors, required node affinity, taints and
//! tolerations, and room, checked the way kube-scheduler's filters do.
//!
//! `place_jointly` puts several VMs at once onto the free room of a set of nodes, biggest
//! first, each onto the eligible node with the most free memory (the scheduler's default
//! LeastAllocated scoring spreads the same way). It is advisory: it answers "is there room for
//! all of them together?", and the real scheduler picks the real node.
//!
//! One job a submodule: `node` (a node's view and room), `constraints` (the pod's own node
//! selector, affinity and tolerations), `inter_pod` (the filters that look at other pods),
//! `launchers` (the snapshot's launcher pods indexed by VMI) and `joint` (the placement of
//! many VMs together). Everything is used through this module's paths.

mod constraints;
pub mod inter_pod;
mod joint;
mod launchers;
mod node;

pub use constraints::{Constraints, tolerates};
pub use inter_pod::{Occupancy, PlannedOccupancy, PodTerms};
pub use joint::{Demand, Placement, Placer, place_jointly, place_jointly_except};
pub use launchers::TargetSources;
pub use node::{NodeView, SCHEDULABLE_LABEL, pod_is_finished, pod_requests, shortfall, shortfalls};

#[cfg(test)]
mod tests;
