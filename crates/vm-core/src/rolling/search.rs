//! The depth-first search for an order of a rolling round: each step tried with narrow targets,
//! then widened, taken back when the rest of the round cannot be planned, within the
//! backtracking budget.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::plan::{FailingStep, RollingPolicy, RollingStep, StepVm};
use super::sim::{Sim, Undo};
use super::{below_floor, count, room};
use crate::drain::{DrainPlan, PodAction, VmAction, VmPlan, estimate_seconds};
use crate::eta::MigrationModel;
use crate::migration_target::{TargetSources, migration_target_with};
use crate::placement::{NodeView, shortfall};
use crate::quantity::{format_bytes, format_cpu};

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
pub(super) struct Search<'a> {
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
    pub(super) fn new(
        sim: Sim,
        round: &[String],
        policy: &'a RollingPolicy,
        model: &'a MigrationModel,
    ) -> Self {
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
    pub(super) fn run(mut self) -> (Vec<RollingStep>, Option<FailingStep>) {
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
