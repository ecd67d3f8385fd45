//! A drain run from start to end: the lock taken and kept renewed, then the steps in order
//! (cordon, [`stop`](super::stop) VMs, [`migrate`](super::migrate), [`evict`](super::evict)
//! the rest), until done or stopped (timeout, Ctrl-C, lost lock, deleted node); a stopped run
//! cancels the migrations not handed off yet and says what is left on the node.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};
use vm_core::drain::DrainPlan;

use super::calls::WorkEnd;
use super::evict::{evict_rest, wait_for_launchers};
use super::migrate::{cancel_unstarted, migrate};
use super::node::set_unschedulable;
use super::stop::stop_vms;
use super::{DrainError, Event, ExecOptions, Reporter, Stopped, Summary, lease, retry};

/// How [`execute`] ended.
#[derive(Debug)]
pub enum Outcome {
    /// The node holds only DaemonSet pods and no VMI.
    Done(Summary),
    /// Stopped part-way; the node stays cordoned and a re-run resumes.
    Stopped(Stopped, Summary),
}

/// Runs `plan`, which must be feasible, until done or until `stop` resolves.
///
/// # Errors
/// The lock is held by another run, or an API call failed; the message names the call.
pub async fn execute(
    client: &Client,
    plan: &DrainPlan,
    opts: &ExecOptions,
    reporter: &dyn Reporter,
    stop: impl Future<Output = Stopped>,
) -> Result<Outcome, DrainError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &opts.lock_namespace);
    lease::acquire(&leases, &opts.lock_namespace, &plan.node, &opts.holder).await?;
    reporter.event(&Event::Locked {
        lease: format!("{}/{}", opts.lock_namespace, lease::lease_name(&plan.node)),
    });
    let mut renewal = lease::keep_renewed(leases.clone(), plan.node.clone(), opts.holder.clone());
    let mut summary = Summary::default();
    let ended = tokio::select! {
        r = work(client, plan, opts, reporter, &mut summary) => r.err(),
        s = stop => Some(WorkEnd::Stopped(s)),
        lost = &mut renewal => Some(WorkEnd::Failed(DrainError::LockLost {
            node: plan.node.clone(),
            holder: lost.ok().and_then(|l| l.holder),
        })),
        () = node_deleted(client, &plan.node) => Some(WorkEnd::Stopped(Stopped::NodeDeleted)),
    };
    if matches!(ended, Some(WorkEnd::Failed(DrainError::LockLost { .. }))) {
        // Another run owns the node now: leave the lock and the migrations to it.
        renewal.abort();
        return Err(match ended {
            Some(WorkEnd::Failed(e)) => e,
            _ => DrainError::Other("lost the lock".into()),
        });
    }
    renewal.abort();
    let _ = renewal.await;
    // A step that failed because the node went away: say so rather than name the failed call.
    let ended = match ended {
        Some(WorkEnd::Failed(e)) if node_is_gone(client, &plan.node).await => {
            tracing::debug!("the drain failed after its node was deleted: {e}");
            Some(WorkEnd::Stopped(Stopped::NodeDeleted))
        }
        other => other,
    };
    // No drain runs any more: free the node for a resuming run at once (a killed run's lock
    // expires instead).
    lease::release_if_held(&leases, &opts.lock_namespace, &plan.node, &opts.holder).await?;
    match ended {
        None => Ok(Outcome::Done(summary)),
        Some(WorkEnd::Failed(e)) => Err(e),
        Some(WorkEnd::Stopped(why)) => {
            summary.cancelled = cancel_unstarted(client, &plan.node).await?;
            summary.left_on_node = super::whereabouts::left_on_node(client, &plan.node)
                .await?
                .into_iter()
                .map(|line| with_scheduling_message(line, &summary))
                .collect();
            Ok(Outcome::Stopped(why, summary))
        }
    }
}

/// A line of [`Summary::left_on_node`] with why the VM is still there when the scheduler said
/// so: blocked (its migration cancelled), or its target pod still Pending.
fn with_scheduling_message(line: String, summary: &Summary) -> String {
    let id = line.split_once(" (").map_or(line.as_str(), |(id, _)| id);
    if let Some(b) = summary.blocked.iter().find(|b| b.vm == id) {
        return format!(
            "{id} (BLOCKED: its migration target pod stayed Pending for {} s and the migration was cancelled; the scheduler says: {})",
            b.waited_seconds, b.message
        );
    }
    match summary.scheduling_messages.get(id) {
        Some(message) => format!("{line} (the scheduler says of its target pod: {message})"),
        None => line,
    }
}

/// Resolves when `node` is deleted, or replaced by a new Node object of the same name; asks
/// every 2 s (a node is one object: a GET needs no more rights than the drain has).
async fn node_deleted(client: &Client, node: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut uid: Option<String> = None;
    loop {
        match nodes.get_opt(node).await {
            Ok(None) => return,
            Ok(Some(n)) => match (&uid, n.metadata.uid) {
                (None, now) => uid = now,
                (Some(first), Some(now)) if *first != now => return,
                _ => {}
            },
            // The API server does not answer: the other steps retry; ask again later.
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Whether `node` is known to be gone (an API error counts as not known).
async fn node_is_gone(client: &Client, node: &str) -> bool {
    let nodes: Api<Node> = Api::all(client.clone());
    matches!(
        retry::transient(&format!("reading node {node}"), || nodes.get_opt(node)).await,
        Ok(None)
    )
}

async fn work(
    client: &Client,
    plan: &DrainPlan,
    opts: &ExecOptions,
    reporter: &dyn Reporter,
    summary: &mut Summary,
) -> Result<(), WorkEnd> {
    let nodes: Api<Node> = Api::all(client.clone());
    set_unschedulable(&nodes, &plan.node, true).await?;
    reporter.event(&Event::Cordoned);
    stop_vms(client, plan, reporter, summary).await?;
    migrate(client, plan, opts, reporter, summary).await?;
    if opts.vms_only {
        wait_for_launchers(client, &plan.node, reporter).await?;
    } else {
        evict_rest(client, &plan.node, opts, reporter, summary).await?;
    }
    Ok(())
}
