//! What a rolling round's plan says: the operator's policy, the steps, the failing step, the
//! tightest step and the whole plan, as `-o json|yaml` prints them.

use serde::Serialize;

use crate::drain::{DrainPolicy, MigrationLimits, PlanError, VmAction};
use crate::eta::MigrationModel;
use crate::resources::Requests;

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
