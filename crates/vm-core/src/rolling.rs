//! The plan of a rolling maintenance round: `kubectl vm-drain-safe --rolling NODE...` drains,
//! maintains and uncordons many nodes in turn, and first prints the whole round, computed
//! before anything changes.
//!
//! Each step is a [`plan_drain`](crate::drain::plan_drain) of one node against the cluster as
//! the earlier steps left it (see [`sim`]): the VMs they moved sit on their targets with the
//! CPU selectors their migration target pods carried, the VMs they stopped are gone, and every
//! maintained node is back, uncordoned and empty of what left it.
//!
//! What the plan chooses:
//! - **The order.** The first order found in which every step is feasible, searched depth
//!   first: at each position the remaining nodes are tried by the memory their VMs request,
//!   least first (the sooner a node is empty, the sooner it takes the others' VMs), then by
//!   name. A node that no order can drain (a pod that blocks, a VM that cannot migrate, a VM
//!   that no other node admits) is left for last and named as the failing step.
//! - **Moves.** A VM should move once: a step's targets are the nodes outside the round and the
//!   nodes already maintained. Only when no remaining node can be drained that way does a step
//!   widen its targets to the round's nodes not yet maintained, and then only for the VMs that
//!   found no room in the narrow targets; those VMs move again at their new node's step, and
//!   the plan counts them (`movesAgain`).
//! - **Counts and time.** Migrations of the plan, and those of a naive loop over the nodes in
//!   the order given (each drained with every other node as a target, as `kubectl
//!   vm-drain-safe NODE` in a loop would), in which VMs land on round nodes still to come and
//!   move again. Each step takes its drain estimate plus the maintenance time of the policy.
//!   Every step's estimate uses one [`MigrationModel`], fitted once on the snapshot's finished
//!   migrations: the simulated cluster keeps those migrations as they were, so each step would
//!   fit the same.
//! - **Room.** After each step's moves, the free CPU and memory left on the nodes that can take
//!   a pod (Ready, uncordoned, KubeVirt-schedulable, the node in maintenance left out); the
//!   tightest step is the one with the least memory left.
//!
//! Assumptions: evicted non-VM pods are recreated by their controllers somewhere unknown, so
//! their load stays where it was; a VM shut down (`--shutdown-non-migratable`) is taken as
//! stopped, even when its run strategy restarts it elsewhere. A VMI whose pod tolerates the
//! cordon taint may still be placed on a round node the step does not allow: the simulation
//! expresses "not a target" by cordoning.
//!
//! Cost: one `plan_drain` per step attempt. A round of `r` nodes makes `r` attempts for the
//! naive count, and the search at least `r`; at each position, a node whose narrow targets lack
//! the free memory or CPU its migrating VMs request is skipped without an attempt, and a node
//! found undrainable in every order is not tried again, so a failing round does not retry it at
//! every position. Without backtracking the search makes at most `r(r+1)` attempts (two passes
//! over the remaining nodes at each position); once a position fails, backtracking makes at
//! most [`RollingPolicy::max_backtrack_attempts`] more, and the deepest failure found is
//! reported. Measured (`examples/rolling_bench.rs`): a round of 50 nodes on 1,000 nodes and
//! 10,000 VMIs plans in about 6 s, nearly all of it in `plan_drain`, which re-indexes the whole
//! snapshot on every call.

mod plan;
mod search;
mod sim;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

use crate::drain::{DrainPlan, DrainPolicy, MigrationLimits, PlanError, VmAction, VmPlan};
use crate::eta::MigrationModel;
use crate::placement::NodeView;
use crate::quantity::format_bytes;
use crate::resources::Requests;
use crate::snapshot::ClusterSnapshot;
use search::Search;
use sim::{Sim, Undo};

pub use plan::{
    FailingStep, RollingError, RollingPlan, RollingPolicy, RollingStep, StepVm, StoppedVm, Tightest,
};

/// Plans the rolling maintenance of the nodes of `round`.
///
/// # Errors
/// [`RollingError::EmptyRound`], [`RollingError::DuplicateNode`], or
/// [`PlanError::NoSuchNode`] for a node that is not in the snapshot.
pub fn plan_rolling(
    snapshot: &ClusterSnapshot,
    round: &[String],
    policy: &RollingPolicy,
) -> Result<RollingPlan, RollingError> {
    validate(snapshot, round)?;
    let model = MigrationModel::fit(
        snapshot,
        MigrationModel::prior(policy.drain.migration_bytes_per_second),
    );
    let base = Sim::new(snapshot);
    let (naive_migrations, naive_feasible) = naive(&base, round, &policy.drain, &model);
    let cluster = base.cluster();
    let limits = MigrationLimits {
        parallel_migrations_per_cluster: cluster.parallel_migrations_per_cluster,
        parallel_outbound_migrations_per_node: cluster.parallel_outbound_migrations_per_node,
    };
    let (steps, failing_step) = Search::new(base, round, policy, &model).run();
    let mut nodes: Vec<String> = steps.iter().map(|s| s.node.clone()).collect();
    nodes.extend(failing_step.as_ref().map(|f| f.node.clone()));
    Ok(RollingPlan {
        api_version: "vm-drain-safe/v1",
        kind: "RollingPlan",
        nodes,
        feasible: failing_step.is_none(),
        migrations: steps.iter().map(|s| s.migrations).sum(),
        moves_again: steps.iter().map(|s| s.moves_again).sum(),
        naive_migrations,
        naive_feasible,
        stops: stops(&steps),
        estimated_seconds: steps.iter().map(|s| s.estimated_seconds).sum(),
        maintenance_seconds: policy.maintenance_seconds,
        tightest: tightest(&steps),
        min_free_memory: policy.min_free_memory.map(format_bytes),
        steps,
        failing_step,
        limits,
        migration_model: model,
    })
}

fn validate(snapshot: &ClusterSnapshot, round: &[String]) -> Result<(), RollingError> {
    if round.is_empty() {
        return Err(RollingError::EmptyRound);
    }
    let mut seen = HashSet::new();
    for node in round {
        if !seen.insert(node.as_str()) {
            return Err(RollingError::DuplicateNode(node.clone()));
        }
        if !snapshot
            .nodes
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(node.as_str()))
        {
            return Err(PlanError::NoSuchNode(node.clone()).into());
        }
    }
    Ok(())
}

/// The migrations of `kubectl vm-drain-safe NODE` run over the round in the order given: every
/// other node is a target, maintained ones come back. Counts up to the first node such a loop
/// cannot drain (and says so).
fn naive(base: &Sim, round: &[String], policy: &DrainPolicy, model: &MigrationModel) -> (u32, bool) {
    let mut sim = base.clone();
    let mut undo = Undo::default();
    let mut migrations = 0;
    for node in round {
        let plan = sim.plan(node, &|_| true, policy, model);
        if !plan.feasible {
            return (migrations, false);
        }
        migrations += count(&plan.vms, VmAction::Migrate);
        sim.apply(node, &plan, &mut undo);
        sim.bring_back(node, &mut undo);
    }
    (migrations, true)
}

pub(super) fn count(vms: &[VmPlan], action: VmAction) -> u32 {
    vms.iter().filter(|v| v.action == action).count() as u32
}

fn stops(steps: &[RollingStep]) -> Vec<StoppedVm> {
    steps
        .iter()
        .flat_map(|s| {
            s.vms
                .iter()
                .filter(|v| v.action == VmAction::Shutdown)
                .map(|v| StoppedVm {
                    namespace: v.namespace.clone(),
                    name: v.name.clone(),
                    node: s.node.clone(),
                    step: s.index,
                })
        })
        .collect()
}

/// The step with the least free memory left (then the least CPU, then the earliest).
fn tightest(steps: &[RollingStep]) -> Option<Tightest> {
    steps
        .iter()
        .min_by(|a, b| {
            a.free
                .memory
                .total_cmp(&b.free.memory)
                .then(a.free.cpu.total_cmp(&b.free.cpu))
                .then(a.index.cmp(&b.index))
        })
        .map(|s| Tightest {
            step: s.index,
            node: s.node.clone(),
            free_cpu: s.free_cpu.clone(),
            free_memory: s.free_memory.clone(),
        })
}

/// Why a step that leaves `free_memory` on the nodes that can take a pod breaks the floor
/// `min_free_memory` (`--min-free-memory`), if it does. The planner and the round's executor
/// say it alike.
#[must_use]
pub fn below_floor(free_memory: f64, min_free_memory: Option<f64>) -> Option<String> {
    let floor = min_free_memory?;
    (free_memory < floor).then(|| {
        format!(
            "while it is in maintenance the nodes that can take a pod would have {} of memory free, less than the {} that --min-free-memory keeps",
            format_bytes(free_memory),
            format_bytes(floor)
        )
    })
}

/// The free room of the nodes that can take a pod while `node` is in maintenance, once the
/// moves of its drain `plan` are made on `snapshot`: what the round's executor checks against
/// the floor before each drain, as the planner does for each step.
#[must_use]
pub fn room_during(snapshot: &ClusterSnapshot, node: &str, plan: &DrainPlan) -> Requests {
    let mut sim = Sim::new(snapshot);
    sim.apply(node, plan, &mut Undo::default());
    room(&sim.views(), node, &|_| true)
}

/// The free room of the nodes that can take a pod, `node` (in maintenance) left out.
pub(super) fn room(views: &[NodeView], node: &str, allowed: &dyn Fn(&str) -> bool) -> Requests {
    let mut room = Requests::default();
    for v in views
        .iter()
        .filter(|v| v.name != node && allowed(&v.name) && v.unavailable_reason_kind().is_none())
    {
        let free = v.free();
        room.cpu += free.cpu.max(0.0);
        room.memory += free.memory.max(0.0);
    }
    room
}
