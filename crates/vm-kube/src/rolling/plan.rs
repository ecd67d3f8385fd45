//! The drain plan of a step of a round: planned with the nodes still to come cordoned (so that
//! no VM moves twice), else over the whole cluster, else the blockers said.

use std::collections::BTreeSet;

use vm_core::drain::{DrainPlan, DrainPolicy, plan_drain};
use vm_core::snapshot::ClusterSnapshot;

use crate::drain::DrainError;

/// The drain plan of `node`, and whether the step is steered: the plan with the nodes still
/// to come cordoned when it is feasible, else the plan over the whole cluster when that is
/// (steered only when the step `was_steered` before a resume); else the blockers.
pub(super) fn choose_plan(
    snap: &ClusterSnapshot,
    node: &str,
    to_come: &BTreeSet<String>,
    policy: &DrainPolicy,
    was_steered: bool,
) -> Result<Result<(DrainPlan, bool), Vec<String>>, DrainError> {
    let plan_of =
        |s: &ClusterSnapshot| plan_drain(s, node, policy).map_err(|e| DrainError::Other(e.to_string()));
    // Nodes still to come are cordoned in the planning copy. The last step has none: its plan
    // over the whole cluster is the steered one.
    let mut narrow = snap.clone();
    for n in &mut narrow.nodes {
        if n.metadata
            .name
            .as_ref()
            .is_some_and(|name| to_come.contains(name))
        {
            n.spec.get_or_insert_with(Default::default).unschedulable = Some(true);
        }
    }
    let plan = plan_of(&narrow)?;
    if plan.feasible {
        return Ok(Ok((plan, true)));
    }
    if to_come.is_empty() {
        return Ok(Err(blockers_of(&plan)));
    }
    let plan = plan_of(snap)?;
    if plan.feasible {
        Ok(Ok((plan, was_steered)))
    } else {
        Ok(Err(blockers_of(&plan)))
    }
}

/// What blocks a drain plan: its own blockers, and each VM it cannot move with why.
fn blockers_of(plan: &DrainPlan) -> Vec<String> {
    let mut blockers = plan.blockers.clone();
    blockers.extend(
        plan.vms
            .iter()
            .filter(|v| v.action == vm_core::drain::VmAction::Blocked)
            .map(|v| format!("{}/{}: {}", v.namespace, v.name, v.reasons.join(", "))),
    );
    blockers
}
