//! Recovers the VMs of a node that is down: fence, force-delete, release, follow.
//!
//! Only after the operator confirmed that the node is powered off (the caller's job) does
//! [`fence_and_restart`] act, in this order, each step idempotent so that a re-run resumes:
//! 1. the `node.kubernetes.io/out-of-service=nodeshutdown:NoExecute` taint, Kubernetes'
//!    non-graceful shutdown marker (reference §7, option 2);
//! 2. force-deletion (grace period 0) of the node's virt-launcher pods, which lets KubeVirt
//!    mark their VMIs Failed and the run strategies act;
//! 3. deletion of the VolumeAttachments that pin the VMs' ReadWriteOnce volumes to the node,
//!    without which the new launcher pods wait on a Multi-Attach error;
//! 4. for VMs the operator asked to start (`--start-stopped`, runStrategy Manual), a Start
//!    request once their old VMI has finished;
//! 5. following every VM that should come back until it runs on another node.
//!
//! Before steps 1, 2 (each pod) and 3, a [`vigil::Vigil`] checks that the node's kubelet has
//! not renewed its Lease since the assessment; if it has, the node is alive and may run the
//! VMs, so the run stops there ([`NodeCameBack`]), takes its own out-of-service
//! taint off again, and leaves the rest to a new assessment.
//!
//! Every call is retried with backoff while the API server is away or overloaded
//! ([`crate::drain::retry`]), so a control-plane restart does not cut a recovery short.
//!
//! The per-node lock of the drain ([`crate::drain::lease`]) is held throughout, so a drain and
//! a recovery of one node never run at once.
//!
//! Errors are [`DrainError`]: one error type for every node operation of the suite.

mod fence;
mod follow;
mod vigil;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};
use vm_core::recover::{RecoveryAction, RecoveryPlan};

pub use fence::{TAINT_TEXT, has_out_of_service_taint, remove_out_of_service_taint};

use crate::drain::{DrainError, lease};

/// What the recovery did for one VM.
#[derive(Clone, Debug, PartialEq)]
pub enum VmResult {
    /// Runs on `node`, `after` the operator's confirmation.
    Running {
        /// Where it runs now.
        node: String,
        /// Time from confirmation.
        after: Duration,
    },
    /// Left stopped, as the plan said.
    LeftStopped,
    /// Should run, but did not before the end of the run; `state` says where it was.
    NotRunning {
        /// The VMI's phase and node, or that there is none.
        state: String,
    },
}

/// One VM's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct VmOutcome {
    /// `ns/name`.
    pub id: String,
    /// What the plan said.
    pub action: RecoveryAction,
    /// What happened.
    pub result: VmResult,
}

/// What [`fence_and_restart`] did.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// Whether this run added the out-of-service taint (false: it was there already).
    pub tainted: bool,
    /// Launcher pods force-deleted (`ns/name`).
    pub deleted_pods: Vec<String>,
    /// VolumeAttachments deleted.
    pub released_attachments: Vec<String>,
    /// VMs given a Start request (`--start-stopped`).
    pub started: Vec<String>,
    /// Per VM, in the plan's order.
    pub vms: Vec<VmOutcome>,
    /// From confirmation until every VM that should run was running (or the end of the run).
    pub elapsed: Duration,
    /// Whether the run ended early (timeout, Ctrl-C) with VMs not yet running.
    pub stopped_early: bool,
    /// Set when the node's kubelet renewed its Lease during the run, and the run stopped.
    pub came_back: Option<NodeCameBack>,
}

/// The node showed signs of life during a fencing run: what the run had done by then.
#[derive(Clone, Debug)]
pub struct NodeCameBack {
    /// The Lease's new `renewTime`.
    pub renewed_at: String,
    /// The step the run did not take, e.g. "tainting the node".
    pub stopped_before: &'static str,
    /// Whether the run took its own out-of-service taint off again.
    pub taint_removed: bool,
}

impl RecoveryReport {
    /// Whether the run left the cluster as it found it: it deleted nothing, and a taint it
    /// added it took off again.
    #[must_use]
    pub fn changed_nothing(&self) -> bool {
        let taint_undone = self.came_back.as_ref().is_some_and(|c| c.taint_removed);
        (!self.tainted || taint_undone)
            && self.deleted_pods.is_empty()
            && self.released_attachments.is_empty()
    }
}

impl RecoveryReport {
    /// Whether every VM the plan brings back runs elsewhere.
    #[must_use]
    pub fn all_running(&self) -> bool {
        self.vms
            .iter()
            .all(|v| !matches!(v.result, VmResult::NotRunning { .. }))
    }
}

/// How to run.
#[derive(Clone, Debug)]
pub struct RecoverOptions {
    /// Namespace of the per-node lock.
    pub lock_namespace: String,
    /// Who holds the lock.
    pub holder: String,
}

/// Fences `plan.node` and brings its VMs back elsewhere; returns when every VM that should run
/// does, or when `stop` resolves (timeout, Ctrl-C), with the state of each VM either way.
/// `confirmed` is when the operator confirmed the node is off; times are measured from it.
/// `log` receives one line per step.
///
/// # Errors
/// Another drain or recovery holds the node's lock; an API call failed (named).
pub async fn fence_and_restart(
    client: &Client,
    plan: &RecoveryPlan,
    opts: &RecoverOptions,
    confirmed: Instant,
    stop: impl Future<Output = crate::drain::Stopped>,
    log: &(dyn Fn(String) + Send + Sync),
) -> Result<RecoveryReport, DrainError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &opts.lock_namespace);
    lease::acquire(&leases, &opts.lock_namespace, &plan.node, &opts.holder).await?;
    let mut renewal = lease::keep_renewed(leases.clone(), plan.node.clone(), opts.holder.clone());
    let result = tokio::select! {
        r = run(client, plan, confirmed, stop, log) => r,
        lost = &mut renewal => {
            // Another run owns the node now: leave the lock and its work to it.
            return Err(DrainError::LockLost {
                node: plan.node.clone(),
                holder: lost.ok().and_then(|l| l.holder),
            });
        }
    };
    renewal.abort();
    let _ = renewal.await;
    lease::release_if_held(&leases, &opts.lock_namespace, &plan.node, &opts.holder).await?;
    result
}

async fn run(
    client: &Client,
    plan: &RecoveryPlan,
    confirmed: Instant,
    stop: impl Future<Output = crate::drain::Stopped>,
    log: &(dyn Fn(String) + Send + Sync),
) -> Result<RecoveryReport, DrainError> {
    let mut report = RecoveryReport::default();
    let vigil = vigil::Vigil::new(client, plan);
    if let Some(at) = vigil.renewed_since_assessment().await? {
        return came_back(client, plan, report, at, "tainting the node").await;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    report.tainted = fence::add_out_of_service_taint(&nodes, &plan.node).await?;
    log(if report.tainted {
        format!("tainted node {} {}", plan.node, fence::TAINT_TEXT)
    } else {
        format!("node {} already has {}", plan.node, fence::TAINT_TEXT)
    });
    // What to wait for, with the VMI each VM had on the dead node, before anything is deleted.
    let awaited = follow::awaited(client, plan).await?;
    let (deleted, alive) = fence::force_delete_launchers(client, &plan.node, &vigil, log).await?;
    report.deleted_pods = deleted;
    if let Some(at) = alive {
        return came_back(client, plan, report, at, "force-deleting its launcher pods").await;
    }
    let attachments: Vec<String> = plan
        .vms
        .iter()
        .flat_map(|v| v.volume_attachments.iter().cloned())
        .collect();
    if let Some(at) = vigil.renewed_since_assessment().await? {
        return came_back(client, plan, report, at, "releasing its VolumeAttachments").await;
    }
    report.released_attachments = fence::delete_attachments(client, &attachments).await?;
    for name in &report.released_attachments {
        log(format!("deleted VolumeAttachment {name}"));
    }

    let mut arrivals = BTreeMap::new();
    report.stopped_early = tokio::select! {
        r = follow::until_running(client, &plan.node, &awaited, confirmed, log, &mut arrivals) => {
            r?;
            false
        }
        _ = stop => true,
    };
    report.started = awaited
        .iter()
        .filter(|a| a.start_request)
        .map(|a| a.id.clone())
        .collect();
    report.elapsed = confirmed.elapsed();
    outcomes(client, plan, &awaited, &arrivals, &mut report).await?;
    Ok(report)
}

/// Ends a run whose node renewed its Lease at `renewed_at`, before `step`: takes this run's
/// taint off again (on a live node it would have the pods still there force-deleted, while
/// their VMs may run), and records where each VM is. VMs whose pods were deleted already
/// restart elsewhere by their run strategy; the others stay where they run.
async fn came_back(
    client: &Client,
    plan: &RecoveryPlan,
    mut report: RecoveryReport,
    renewed_at: String,
    step: &'static str,
) -> Result<RecoveryReport, DrainError> {
    let mut taint_removed = false;
    if report.tainted {
        let nodes: Api<Node> = Api::all(client.clone());
        taint_removed = fence::remove_out_of_service_taint(&nodes, &plan.node).await?;
    }
    report.came_back = Some(NodeCameBack {
        renewed_at,
        stopped_before: step,
        taint_removed,
    });
    report.stopped_early = true;
    let awaited = follow::awaited(client, plan).await?;
    outcomes(client, plan, &awaited, &BTreeMap::new(), &mut report).await?;
    Ok(report)
}

/// Each VM of the plan: running elsewhere (with when), left stopped, or not running and why.
async fn outcomes(
    client: &Client,
    plan: &RecoveryPlan,
    awaited: &[follow::Awaited],
    arrivals: &BTreeMap<String, (String, Duration)>,
    report: &mut RecoveryReport,
) -> Result<(), DrainError> {
    for vm in &plan.vms {
        let id = format!("{}/{}", vm.namespace, vm.name);
        let result = match (awaited.iter().find(|a| a.id == id), arrivals.get(&id)) {
            (None, _) => VmResult::LeftStopped,
            (Some(_), Some((node, after))) => VmResult::Running {
                node: node.clone(),
                after: *after,
            },
            (Some(_), None) => VmResult::NotRunning {
                state: follow::state_of(client, &id).await?,
            },
        };
        report.vms.push(VmOutcome {
            id,
            action: vm.action,
            result,
        });
    }
    Ok(())
}
