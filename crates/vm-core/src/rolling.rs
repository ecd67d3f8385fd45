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

mod sim;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::drain::{
    DrainPlan, DrainPolicy, MigrationLimits, PlanError, PodAction, VmAction, VmPlan, estimate_seconds,
};
use crate::eta::MigrationModel;
use crate::migration_target::{TargetSources, migration_target_with};
use crate::placement::{NodeView, shortfall};
use crate::quantity::{format_bytes, format_cpu};
use crate::resources::Requests;
use crate::snapshot::ClusterSnapshot;
use sim::{Sim, Undo};

/// Choices the operator makes with flags.
#[derive(Clone, Debug)]
pub struct RollingPolicy {
    /// The drain flags, the same for every step.
    pub drain: DrainPolicy,
    /// Time the maintenance of one node takes once it is drained (reboot, upgrade), in seconds.
    pub maintenance_seconds: u64,
    /// How many more step attempts the order search may make once a position has failed, before
    /// it reports the deepest failure found.
    pub max_backtrack_attempts: usize,
    /// The free memory, in bytes, that the nodes able to take a pod must keep during every
    /// step (`--min-free-memory`): the operator's headroom for a node failing while another
    /// is in maintenance. A step that would leave less is not feasible.
    pub min_free_memory: Option<f64>,
}

impl RollingPolicy {
    /// Five minutes: a reboot with firmware checks, or a kubelet and kernel upgrade.
    pub const DEFAULT_MAINTENANCE_SECONDS: u64 = 300;
    /// Enough to try other choices at the last few positions of a round; small enough that a
    /// round that no order can complete on a large cluster still plans in seconds.
    pub const DEFAULT_MAX_BACKTRACK_ATTEMPTS: usize = 64;
}

impl Default for RollingPolicy {
    fn default() -> Self {
        Self {
            drain: DrainPolicy::default(),
            maintenance_seconds: Self::DEFAULT_MAINTENANCE_SECONDS,
            max_backtrack_attempts: Self::DEFAULT_MAX_BACKTRACK_ATTEMPTS,
            min_free_memory: None,
        }
    }
}

/// Why no plan could be made at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollingError {
    /// No node was given.
    #[error("the round names no node: give at least one")]
    EmptyRound,
    /// A node was given twice; a round maintains each node once.
    #[error("node {0} is named twice in the round: a round maintains each node once")]
    DuplicateNode(String),
    /// A node is not in the snapshot.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// One VM of a step.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepVm {
    /// Namespace.
    pub namespace: String,
    /// VMI name.
    pub name: String,
    /// What happens to it.
    pub action: VmAction,
    /// Where it goes, for a migration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Why, in an operator's words.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// It lands on a round node not yet maintained, and moves again at that node's step.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub moves_again: bool,
}

/// One node's turn: its VMs leave, it is maintained, it comes back.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollingStep {
    /// Position in the round, from 0.
    pub index: usize,
    /// The node.
    pub node: String,
    /// Every VM that leaves it.
    pub vms: Vec<StepVm>,
    /// How many VMs migrate.
    pub migrations: u32,
    /// How many of them land on round nodes not yet maintained.
    pub moves_again: u32,
    /// The narrow targets (outside the round, or maintained) had no room, so round nodes not
    /// yet maintained took some VMs.
    pub widened_targets: bool,
    /// The drain's own estimate of its migrations.
    pub migration_seconds: u64,
    /// Migrations plus maintenance.
    pub estimated_seconds: u64,
    /// CPU left free on the nodes that can take a pod, after the moves, during maintenance.
    pub free_cpu: String,
    /// Memory left free likewise.
    pub free_memory: String,
    /// The same room, as numbers.
    #[serde(skip)]
    pub free: Requests,
}

/// The step at which the round stops.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailingStep {
    /// Its position: the steps before it are feasible.
    pub index: usize,
    /// The node that cannot be drained there.
    pub node: String,
    /// Everything that blocks, one sentence each, as the drain plan says it with every node as
    /// a possible target.
    pub blockers: Vec<String>,
    /// The VMs that cannot leave, with their reasons.
    pub vms: Vec<StepVm>,
    /// The round's other nodes, not planned (each was tried at this position and is blocked too).
    pub not_reached: Vec<String>,
}

/// The step that leaves the cluster the least room.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tightest {
    /// Its position.
    pub step: usize,
    /// The node in maintenance then.
    pub node: String,
    /// Free CPU left.
    pub free_cpu: String,
    /// Free memory left.
    pub free_memory: String,
}

/// A VM the round stops (`--shutdown-non-migratable`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoppedVm {
    /// Namespace.
    pub namespace: String,
    /// VMI name.
    pub name: String,
    /// The node it is stopped on.
    pub node: String,
    /// The step that stops it.
    pub step: usize,
}

/// The whole round.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollingPlan {
    /// `vm-drain-safe/v1`.
    pub api_version: &'static str,
    /// `RollingPlan`.
    pub kind: &'static str,
    /// The order: the planned steps, then the failing node if any.
    pub nodes: Vec<String>,
    /// True when every node of the round can be maintained in this order.
    pub feasible: bool,
    /// The feasible steps, in order.
    pub steps: Vec<RollingStep>,
    /// Where and why the round stops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_step: Option<FailingStep>,
    /// Migrations of the planned steps.
    pub migrations: u32,
    /// Of those, how many land on round nodes not yet maintained (each such VM moves again).
    pub moves_again: u32,
    /// Migrations a naive loop over the nodes in the order given would make.
    pub naive_migrations: u32,
    /// Whether that naive loop gets through the whole round (its count stops where it blocks).
    pub naive_feasible: bool,
    /// VMs the round stops.
    pub stops: Vec<StoppedVm>,
    /// Estimated wall time of the planned steps, maintenance included, in seconds.
    pub estimated_seconds: u64,
    /// Maintenance time assumed per node, in seconds.
    pub maintenance_seconds: u64,
    /// The step with the least room left, if any step is planned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tightest: Option<Tightest>,
    /// The free memory every step must leave (`--min-free-memory`), if one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_free_memory: Option<String>,
    /// Migration limits used for the estimates.
    pub limits: MigrationLimits,
    /// The duration of one migration that every step's estimate assumes, and where it comes
    /// from: fitted once on the snapshot's finished migrations.
    pub migration_model: MigrationModel,
}

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

fn count(vms: &[VmPlan], action: VmAction) -> u32 {
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
fn room(views: &[NodeView], node: &str, allowed: &dyn Fn(&str) -> bool) -> Requests {
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

/// A step attempt that worked: the step, and how to take it back.
type Attempt = (RollingStep, Undo);

/// Why a step with narrow targets (outside the round, or maintained) did not work.
enum NarrowFailure {
    /// They plainly lack the room: no drain plan was made.
    NoRoom,
    /// The drain plan is not feasible.
    Infeasible(Box<DrainPlan>),
    /// The drain works, but leaves less free memory than the floor: wider targets would not
    /// change that (the same VMs need the same room), so the step fails at this position.
    BelowFloor(Box<DrainPlan>),
}

/// The depth-first search for an order.
struct Search<'a> {
    sim: Sim,
    policy: &'a RollingPolicy,
    /// The round's migration model, fitted once.
    model: &'a MigrationModel,
    round: HashSet<String>,
    /// `node/namespace/name` of each VMI on a round node before the round.
    original: HashSet<String>,
    maintained: HashSet<String>,
    /// Nodes that no order can drain.
    hopeless: BTreeSet<String>,
    /// The steps taken so far, with how to take each back.
    path: Vec<Attempt>,
    /// The deepest failure found: the steps before it, and it.
    best: Option<(Vec<RollingStep>, FailingStep)>,
    /// Attempts left once a position has failed (`None` before).
    backtracks_left: Option<usize>,
    exhausted: bool,
    remaining: Vec<String>,
}

impl<'a> Search<'a> {
    fn new(sim: Sim, round: &[String], policy: &'a RollingPolicy, model: &'a MigrationModel) -> Self {
        let round_set: HashSet<String> = round.iter().cloned().collect();
        let original = sim
            .snapshot
            .vmis
            .iter()
            .filter_map(|v| {
                let node = v.status.as_ref()?.node_name.as_deref()?;
                round_set.contains(node).then(|| {
                    format!(
                        "{node}/{}/{}",
                        v.metadata.namespace.as_deref().unwrap_or("default"),
                        v.metadata.name.as_deref().unwrap_or_default()
                    )
                })
            })
            .collect();
        Self {
            sim,
            policy,
            model,
            round: round_set,
            original,
            maintained: HashSet::new(),
            hopeless: BTreeSet::new(),
            path: Vec::new(),
            best: None,
            backtracks_left: None,
            exhausted: false,
            remaining: round.to_vec(),
        }
    }

    /// The planned steps, and the failing one if the round cannot be completed.
    fn run(mut self) -> (Vec<RollingStep>, Option<FailingStep>) {
        if self.descend() {
            let steps: Vec<RollingStep> = self.path.iter().map(|(s, _)| s.clone()).collect();
            let failing = self.hopeless_failure();
            (steps, failing)
        } else {
            let (steps, failing) = self.best.take().expect("a failed search records its failure");
            (steps, Some(failing))
        }
    }

    /// Plans the remaining nodes from the current state; true when every node left is either
    /// planned or one that no order can drain.
    fn descend(&mut self) -> bool {
        if self.remaining.iter().all(|n| self.hopeless.contains(n)) {
            return true;
        }
        let views = self.sim.views();
        let candidates = self.candidates();
        let mut narrow_failures: HashMap<String, NarrowFailure> = HashMap::new();
        for node in &candidates {
            if !self.spend() {
                return false;
            }
            match self.try_narrow(node, &views) {
                Ok(attempt) => {
                    if self.take(attempt) {
                        return true;
                    }
                    if self.exhausted {
                        return false;
                    }
                }
                Err(failure) => {
                    narrow_failures.insert(node.clone(), failure);
                }
            }
        }
        let mut first_failure = None;
        for node in &candidates {
            // A node whose narrow step worked was explored from there already.
            let narrow = match narrow_failures.remove(node) {
                None => continue,
                Some(NarrowFailure::BelowFloor(plan)) => {
                    first_failure.get_or_insert((node.clone(), plan));
                    continue;
                }
                Some(NarrowFailure::NoRoom) => None,
                Some(NarrowFailure::Infeasible(plan)) => Some(plan),
            };
            if self.hopeless.contains(node) || !self.spend() {
                if self.exhausted {
                    return false;
                }
                continue;
            }
            match self.try_widened(node, narrow) {
                Ok(attempt) => {
                    if self.take(attempt) {
                        return true;
                    }
                    if self.exhausted {
                        return false;
                    }
                }
                Err(plan) => {
                    if self.undrainable(node, &plan) {
                        self.hopeless.insert(node.clone());
                    }
                    first_failure.get_or_insert((node.clone(), plan));
                }
            }
        }
        if self.remaining.iter().all(|n| self.hopeless.contains(n)) {
            return true;
        }
        if let Some((node, plan)) = first_failure {
            self.record_failure(&node, &plan, &candidates);
        }
        false
    }

    /// Counts one step attempt against the backtracking budget, once it is in force.
    fn spend(&mut self) -> bool {
        match &mut self.backtracks_left {
            Some(0) => {
                self.exhausted = true;
                false
            }
            Some(left) => {
                *left -= 1;
                true
            }
            None => true,
        }
    }

    /// The remaining nodes to try, least VM memory first, then by name; undrainable ones out.
    fn candidates(&self) -> Vec<String> {
        let mut keyed: Vec<(f64, String)> = self
            .remaining
            .iter()
            .filter(|n| !self.hopeless.contains(*n))
            .map(|n| (self.sim.demand_on(n).0.memory, n.clone()))
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        keyed.into_iter().map(|(_, n)| n).collect()
    }

    /// Whether `name` is a narrow target: outside the round, or maintained.
    fn narrow(&self, name: &str) -> bool {
        !self.round.contains(name) || self.maintained.contains(name)
    }

    /// The step of `node` with narrow targets.
    fn try_narrow(&mut self, node: &str, views: &[NodeView]) -> Result<Attempt, NarrowFailure> {
        let (round, maintained) = (&self.round, &self.maintained);
        let allowed = |name: &str| !round.contains(name) || maintained.contains(name);
        let need = self.sim.demand_on(node).1;
        let have = room(views, node, &allowed);
        if need.memory > have.memory || need.cpu > have.cpu + 1e-9 {
            return Err(NarrowFailure::NoRoom);
        }
        let plan = self.sim.plan(node, &allowed, &self.policy.drain, self.model);
        if !plan.feasible {
            return Err(NarrowFailure::Infeasible(Box::new(plan)));
        }
        let mut undo = Undo::default();
        self.sim.apply(node, &plan, &mut undo);
        let step = self.step(node, Vec::new(), &plan, false);
        self.above_floor(step, undo, plan)
            .map_err(NarrowFailure::BelowFloor)
    }

    /// The step of `node` when the narrow targets are not enough: the VMs that fit there go
    /// there, and the rest may go to any node, round nodes not yet maintained included.
    fn try_widened(&mut self, node: &str, narrow: Option<Box<DrainPlan>>) -> Result<Attempt, Box<DrainPlan>> {
        let narrow = match narrow {
            Some(plan) => *plan,
            None => {
                let (round, maintained) = (&self.round, &self.maintained);
                let allowed = |name: &str| !round.contains(name) || maintained.contains(name);
                self.sim.plan(node, &allowed, &self.policy.drain, self.model)
            }
        };
        let mut first = narrow;
        first
            .vms
            .retain(|v| v.action == VmAction::Migrate && v.target.is_some());
        let mut undo = Undo::default();
        self.sim.apply(node, &first, &mut undo);
        let rest = self.sim.plan(node, &|_| true, &self.policy.drain, self.model);
        if !rest.feasible {
            self.sim.undo(undo);
            return Err(Box::new(rest));
        }
        self.sim.apply(node, &rest, &mut undo);
        let step = self.step(node, first.vms, &rest, true);
        self.above_floor(step, undo, rest)
    }

    /// The applied `step`, kept when it leaves the free memory `--min-free-memory` asks for;
    /// else taken back, and its drain `plan` made the step's failure.
    fn above_floor(
        &mut self,
        step: RollingStep,
        undo: Undo,
        plan: DrainPlan,
    ) -> Result<Attempt, Box<DrainPlan>> {
        match below_floor(step.free.memory, self.policy.min_free_memory) {
            Some(why) => {
                self.sim.undo(undo);
                Err(Box::new(with_blocker(plan, why)))
            }
            None => Ok((step, undo)),
        }
    }

    /// The step record of `node` once its moves are applied: `first` migrated to narrow targets,
    /// `plan` moved or stopped the rest.
    fn step(&self, node: &str, first: Vec<VmPlan>, plan: &DrainPlan, widened: bool) -> RollingStep {
        let mut all = first;
        all.extend(plan.vms.iter().cloned());
        let vms: Vec<StepVm> = all
            .iter()
            .map(|v| {
                let moves_again =
                    v.action == VmAction::Migrate && v.target.as_deref().is_some_and(|t| !self.narrow(t));
                let mut reasons = v.reasons.clone();
                if moves_again {
                    let target = v.target.as_deref().unwrap_or_default();
                    reasons.push(format!(
                        "node {target} is in the round and not yet maintained: the VM moves again at its step"
                    ));
                }
                StepVm {
                    namespace: v.namespace.clone(),
                    name: v.name.clone(),
                    action: v.action,
                    target: v.target.clone(),
                    reasons,
                    moves_again,
                }
            })
            .collect();
        let migration_seconds = estimate_seconds(&all, &plan.limits, self.model);
        let free = room(&self.sim.views(), node, &|_| true);
        RollingStep {
            index: self.path.len(),
            node: node.to_string(),
            migrations: count(&all, VmAction::Migrate),
            moves_again: vms.iter().filter(|v| v.moves_again).count() as u32,
            vms,
            widened_targets: widened,
            migration_seconds,
            estimated_seconds: migration_seconds + self.policy.maintenance_seconds,
            free_cpu: format_cpu(free.cpu),
            free_memory: format_bytes(free.memory),
            free,
        }
    }

    /// Takes an applied step: the node is maintained and comes back uncordoned; then plans the
    /// rest. Takes it back if the rest cannot be planned.
    fn take(&mut self, (step, mut undo): Attempt) -> bool {
        let node = step.node.clone();
        self.sim.bring_back(&node, &mut undo);
        self.maintained.insert(node.clone());
        self.remaining.retain(|n| *n != node);
        self.path.push((step, undo));
        if self.descend() {
            return true;
        }
        let (_, undo) = self.path.pop().expect("pushed above");
        self.sim.undo(undo);
        self.maintained.remove(&node);
        self.remaining.push(node);
        false
    }

    /// Whether `plan` (with every node a target) shows that no order can drain `node`: a pod
    /// that blocks, a VM that cannot migrate or gets no target pod, or a VM of the node from
    /// the start whose target no other usable node admits or could ever hold.
    fn undrainable(&self, node: &str, plan: &DrainPlan) -> bool {
        plan.pods.iter().any(|p| p.action == PodAction::Blocked)
            || plan
                .vms
                .iter()
                .filter(|v| v.action == VmAction::Blocked)
                .any(|v| !v.live_migratable || v.placement_reasons.is_empty() || self.pinned(node, v))
    }

    /// Whether VM `v`, on `node` since before the round, has no other node it could ever go
    /// to: none that is Ready and KubeVirt-schedulable, not cordoned for good (outside the
    /// round), admitted by its target pod's selectors, affinity and taints, and whose
    /// allocatable holds its requests.
    fn pinned(&self, node: &str, v: &VmPlan) -> bool {
        if !self
            .original
            .contains(&format!("{node}/{}/{}", v.namespace, v.name))
        {
            return false;
        }
        let Some(vmi) = self.sim.vmi_on(&v.namespace, &v.name, node) else {
            return false;
        };
        let snapshot = &self.sim.snapshot;
        let Ok((constraints, requests)) =
            migration_target_with(snapshot, &TargetSources::of(snapshot), vmi, self.sim.cluster())
        else {
            return true;
        };
        !self.sim.views().iter().any(|n| {
            n.name != node
                && n.ready
                && n.is_kubevirt_schedulable()
                && (!n.cordoned || self.round.contains(&n.name))
                && constraints.admits(n)
                && shortfall(&requests, &n.allocatable, &n.name).is_none()
        })
    }

    /// Keeps the failure at this position if it is the deepest yet.
    fn record_failure(&mut self, node: &str, plan: &DrainPlan, candidates: &[String]) {
        if self.backtracks_left.is_none() {
            self.backtracks_left = Some(self.policy.max_backtrack_attempts);
        }
        let depth = self.path.len();
        if self.best.as_ref().is_some_and(|(steps, _)| steps.len() >= depth) {
            return;
        }
        let mut not_reached: Vec<String> = candidates.iter().filter(|n| *n != node).cloned().collect();
        not_reached.extend(
            self.remaining
                .iter()
                .filter(|n| *n != node && !candidates.contains(n))
                .cloned(),
        );
        let steps = self.path.iter().map(|(s, _)| s.clone()).collect();
        self.best = Some((steps, failing(depth, node, plan, not_reached)));
    }

    /// The failing step once every other node is planned and only undrainable ones are left:
    /// the first of them by name, with its drain plan against every node.
    fn hopeless_failure(&mut self) -> Option<FailingStep> {
        let node = self.remaining.iter().min()?.clone();
        let plan = self.sim.plan(&node, &|_| true, &self.policy.drain, self.model);
        let mut not_reached: Vec<String> = self.remaining.iter().filter(|n| **n != node).cloned().collect();
        not_reached.sort();
        Some(failing(self.path.len(), &node, &plan, not_reached))
    }
}

/// `plan`, feasible as a drain, made a failure of the step for `why`.
fn with_blocker(mut plan: DrainPlan, why: String) -> DrainPlan {
    plan.feasible = false;
    plan.blockers.push(why);
    plan
}

/// The failing step at `index`: `node` and what blocks its drain `plan`.
fn failing(index: usize, node: &str, plan: &DrainPlan, not_reached: Vec<String>) -> FailingStep {
    FailingStep {
        index,
        node: node.to_string(),
        blockers: plan.blockers.clone(),
        vms: plan
            .vms
            .iter()
            .filter(|v| v.action == VmAction::Blocked)
            .map(|v| StepVm {
                namespace: v.namespace.clone(),
                name: v.name.clone(),
                action: v.action,
                target: None,
                reasons: v.reasons.clone(),
                moves_again: false,
            })
            .collect(),
        not_reached,
    }
}
