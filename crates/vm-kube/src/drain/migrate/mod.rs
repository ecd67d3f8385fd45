//! The migration loop of a drain: the VMIs the plan migrates, at most the cluster's limits at a
//! time, each migration adopted or started ([`start`]), followed by watch to its end, retried
//! when it fails; target pods the scheduler cannot place ([`targets`]) and migrations past
//! their timeout ([`cancel`]) stop new starts.

mod cancel;
mod start;
mod targets;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use vm_core::drain::{DrainPlan, VmAction};
use vm_core::kubevirt::VirtualMachineInstanceMigration;

pub(super) use cancel::cancel_unstarted;
use start::{Start, start_migration};

use super::calls::{WorkEnd, is_final, list_err_vmim, phase, vmi_node};
use super::pending::{self, PendingTargets};
use super::stuck::{self, Deadlines};
use super::{DrainError, Event, ExecOptions, Reporter, Stopped, Summary, retry};

/// The migrations in flight, by name, and the VMI (`ns/name`) each one moves.
struct InFlight {
    active: BTreeMap<String, String>, // VMI id → VMIM name
    attempts: BTreeMap<String, u32>,
    phases: BTreeMap<String, String>,
    /// Their target pods that the scheduler cannot place.
    targets: PendingTargets,
    /// When each must have succeeded (`--migration-timeout`).
    deadlines: Deadlines,
    /// The VMIs still to migrate, in order (a failed try goes to the back).
    queue: VecDeque<String>,
    /// Each VM's `--migration-timeout`, or its own annotation's.
    timeouts: BTreeMap<String, Option<Duration>>,
}

impl InFlight {
    /// Nothing in flight yet; the plan's migrations queued.
    fn new(plan: &DrainPlan, opts: &ExecOptions) -> Self {
        Self {
            active: BTreeMap::new(),
            attempts: BTreeMap::new(),
            phases: BTreeMap::new(),
            targets: PendingTargets::new(opts.pending_timeout),
            deadlines: Deadlines::default(),
            queue: plan
                .vms
                .iter()
                .filter(|v| v.action == VmAction::Migrate)
                .map(|v| format!("{}/{}", v.namespace, v.name))
                .collect(),
            timeouts: plan
                .vms
                .iter()
                .map(|v| {
                    (
                        format!("{}/{}", v.namespace, v.name),
                        stuck::timeout_for(opts.migration_timeout, v.migration_timeout_seconds),
                    )
                })
                .collect(),
        }
    }

    fn vmi_of(&self, migration: &str) -> Option<String> {
        self.active
            .iter()
            .find(|(_, n)| *n == migration)
            .map(|(id, _)| id.clone())
    }

    /// Follows `migration` of `id` from now, as its try number `attempt`.
    fn begin(&mut self, id: String, migration: String, attempt: u32, reporter: &dyn Reporter) {
        reporter.event(&Event::MigrationStarted {
            vm: id.clone(),
            migration: migration.clone(),
            attempt,
        });
        let timeout = self.timeouts.get(&id).copied().flatten();
        self.deadlines.start(&id, Instant::now(), timeout);
        self.active.insert(id, migration);
    }

    /// The next moment a target pod's wait or a migration's timeout runs out.
    fn next_deadline(&self) -> Option<Instant> {
        [self.targets.next_deadline(), self.deadlines.next()]
            .into_iter()
            .flatten()
            .min()
    }
}

/// How the watches are doing: whether each is failing (said once), and during a re-list of the
/// watch on migrations, the migrations in flight when it began and those the list has shown so
/// far.
#[derive(Default)]
struct Watches {
    migrations_failing: bool,
    pods_failing: bool,
    relisted: Option<(BTreeSet<String>, BTreeSet<String>)>,
}

/// Migrates every VMI the plan migrates, at most `slots` at a time, retrying failures.
pub(super) async fn migrate(
    client: &Client,
    plan: &DrainPlan,
    opts: &ExecOptions,
    reporter: &dyn Reporter,
    summary: &mut Summary,
) -> Result<(), WorkEnd> {
    let mut flight = InFlight::new(plan, opts);
    if flight.queue.is_empty() {
        return Ok(());
    }
    let all: Api<VirtualMachineInstanceMigration> = Api::all(client.clone());
    adopt_in_flight(&all, &mut flight, reporter).await?;
    // Every migration, not only this drain's: an adopted one may be anyone's.
    let stream = watcher(all.clone(), watcher::Config::default()).backoff(retry::Backoff::default());
    let mut stream = std::pin::pin!(stream);
    // The migration target pods (KubeVirt labels them with their migration's UID), for what the
    // scheduler says of those it cannot place.
    let pods: Api<Pod> = Api::all(client.clone());
    let targets = watcher(
        pods,
        watcher::Config::default().labels(pending::MIGRATION_JOB_LABEL),
    )
    .backoff(retry::Backoff::default());
    let mut targets = std::pin::pin!(targets);
    let mut watches = Watches::default();
    loop {
        // Once a VM is blocked, or stuck and not stopped, the plan no longer holds: the
        // migrations in flight finish, no other starts (starting one changes neither).
        let held = !summary.blocked.is_empty() || summary.stuck.iter().any(|s| !s.stopped);
        if !held {
            start_next(client, plan, opts, reporter, &mut flight, summary).await?;
        }
        if flight.active.is_empty() && (flight.queue.is_empty() || held) {
            return finished(summary, held);
        }
        let deadline = flight.next_deadline();
        tokio::select! {
            event = stream.next() => {
                let Some(event) = event else {
                    return Err(DrainError::Other("the watch on migrations ended".into()).into());
                };
                on_migration_event(client, event, opts, reporter, &mut flight, summary, &mut watches).await?;
            }
            pod = targets.next() => {
                let Some(pod) = pod else {
                    return Err(DrainError::Other("the watch on migration target pods ended".into()).into());
                };
                on_target_pod(client, pod, &mut flight, reporter, summary, &mut watches).await;
            }
            () = sleep_until(deadline) => {
                targets::block_expired(client, &mut flight, reporter, summary).await?;
                cancel::cancel_stuck(client, plan, opts, &mut flight, reporter, summary).await?;
            }
        }
    }
}

/// How many migrations may run at once: the cluster's limit and the per-node one.
fn slots(plan: &DrainPlan) -> usize {
    plan.limits
        .parallel_migrations_per_cluster
        .min(plan.limits.parallel_outbound_migrations_per_node)
        .max(1) as usize
}

/// Adopts what a previous run (or anyone) has in flight for the queued VMIs: never a second one.
async fn adopt_in_flight(
    all: &Api<VirtualMachineInstanceMigration>,
    flight: &mut InFlight,
    reporter: &dyn Reporter,
) -> Result<(), DrainError> {
    let everything = ListParams::default();
    let existing = retry::transient("listing migrations", || all.list(&everything))
        .await
        .map_err(list_err_vmim)?;
    for m in &existing.items {
        let ns = m.metadata.namespace.clone().unwrap_or_default();
        let id = format!("{ns}/{}", m.spec.vmi_name);
        if flight.queue.contains(&id) && !is_final(phase(m)) {
            flight.queue.retain(|q| q != &id);
            let name = m.metadata.name.clone().unwrap_or_default();
            flight.attempts.insert(id.clone(), 1);
            flight.begin(id, name, 1, reporter);
        }
    }
    Ok(())
}

/// Starts migrations from the queue while slots are free; a VMI that left the node meanwhile
/// is reported and skipped.
async fn start_next(
    client: &Client,
    plan: &DrainPlan,
    opts: &ExecOptions,
    reporter: &dyn Reporter,
    flight: &mut InFlight,
    summary: &mut Summary,
) -> Result<(), DrainError> {
    let slots = slots(plan);
    while flight.active.len() < slots
        && let Some(id) = flight.queue.pop_front()
    {
        let started = match start_migration(client, &id, &plan.node, opts).await? {
            Start::Gone(why) => {
                reporter.event(&Event::AlreadyGone {
                    vm: id.clone(),
                    why: why.clone(),
                });
                summary.already_gone.push(format!("{id} ({why})"));
                continue;
            }
            Start::Created(name, steered) => {
                if !steered {
                    summary.unsteered.push(id.clone());
                }
                name
            }
            Start::Adopted(name) => name,
        };
        let attempt = flight.attempts.entry(id.clone()).or_insert(0);
        *attempt += 1;
        let attempt = *attempt;
        flight.begin(id, started, attempt, reporter);
    }
    Ok(())
}

/// The end of the loop once nothing is in flight: done, or stopped because a VM is blocked or
/// stuck (`held`).
fn finished(summary: &Summary, held: bool) -> Result<(), WorkEnd> {
    if !summary.blocked.is_empty() {
        return Err(WorkEnd::Stopped(Stopped::Blocked(summary.blocked.clone())));
    }
    if held {
        return Err(WorkEnd::Stopped(Stopped::Stuck(summary.stuck.clone())));
    }
    Ok(())
}

/// Follows one event of the watch on migrations.
async fn on_migration_event(
    client: &Client,
    event: Result<watcher::Event<VirtualMachineInstanceMigration>, watcher::Error>,
    opts: &ExecOptions,
    reporter: &dyn Reporter,
    flight: &mut InFlight,
    summary: &mut Summary,
    watches: &mut Watches,
) -> Result<(), WorkEnd> {
    let event = match event {
        Ok(event) => {
            if watches.migrations_failing {
                tracing::warn!("the watch on migrations resumed");
                watches.migrations_failing = false;
            }
            event
        }
        // kube-runtime's watcher resumes by itself (with backoff): say so once and wait.
        Err(e) => {
            if !watches.migrations_failing {
                tracing::warn!(
                    "watching migrations: {}; the watch resumes when the API server answers",
                    crate::error::chain(&e)
                );
                watches.migrations_failing = true;
            }
            return Ok(());
        }
    };
    let (object, deleted) = match event {
        watcher::Event::Apply(m) => (m, false),
        watcher::Event::InitApply(m) => {
            if let Some((_, seen)) = watches.relisted.as_mut() {
                seen.insert(m.metadata.name.clone().unwrap_or_default());
            }
            (m, false)
        }
        watcher::Event::Delete(m) => (m, true),
        watcher::Event::Init => {
            let before: BTreeSet<String> = flight.active.values().cloned().collect();
            watches.relisted = Some((before, BTreeSet::new()));
            return Ok(());
        }
        watcher::Event::InitDone => {
            return relist_done(opts, reporter, flight, watches);
        }
    };
    let name = object.metadata.name.clone().unwrap_or_default();
    let Some(id) = flight.vmi_of(&name) else {
        return Ok(());
    };
    let now = if deleted && !is_final(phase(&object)) {
        "Deleted"
    } else {
        phase(&object)
    };
    if now == "Succeeded" {
        succeeded(client, id, reporter, flight, summary).await?;
        Ok(())
    } else {
        migration_ended(&id, now, Some(&object), opts, reporter, flight)
    }
}

/// The end of a re-list of the watch on migrations.
///
/// A migration missing from a complete list was deleted while the watch was down (the watcher
/// lists again when it lost track, e.g. across an API server restart): no Delete event will
/// come for it. Only the migrations in flight when the re-list began can be judged by it: one
/// this run created meanwhile (the next VM, started as an earlier one succeeded in the list)
/// may be newer than the list, and is followed by the watch from here on.
fn relist_done(
    opts: &ExecOptions,
    reporter: &dyn Reporter,
    flight: &mut InFlight,
    watches: &mut Watches,
) -> Result<(), WorkEnd> {
    let (before, seen) = watches.relisted.take().unwrap_or_default();
    let vanished: Vec<String> = flight
        .active
        .iter()
        .filter(|(_, name)| before.contains(*name) && !seen.contains(*name))
        .map(|(id, _)| id.clone())
        .collect();
    for id in vanished {
        migration_ended(&id, "Deleted", None, opts, reporter, flight)?;
    }
    Ok(())
}

/// The migration of `id` succeeded: it leaves the flight, and where the VMI runs now is said.
async fn succeeded(
    client: &Client,
    id: String,
    reporter: &dyn Reporter,
    flight: &mut InFlight,
    summary: &mut Summary,
) -> Result<(), DrainError> {
    flight.active.remove(&id);
    flight.deadlines.end(&id);
    flight.targets.done(&id);
    summary.scheduling_messages.remove(&id);
    note_phase(&id, "Succeeded", reporter, flight);
    let at = vmi_node(client, &id).await?.unwrap_or_else(|| "?".into());
    reporter.event(&Event::Migrated {
        vm: id.clone(),
        node: at,
    });
    summary.migrated.push(id);
    Ok(())
}

/// Follows one event of the watch on migration target pods (an error is said once; the watch
/// resumes by itself).
async fn on_target_pod(
    client: &Client,
    pod: Result<watcher::Event<Pod>, watcher::Error>,
    flight: &mut InFlight,
    reporter: &dyn Reporter,
    summary: &mut Summary,
    watches: &mut Watches,
) {
    match pod {
        Ok(pod) => {
            if watches.pods_failing {
                tracing::warn!("the watch on migration target pods resumed");
                watches.pods_failing = false;
            }
            targets::target_pod_event(client, pod, flight, reporter, summary).await;
        }
        Err(e) => {
            if !watches.pods_failing {
                tracing::warn!(
                    "watching migration target pods: {}; the watch resumes when the API server answers",
                    crate::error::chain(&e)
                );
                watches.pods_failing = true;
            }
        }
    }
}

/// Sleeps until `deadline`; never resolves without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Reports a new phase of the migration of `id`, once.
fn note_phase(id: &str, now: &str, reporter: &dyn Reporter, flight: &mut InFlight) {
    if flight.phases.get(id).map(String::as_str) != Some(now) && !now.is_empty() {
        flight.phases.insert(id.to_string(), now.to_string());
        reporter.event(&Event::MigrationPhase {
            vm: id.to_string(),
            phase: now.to_string(),
        });
    }
}

/// Follows a phase of the migration of `id` other than Succeeded: a failed or deleted
/// migration is a failed try, queued again until `max_attempts`.
fn migration_ended(
    id: &str,
    now: &str,
    object: Option<&VirtualMachineInstanceMigration>,
    opts: &ExecOptions,
    reporter: &dyn Reporter,
    flight: &mut InFlight,
) -> Result<(), WorkEnd> {
    note_phase(id, now, reporter, flight);
    if !matches!(now, "Failed" | "Deleted") {
        return Ok(());
    }
    flight.deadlines.end(id);
    let scheduler = flight.active.remove(id).and_then(|name| {
        let message = flight.targets.last_message(&name).map(str::to_string);
        flight.targets.forget(&name);
        message
    });
    let attempt = flight.attempts.get(id).copied().unwrap_or(1);
    let reason = match object {
        Some(m) if now == "Failed" => failure_reason(m),
        _ => "the migration was deleted by someone else".to_string(),
    };
    // KubeVirt fails a migration whose target pod stayed unschedulable (after 300 s): say why
    // the scheduler could not place it.
    let reason = match scheduler {
        Some(message) => format!("{reason}; the scheduler's last message about its target pod: {message}"),
        None => reason,
    };
    reporter.event(&Event::MigrationFailed {
        vm: id.to_string(),
        attempt,
        reason: reason.clone(),
    });
    if attempt >= opts.max_attempts {
        return Err(WorkEnd::Stopped(Stopped::MigrationKeptFailing {
            vm: id.to_string(),
            reason,
        }));
    }
    flight.queue.push_back(id.to_string());
    Ok(())
}

fn failure_reason(m: &VirtualMachineInstanceMigration) -> String {
    if m.metadata.deletion_timestamp.is_some() {
        // Only a stopped run deletes migrations, and only unstarted ones: someone else did.
        return "the migration was deleted by someone else (KubeVirt aborted it)".into();
    }
    m.status
        .as_ref()
        .and_then(|s| s.migration_state.as_ref())
        .and_then(|st| st.get("failureReason"))
        .and_then(|r| r.as_str())
        .map_or_else(
            || "KubeVirt reported the migration Failed".to_string(),
            str::to_string,
        )
}
