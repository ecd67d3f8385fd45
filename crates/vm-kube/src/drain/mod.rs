//! Executes a drain plan: lock, cordon, stop what may be stopped, migrate the rest within the
//! cluster's limits (followed by watch), evict the other pods with PDB retries, and wait until
//! only DaemonSet pods are left.
//!
//! # Guarantees
//! - Idempotent: a run adopts the migrations in flight for the VMIs it moves (a killed run's,
//!   or anyone's) and skips, reporting them, VMIs that already left the node; it never creates
//!   a second migration for a VMI that has one in flight, and looks for one before every
//!   create, so a create whose answer was lost is not repeated.
//! - One run per node: the lock ([`lease`]) refuses a second run while the first renews it;
//!   a run that loses its lock stops at once.
//! - API server outages: watches resume with kube-runtime's backoff, other calls are retried
//!   while the failure is transient ([`retry`]); the run goes on where it was.
//! - Cancellation (timeout, Ctrl-C) deletes only the migrations it created that have not been
//!   handed off yet (`Pending`, `Scheduling`); the node stays cordoned.
//! - A target pod the scheduler cannot place: its `PodScheduled` message is shown while the
//!   migration waits; after `pending_timeout` the migration is cancelled, not retried, and the
//!   VM reported blocked with the message; migrations in flight finish, none is started, and
//!   the run stops (the node stays cordoned).
//! - Someone else's changes: a migration deleted by someone else counts as a failed try (and
//!   is retried within `max_attempts`); a VM edited meanwhile is read again before it is
//!   stopped (writes carry the resourceVersion read); a deleted node stops the run.
//!
//! # Caveats
//! A VM is stopped only when the plan says `shutdown`, and it is recorded on the node first.

mod calls;
mod evict;
mod exec;
pub mod lease;
mod migrate;
pub mod node;
pub mod pending;
pub mod retry;
mod stop;
pub mod stuck;
mod uncordon;
pub mod whereabouts;

use std::collections::BTreeMap;
use std::time::Duration;

pub use exec::{Outcome, execute};
pub use uncordon::{UncordonReport, uncordon};

use crate::error::ApiError;

/// Label on the migrations a drain creates: the node they empty.
pub const NODE_LABEL: &str = "vm-drain-safe.kubevirt.io/node";

/// What the executor tells the user about, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The lock is held.
    Locked {
        /// Lease namespace/name.
        lease: String,
    },
    /// The node is cordoned.
    Cordoned,
    /// A VM is being stopped.
    Stopping {
        /// `ns/name`.
        vm: String,
        /// What stopping means for it.
        how: String,
    },
    /// A migration was created or adopted.
    MigrationStarted {
        /// `ns/name` of the VMI.
        vm: String,
        /// The VMIM name.
        migration: String,
        /// 1 for the first try.
        attempt: u32,
    },
    /// A migration moved to a new phase.
    MigrationPhase {
        /// `ns/name` of the VMI.
        vm: String,
        /// KubeVirt's phase.
        phase: String,
    },
    /// A VMI runs on another node.
    Migrated {
        /// `ns/name` of the VMI.
        vm: String,
        /// Where it runs now.
        node: String,
    },
    /// A VMI the plan migrates had left the node before its turn (moved, stopped or deleted
    /// by someone else): no migration is created for it.
    AlreadyGone {
        /// `ns/name` of the VMI.
        vm: String,
        /// Where it went, as far as known.
        why: String,
    },
    /// The target pod of a migration is Pending: the scheduler cannot place it. Sent when the
    /// scheduler's message is new or changes.
    TargetPending {
        /// `ns/name` of the VMI.
        vm: String,
        /// The scheduler's words (the pod's `PodScheduled` condition).
        message: String,
    },
    /// A migration's target pod stayed unschedulable for the pending timeout: the migration
    /// was cancelled and is not retried.
    MigrationBlocked {
        /// `ns/name` of the VMI.
        vm: String,
        /// The scheduler's last words.
        message: String,
        /// Seconds the target pod was Pending and Unschedulable.
        waited_seconds: u64,
    },
    /// A migration ran past `--migration-timeout` and was cancelled.
    MigrationStuck {
        /// What happened, in words.
        what: stuck::StuckVm,
    },
    /// A migration failed.
    MigrationFailed {
        /// `ns/name` of the VMI.
        vm: String,
        /// Which try failed.
        attempt: u32,
        /// Why, as far as known.
        reason: String,
    },
    /// A pod eviction was refused for now (a PDB, or KubeVirt's webhook) and will be retried.
    EvictionRetry {
        /// `ns/name` of the pod.
        pod: String,
        /// The API server's words.
        message: String,
    },
    /// A pod was evicted.
    Evicted {
        /// `ns/name` of the pod.
        pod: String,
    },
    /// Waiting for the last pods to finish.
    Waiting {
        /// What is left.
        what: String,
    },
}

/// Receives progress; the CLI draws bars or prints lines.
pub trait Reporter: Send + Sync {
    /// Called for each event, in order.
    fn event(&self, event: &Event);
}

/// How to run.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// Namespace of the lock Lease.
    pub lock_namespace: String,
    /// Who holds the lock (user, host and process).
    pub holder: String,
    /// Tries per VM before the drain stops.
    pub max_attempts: u32,
    /// Pause between refused evictions.
    pub eviction_retry: Duration,
    /// Move only the VMs and leave the other pods where they are (vm-recover of a Ready node):
    /// the run ends when no live launcher pod is left on the node.
    pub vms_only: bool,
    /// How long a migration's target pod may stay Pending and Unschedulable before the
    /// migration is cancelled and its VM reported blocked (KubeVirt's own limit: 300 s).
    pub pending_timeout: Duration,
    /// Steering (a rolling round): `spec.addedNodeSelector` of every migration this run
    /// creates, so that the scheduler places the target pod only on nodes that carry these
    /// labels. KubeVirt merges it under the VMI's own selector: it can only narrow.
    pub added_node_selector: Option<BTreeMap<String, String>>,
    /// More labels for the migrations this run creates (a rolling round's run id), beside
    /// [`NODE_LABEL`].
    pub migration_labels: BTreeMap<String, String>,
    /// `--migration-timeout`: how long one migration may run before it is cancelled as stuck;
    /// `None` takes each VM's KubeVirt completion timeout from the plan.
    pub migration_timeout: Option<Duration>,
    /// `--on-stuck shutdown`: a stuck VM is stopped (and recorded for restart) instead of
    /// stopping the drain.
    pub on_stuck_shutdown: bool,
}

/// How a run ended without finishing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// `--timeout` elapsed.
    Timeout,
    /// Ctrl-C.
    Interrupted,
    /// A VM's migration failed `max_attempts` times.
    MigrationKeptFailing {
        /// `ns/name`.
        vm: String,
        /// The last reason.
        reason: String,
    },
    /// The Node object was deleted (or replaced by a new one of the same name) mid-drain.
    NodeDeleted,
    /// The target pods of these VMs' migrations could not be scheduled within the pending
    /// timeout; their migrations were cancelled.
    Blocked(Vec<BlockedVm>),
    /// These VMs' migrations ran past `--migration-timeout` and were cancelled.
    Stuck(Vec<stuck::StuckVm>),
}

/// A VM whose migration target pod the scheduler could not place within the pending timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockedVm {
    /// `ns/name`.
    pub vm: String,
    /// The scheduler's last words about its target pod.
    pub message: String,
    /// Seconds the target pod was Pending and Unschedulable.
    pub waited_seconds: u64,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::Timeout => f.write_str("the timeout elapsed"),
            Stopped::Interrupted => f.write_str("interrupted"),
            Stopped::MigrationKeptFailing { vm, reason } => {
                write!(f, "the migration of {vm} kept failing (last: {reason})")
            }
            Stopped::NodeDeleted => f.write_str("the node was deleted"),
            Stopped::Blocked(vms) => {
                let each: Vec<String> = vms
                    .iter()
                    .map(|b| {
                        format!(
                            "{} is BLOCKED (its migration target pod stayed Pending for {} s; the migration was cancelled, not retried), the scheduler says: {}",
                            b.vm, b.waited_seconds, b.message
                        )
                    })
                    .collect();
                f.write_str(&each.join(" "))
            }
            Stopped::Stuck(vms) => {
                let each: Vec<String> = vms.iter().map(ToString::to_string).collect();
                f.write_str(&each.join(" "))
            }
        }
    }
}

/// What a finished run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// VMIs now running elsewhere.
    pub migrated: Vec<String>,
    /// VMs stopped (recorded on the node for `--uncordon`).
    pub stopped: Vec<String>,
    /// Pods evicted.
    pub evicted: Vec<String>,
    /// VMIs whose migration a stopped run cancelled before it started.
    pub cancelled: Vec<String>,
    /// VMIs still on the node when a run stopped, with their migration's phase if one runs.
    pub left_on_node: Vec<String>,
    /// VMIs that had left the node before their turn (`ns/name (where)`): nothing was done.
    pub already_gone: Vec<String>,
    /// VMs whose migration was cancelled because its target pod could not be scheduled.
    pub blocked: Vec<BlockedVm>,
    /// The scheduler's last message about the target pod of each VM whose migration was
    /// blocked or failed while it waited (`ns/name` → message).
    pub scheduling_messages: BTreeMap<String, String>,
    /// VMs whose migration the API server stored without the `addedNodeSelector` this run
    /// asked for (a KubeVirt that does not serve the field): the scheduler chose their target.
    pub unsteered: Vec<String>,
    /// VMs whose migration ran past `--migration-timeout` and was cancelled.
    pub stuck: Vec<stuck::StuckVm>,
}

/// Why a drain could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// Another run holds the node's lock.
    #[error(
        "{what} is being worked on by {holder} (its lock was renewed {age_seconds} s ago). If that run is still going, let it finish or stop it there; if it was stopped or killed, its lock expires in {expires_in_seconds} s unless renewed, and the same command then takes it over and resumes the work"
    )]
    Locked {
        /// What the lock guards: `node n1`, `the rolling round`.
        what: String,
        /// The holder's identity.
        holder: String,
        /// Seconds since its last renewal.
        age_seconds: i64,
        /// Seconds until the lock expires unless its holder renews it.
        expires_in_seconds: i64,
    },
    /// The run's lock was taken over or deleted while it worked (it could not renew it for a
    /// whole lease duration, or someone deleted it): it stopped at once.
    #[error(
        "node {node}: this run lost its lock ({}); it stopped so that two runs never work on one node. Migrations in flight were left to finish; once the lock is free, the same command resumes",
        .holder.as_ref().map_or_else(|| "the lease was deleted".to_string(), |h| format!("now held by {h}"))
    )]
    LockLost {
        /// The node.
        node: String,
        /// Who holds the lock now; `None` when the lease was deleted.
        holder: Option<String>,
    },
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Anything else, worded for the user.
    #[error("{0}")]
    Other(String),
}
