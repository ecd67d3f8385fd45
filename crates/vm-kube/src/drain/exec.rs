//! The steps of a drain and of `--uncordon`, against the API.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use vm_core::drain::{DrainPlan, VmAction, VmPlan, controller_kind, stays_on_node};
use vm_core::kubevirt::{VirtualMachine, VirtualMachineInstance, VirtualMachineInstanceMigration};

use super::node::{StoppedVm, record_stopped, set_unschedulable, stopped_vms};
use super::pending::{self, PendingTargets, TargetState};
use super::stuck::{self, Deadlines, StuckVm};
use super::{
    BlockedVm, DrainError, Event, ExecOptions, NODE_LABEL, Reporter, Stopped, Summary, lease, retry,
};
use crate::delete::delete_if_present;
use crate::error::{ApiError, Scope};

/// How [`execute`] ended.
#[derive(Debug)]
pub enum Outcome {
    /// The node holds only DaemonSet pods and no VMI.
    Done(Summary),
    /// Stopped part-way; the node stays cordoned and a re-run resumes.
    Stopped(Stopped, Summary),
}

enum WorkEnd {
    Stopped(Stopped),
    Failed(DrainError),
}

impl From<DrainError> for WorkEnd {
    fn from(e: DrainError) -> Self {
        Self::Failed(e)
    }
}

fn api_error(e: kube::Error, verb: &'static str, resource: &str, ns: &str) -> DrainError {
    DrainError::Api(ApiError::from_kube(
        e,
        verb,
        resource,
        Scope::Namespace(ns.to_string()),
    ))
}

fn split(id: &str) -> (&str, &str) {
    id.split_once('/').unwrap_or(("default", id))
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

/// Stops the VMs the plan shuts down, after recording them on the node.
async fn stop_vms(
    client: &Client,
    plan: &DrainPlan,
    reporter: &dyn Reporter,
    summary: &mut Summary,
) -> Result<(), DrainError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut record = stopped_vms(&nodes, &plan.node).await?;
    for vm in plan.vms.iter().filter(|v| v.action == VmAction::Shutdown) {
        stop_vm(client, &nodes, &plan.node, vm, &mut record, reporter).await?;
        summary.stopped.push(format!("{}/{}", vm.namespace, vm.name));
    }
    Ok(())
}

/// How long a write to a VM that someone else keeps editing (409 Conflict) is tried again, each
/// time on a fresh read.
const CONFLICT_PATIENCE: Duration = Duration::from_secs(30);
const CONFLICT_PAUSE: Duration = Duration::from_millis(20);

/// Stops one VM: records it on the node (with the run strategy to restore), then deletes its
/// VMI (runStrategy Always, or a standalone VMI) or sets runStrategy Halted. The patch carries
/// the resourceVersion the decision was made on: a VM edited by someone else meanwhile (409)
/// is read again and the decision made again, so the record never holds a stale strategy.
async fn stop_vm(
    client: &Client,
    nodes: &Api<Node>,
    node: &str,
    vm: &VmPlan,
    record: &mut Vec<StoppedVm>,
    reporter: &dyn Reporter,
) -> Result<(), DrainError> {
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), &vm.namespace);
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), &vm.namespace);
    let id = format!("{}/{}", vm.namespace, vm.name);
    let mut reported = false;
    let started = Instant::now();
    while started.elapsed() < CONFLICT_PATIENCE {
        let owner = retry::transient(&format!("reading VM {id}"), || vms.get_opt(&vm.name))
            .await
            .map_err(|e| api_error(e, "get", "virtualmachines.kubevirt.io", &vm.namespace))?;
        let current = owner
            .as_ref()
            .and_then(|o| vm_core::effective::run_strategy(&o.spec).strategy())
            .map(|s| s.to_string());
        let recorded = record
            .iter()
            .position(|r| r.namespace == vm.namespace && r.name == vm.name);
        // The strategy to restore: the VM's own, unless this drain already halted it (a re-run).
        let strategy = match (recorded, current.as_deref()) {
            (Some(i), Some("Halted") | None) => record[i].run_strategy.clone(),
            (_, _) => current.clone(),
        };
        let entry = StoppedVm {
            namespace: vm.namespace.clone(),
            name: vm.name.clone(),
            run_strategy: strategy.clone(),
        };
        match recorded {
            Some(i) if record[i] == entry => {}
            Some(i) => {
                record[i] = entry;
                record_stopped(nodes, node, record).await?;
            }
            None => {
                record.push(entry);
                record_stopped(nodes, node, record).await?;
            }
        }
        let Some(owner) = owner.filter(|_| strategy.as_deref() != Some("Always")) else {
            let how = if strategy.is_some() {
                "deleting its VMI; runStrategy Always starts it on another node"
            } else {
                "deleting the standalone VMI; nothing recreates it"
            };
            reporter.event(&Event::Stopping {
                vm: id.clone(),
                how: how.into(),
            });
            let params = DeleteParams::default();
            retry::transient(&format!("deleting VMI {id}"), || {
                delete_if_present(&vmis, &vm.name, &params)
            })
            .await
            .map_err(|e| api_error(e, "delete", "virtualmachineinstances.kubevirt.io", &vm.namespace))?;
            return Ok(());
        };
        if !reported {
            reporter.event(&Event::Stopping {
                vm: id.clone(),
                how: "setting runStrategy Halted; --uncordon restores it".into(),
            });
            reported = true;
        }
        if current.as_deref() == Some("Halted") {
            return Ok(());
        }
        let patch = json!({
            "metadata": {"resourceVersion": owner.metadata.resource_version},
            "spec": {"runStrategy": "Halted", "running": null},
        });
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        match retry::transient(&format!("halting VM {id}"), || {
            vms.patch(&vm.name, &params, &patch)
        })
        .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tracing::info!("VM {id} was changed by someone else meanwhile; reading it again");
                tokio::time::sleep(CONFLICT_PAUSE).await;
            }
            Err(e) => {
                return Err(api_error(
                    e,
                    "patch",
                    "virtualmachines.kubevirt.io",
                    &vm.namespace,
                ));
            }
        }
    }
    Err(DrainError::Other(format!(
        "VM {id} kept changing while the drain tried to stop it (conflicts for {} s); nothing else was stopped. Run the same command again",
        CONFLICT_PATIENCE.as_secs()
    )))
}

fn phase(m: &VirtualMachineInstanceMigration) -> &str {
    m.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn is_final(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed")
}

/// Where a VMI runs now, if it is active.
async fn vmi_node(client: &Client, id: &str) -> Result<Option<String>, DrainError> {
    let (ns, name) = split(id);
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), ns);
    let vmi = retry::transient(&format!("reading VMI {id}"), || vmis.get_opt(name))
        .await
        .map_err(|e| api_error(e, "get", "virtualmachineinstances.kubevirt.io", ns))?;
    Ok(vmi
        .filter(|v| vm_core::drain::vmi_is_active(v) && v.metadata.deletion_timestamp.is_none())
        .and_then(|v| v.status.and_then(|s| s.node_name)))
}

fn list_err_vmim(e: kube::Error) -> DrainError {
    DrainError::Api(ApiError::from_kube(
        e,
        "list",
        "virtualmachineinstancemigrations.kubevirt.io",
        Scope::Cluster,
    ))
}

/// The migrations in flight, by name, and the VMI (`ns/name`) each one moves.
struct InFlight {
    active: BTreeMap<String, String>, // VMI id → VMIM name
    attempts: BTreeMap<String, u32>,
    phases: BTreeMap<String, String>,
    /// Their target pods that the scheduler cannot place.
    targets: PendingTargets,
    /// When each must have succeeded (`--migration-timeout`).
    deadlines: Deadlines,
}

impl InFlight {
    fn vmi_of(&self, migration: &str) -> Option<String> {
        self.active
            .iter()
            .find(|(_, n)| *n == migration)
            .map(|(id, _)| id.clone())
    }
}

/// Migrates every VMI the plan migrates, at most `slots` at a time, retrying failures.
async fn migrate(
    client: &Client,
    plan: &DrainPlan,
    opts: &ExecOptions,
    reporter: &dyn Reporter,
    summary: &mut Summary,
) -> Result<(), WorkEnd> {
    let node = plan.node.as_str();
    let slots = plan
        .limits
        .parallel_migrations_per_cluster
        .min(plan.limits.parallel_outbound_migrations_per_node)
        .max(1) as usize;
    let mut queue: VecDeque<String> = plan
        .vms
        .iter()
        .filter(|v| v.action == VmAction::Migrate)
        .map(|v| format!("{}/{}", v.namespace, v.name))
        .collect();
    if queue.is_empty() {
        return Ok(());
    }
    let all: Api<VirtualMachineInstanceMigration> = Api::all(client.clone());
    // Adopt what a previous run (or anyone) has in flight for these VMIs: never a second one.
    let everything = ListParams::default();
    let existing = retry::transient("listing migrations", || all.list(&everything))
        .await
        .map_err(list_err_vmim)?;
    let mut flight = InFlight {
        active: BTreeMap::new(),
        attempts: BTreeMap::new(),
        phases: BTreeMap::new(),
        targets: PendingTargets::new(opts.pending_timeout),
        deadlines: Deadlines::default(),
    };
    let timeouts: BTreeMap<String, Option<Duration>> = plan
        .vms
        .iter()
        .map(|v| {
            (
                format!("{}/{}", v.namespace, v.name),
                stuck::timeout_for(opts.migration_timeout, v.migration_timeout_seconds),
            )
        })
        .collect();
    let timeout_of = |id: &str| timeouts.get(id).copied().flatten();
    for m in &existing.items {
        let ns = m.metadata.namespace.clone().unwrap_or_default();
        let id = format!("{ns}/{}", m.spec.vmi_name);
        if queue.contains(&id) && !is_final(phase(m)) {
            queue.retain(|q| q != &id);
            let name = m.metadata.name.clone().unwrap_or_default();
            flight.attempts.insert(id.clone(), 1);
            reporter.event(&Event::MigrationStarted {
                vm: id.clone(),
                migration: name.clone(),
                attempt: 1,
            });
            flight.deadlines.start(&id, Instant::now(), timeout_of(&id));
            flight.active.insert(id, name);
        }
    }
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
    let mut pod_watch_failing = false;
    // During a re-list of the watch: the migrations in flight when it began, and those the list
    // has shown so far.
    let mut relisted: Option<(BTreeSet<String>, BTreeSet<String>)> = None;
    let mut watch_failing = false;
    loop {
        // Once a VM is blocked, or stuck and not stopped, the plan no longer holds: the
        // migrations in flight finish, no other starts (starting one changes neither).
        let held = !summary.blocked.is_empty() || summary.stuck.iter().any(|s| !s.stopped);
        while !held
            && flight.active.len() < slots
            && let Some(id) = queue.pop_front()
        {
            let started = match start_migration(client, &id, node, opts).await? {
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
            reporter.event(&Event::MigrationStarted {
                vm: id.clone(),
                migration: started.clone(),
                attempt: *attempt,
            });
            flight.deadlines.start(&id, Instant::now(), timeout_of(&id));
            flight.active.insert(id, started);
        }
        if flight.active.is_empty() && (queue.is_empty() || held) {
            if !summary.blocked.is_empty() {
                return Err(WorkEnd::Stopped(Stopped::Blocked(summary.blocked.clone())));
            }
            if held {
                return Err(WorkEnd::Stopped(Stopped::Stuck(summary.stuck.clone())));
            }
            return Ok(());
        }
        let deadline = [flight.targets.next_deadline(), flight.deadlines.next()]
            .into_iter()
            .flatten()
            .min();
        let event = tokio::select! {
            event = stream.next() => event,
            pod = targets.next() => {
                let Some(pod) = pod else {
                    return Err(DrainError::Other("the watch on migration target pods ended".into()).into());
                };
                match pod {
                    Ok(pod) => {
                        if pod_watch_failing {
                            tracing::warn!("the watch on migration target pods resumed");
                            pod_watch_failing = false;
                        }
                        target_pod_event(client, pod, &mut flight, reporter, summary).await;
                    }
                    Err(e) => {
                        if !pod_watch_failing {
                            tracing::warn!(
                                "watching migration target pods: {}; the watch resumes when the API server answers",
                                crate::error::chain(&e)
                            );
                            pod_watch_failing = true;
                        }
                    }
                }
                continue;
            }
            () = sleep_until(deadline) => {
                block_expired(client, &mut flight, reporter, summary).await?;
                cancel_stuck(client, plan, opts, &mut flight, reporter, summary).await?;
                continue;
            }
        };
        let Some(event) = event else {
            return Err(DrainError::Other("the watch on migrations ended".into()).into());
        };
        let event = match event {
            Ok(event) => {
                if watch_failing {
                    tracing::warn!("the watch on migrations resumed");
                    watch_failing = false;
                }
                event
            }
            // kube-runtime's watcher resumes by itself (with backoff): say so once and wait.
            Err(e) => {
                if !watch_failing {
                    tracing::warn!(
                        "watching migrations: {}; the watch resumes when the API server answers",
                        crate::error::chain(&e)
                    );
                    watch_failing = true;
                }
                continue;
            }
        };
        let (object, deleted) = match event {
            watcher::Event::Apply(m) => (m, false),
            watcher::Event::InitApply(m) => {
                if let Some((_, seen)) = relisted.as_mut() {
                    seen.insert(m.metadata.name.clone().unwrap_or_default());
                }
                (m, false)
            }
            watcher::Event::Delete(m) => (m, true),
            watcher::Event::Init => {
                let before: BTreeSet<String> = flight.active.values().cloned().collect();
                relisted = Some((before, BTreeSet::new()));
                continue;
            }
            watcher::Event::InitDone => {
                // A migration missing from a complete list was deleted while the watch was
                // down (the watcher lists again when it lost track, e.g. across an API server
                // restart): no Delete event will come for it. Only the migrations in flight
                // when the re-list began can be judged by it: one this run created meanwhile
                // (the next VM, started as an earlier one succeeded in the list) may be newer
                // than the list, and is followed by the watch from here on.
                let (before, seen) = relisted.take().unwrap_or_default();
                let vanished: Vec<String> = flight
                    .active
                    .iter()
                    .filter(|(_, name)| before.contains(*name) && !seen.contains(*name))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in vanished {
                    migration_ended(&id, "Deleted", None, opts, reporter, &mut flight, &mut queue)?;
                }
                continue;
            }
        };
        let name = object.metadata.name.clone().unwrap_or_default();
        let Some(id) = flight.vmi_of(&name) else {
            continue;
        };
        let now = if deleted && !is_final(phase(&object)) {
            "Deleted"
        } else {
            phase(&object)
        };
        if now == "Succeeded" {
            flight.active.remove(&id);
            flight.deadlines.end(&id);
            flight.targets.done(&id);
            summary.scheduling_messages.remove(&id);
            note_phase(&id, now, reporter, &mut flight);
            let at = vmi_node(client, &id).await?.unwrap_or_else(|| "?".into());
            reporter.event(&Event::Migrated {
                vm: id.clone(),
                node: at,
            });
            summary.migrated.push(id);
        } else {
            migration_ended(&id, now, Some(&object), opts, reporter, &mut flight, &mut queue)?;
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

/// Follows one event of the watch on migration target pods: what the scheduler says of the
/// target pod of a migration in flight (shown when it changes, kept in the summary), with the
/// taints named where the scheduler only counts them ([`pending::with_untolerated_taints`]).
/// A deleted pod changes nothing: KubeVirt deletes an unschedulable target pod when it fails
/// the try, and the VM's wait goes on into the next try (see [`PendingTargets`]).
async fn target_pod_event(
    client: &Client,
    event: watcher::Event<Pod>,
    flight: &mut InFlight,
    reporter: &dyn Reporter,
    summary: &mut Summary,
) {
    let pod = match event {
        watcher::Event::Apply(p) | watcher::Event::InitApply(p) => p,
        watcher::Event::Delete(_) | watcher::Event::Init | watcher::Event::InitDone => return,
    };
    let Some((ns, migration)) = pending::migration_of(&pod) else {
        return;
    };
    let Some(id) = flight.vmi_of(&migration).filter(|id| split(id).0 == ns) else {
        return;
    };
    let state = match pending::target_state(&pod) {
        TargetState::Unschedulable(m) if pending::taints_unnamed(&m) => {
            TargetState::Unschedulable(name_taints(client, &m, &pod).await)
        }
        state => state,
    };
    if state == TargetState::Scheduled {
        summary.scheduling_messages.remove(&id);
    }
    if let Some(message) = flight.targets.observe(&migration, &id, state, Instant::now()) {
        summary.scheduling_messages.insert(id.clone(), message.clone());
        reporter.event(&Event::TargetPending { vm: id, message });
    }
}

/// `message` with the untolerated taints of the nodes named, read once; the scheduler's words
/// alone when the nodes cannot be read (no retry: the watch loop must not wait on it, and the
/// next change of the pod tries again).
async fn name_taints(client: &Client, message: &str, pod: &Pod) -> String {
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.list(&ListParams::default()).await {
        Ok(list) => pending::with_untolerated_taints(message, pod, &list.items),
        Err(e) => {
            tracing::warn!(
                "listing nodes to name the taints the scheduler left out: {}",
                crate::error::chain(&e)
            );
            message.to_string()
        }
    }
}

/// Cancels the migrations whose target pod stayed unschedulable for the pending timeout: each
/// is deleted (if it has not been handed off meanwhile), not retried, and its VM reported
/// blocked with the scheduler's message.
async fn block_expired(
    client: &Client,
    flight: &mut InFlight,
    reporter: &dyn Reporter,
    summary: &mut Summary,
) -> Result<(), DrainError> {
    for expired in flight.targets.expired(Instant::now()) {
        let Some(id) = flight.vmi_of(&expired.migration) else {
            flight.targets.forget(&expired.migration);
            continue;
        };
        let (ns, _) = split(&id);
        let api: Api<VirtualMachineInstanceMigration> = Api::namespaced(client.clone(), ns);
        let name = expired.migration.as_str();
        let by_name = ListParams::default().fields(&format!("metadata.name={name}"));
        let current = retry::transient(&format!("reading migration {ns}/{name}"), || api.list(&by_name))
            .await
            .map_err(|e| api_error(e, "list", "virtualmachineinstancemigrations.kubevirt.io", ns))?;
        if let Some(m) = current.items.first()
            && !matches!(phase(m), "" | "Pending" | "Scheduling")
        {
            // Its target pod was placed after all (the watch had not said so yet).
            flight
                .targets
                .observe(name, &id, TargetState::Scheduled, Instant::now());
            continue;
        }
        flight.active.remove(&id);
        flight.targets.done(&id);
        let params = DeleteParams::default();
        retry::transient(&format!("cancelling migration {ns}/{name}"), || {
            delete_if_present(&api, name, &params)
        })
        .await
        .map_err(|e| api_error(e, "delete", "virtualmachineinstancemigrations.kubevirt.io", ns))?;
        let waited_seconds = expired.waited.as_secs();
        reporter.event(&Event::MigrationBlocked {
            vm: id.clone(),
            message: expired.message.clone(),
            waited_seconds,
        });
        summary
            .scheduling_messages
            .insert(id.clone(), expired.message.clone());
        summary.blocked.push(BlockedVm {
            vm: id,
            message: expired.message,
            waited_seconds,
        });
    }
    Ok(())
}

/// Cancels the migrations past their `--migration-timeout`: each is deleted (KubeVirt aborts
/// it; the VM stays on its node) unless it succeeded meanwhile, and reported stuck with its
/// last phase and the scheduler's words; with `--on-stuck shutdown` its VM is then stopped as
/// `--shutdown-non-migratable` stops a VM.
async fn cancel_stuck(
    client: &Client,
    plan: &DrainPlan,
    opts: &ExecOptions,
    flight: &mut InFlight,
    reporter: &dyn Reporter,
    summary: &mut Summary,
) -> Result<(), DrainError> {
    for (id, ran) in flight.deadlines.expired(Instant::now()) {
        let Some(name) = flight.active.get(&id).cloned() else {
            continue;
        };
        let (ns, _) = split(&id);
        let api: Api<VirtualMachineInstanceMigration> = Api::namespaced(client.clone(), ns);
        let current = retry::transient(&format!("reading migration {ns}/{name}"), || api.get_opt(&name))
            .await
            .map_err(|e| api_error(e, "get", "virtualmachineinstancemigrations.kubevirt.io", ns))?;
        let last = current.as_ref().map(phase).unwrap_or_default().to_string();
        if last == "Succeeded" {
            // The watch has not said so yet; it will.
            continue;
        }
        let params = DeleteParams::default();
        retry::transient(&format!("cancelling migration {ns}/{name}"), || {
            delete_if_present(&api, &name, &params)
        })
        .await
        .map_err(|e| api_error(e, "delete", "virtualmachineinstancemigrations.kubevirt.io", ns))?;
        flight.active.remove(&id);
        let scheduler = flight
            .targets
            .last_message(&name)
            .map(str::to_string)
            .or_else(|| summary.scheduling_messages.get(&id).cloned());
        flight.targets.forget(&name);
        flight.targets.done(&id);
        let mut what = StuckVm {
            vm: id.clone(),
            phase: last,
            waited_seconds: ran.as_secs(),
            scheduler,
            stopped: false,
        };
        if opts.on_stuck_shutdown
            && let Some(vm) = plan
                .vms
                .iter()
                .find(|v| format!("{}/{}", v.namespace, v.name) == id)
        {
            let nodes: Api<Node> = Api::all(client.clone());
            let mut record = stopped_vms(&nodes, &plan.node).await?;
            stop_vm(client, &nodes, &plan.node, vm, &mut record, reporter).await?;
            summary.stopped.push(id.clone());
            what.stopped = true;
        }
        reporter.event(&Event::MigrationStuck { what: what.clone() });
        summary.stuck.push(what);
    }
    Ok(())
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
    queue: &mut VecDeque<String>,
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
    queue.push_back(id.to_string());
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

/// How the migration of a VMI started.
enum Start {
    /// This run created it; `false` when the API server dropped the `addedNodeSelector` the
    /// run asked for.
    Created(String, bool),
    /// One was in flight already (anyone's, or ours from a create whose answer was lost).
    Adopted(String),
    /// The VMI is no longer on the node: where it went.
    Gone(String),
}

/// Starts the migration of `id` off `node`: checks that the VMI is still there, adopts a
/// migration in flight for it, or creates one. Creating is not idempotent (`generateName`):
/// after a create that failed without an answer, the next try looks for the migration first.
async fn start_migration(
    client: &Client,
    id: &str,
    node: &str,
    opts: &ExecOptions,
) -> Result<Start, DrainError> {
    let (ns, name) = split(id);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &opts.lock_namespace);
    let api: Api<VirtualMachineInstanceMigration> = Api::namespaced(client.clone(), ns);
    let mut labels = opts.migration_labels.clone();
    labels.insert(NODE_LABEL.to_string(), node.to_string());
    let metadata = ObjectMeta {
        generate_name: Some(format!("vm-drain-safe-{name}-")),
        namespace: Some(ns.to_string()),
        labels: Some(labels),
        ..ObjectMeta::default()
    };
    let mut vmim = VirtualMachineInstanceMigration::new(metadata, name);
    vmim.spec
        .added_node_selector
        .clone_from(&opts.added_node_selector);
    let started = Instant::now();
    let mut backoff = retry::Backoff::default();
    let everything = ListParams::default();
    loop {
        match vmi_node(client, id).await? {
            Some(n) if n == node => {}
            Some(elsewhere) => {
                return Ok(Start::Gone(format!(
                    "already on {elsewhere}, moved by someone else"
                )));
            }
            None => {
                return Ok(Start::Gone(
                    "no longer running: stopped or deleted by someone else".into(),
                ));
            }
        }
        let listed = retry::transient(&format!("listing the migrations of {id}"), || {
            api.list(&everything)
        })
        .await
        .map_err(list_err_vmim)?;
        if let Some(m) = listed
            .items
            .iter()
            .find(|m| m.spec.vmi_name == name && !is_final(phase(m)))
        {
            return Ok(Start::Adopted(m.metadata.name.clone().unwrap_or_default()));
        }
        if !lease::held_by(&leases, &opts.lock_namespace, node, &opts.holder).await? {
            let lost = leases.get_opt(&lease::lease_name(node)).await.ok().flatten();
            return Err(DrainError::LockLost {
                node: node.to_string(),
                holder: lost.and_then(|l| l.spec).and_then(|s| s.holder_identity),
            });
        }
        match api.create(&PostParams::default(), &vmim).await {
            Ok(created) => {
                // A structural schema without the field prunes it: the KubeVirt of this
                // cluster does not steer, and the scheduler chooses among all nodes.
                let steered =
                    opts.added_node_selector.is_none() || created.spec.added_node_selector.is_some();
                return Ok(Start::Created(created.metadata.name.unwrap_or_default(), steered));
            }
            Err(e) if retry::is_transient(&e) && started.elapsed() < retry::PATIENCE => {
                tracing::warn!(
                    "creating the migration of {id}: {}; looking for it before trying again",
                    crate::error::chain(&e)
                );
                tokio::time::sleep(backoff.pause()).await;
            }
            Err(e) => return Err(api_err_vmim(e, ns)),
        }
    }
}

fn api_err_vmim(e: kube::Error, ns: &str) -> DrainError {
    api_error(e, "create", "virtualmachineinstancemigrations.kubevirt.io", ns)
}

fn is_live_launcher(pod: &Pod) -> bool {
    controller_kind(pod) == Some("VirtualMachineInstance") && !vm_core::placement::pod_is_finished(pod)
}

async fn pods_on(client: &Client, node: &str) -> Result<Vec<Pod>, DrainError> {
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let list = retry::transient(&format!("listing the pods of node {node}"), || {
        pods.list(&on_node)
    })
    .await
    .map_err(|e| DrainError::Api(ApiError::from_kube(e, "list", "pods", Scope::Cluster)))?;
    Ok(list.items)
}

/// Empties the node of every pod that is not a DaemonSet or mirror pod: evicts what may be
/// evicted, and waits for the rest. A launcher pod whose VMI is still handing over is left to
/// KubeVirt until it completes; then it is evicted like any other pod, so one that completes
/// after the others were evicted is not left behind. PDB refusals (429) are retried.
async fn evict_rest(
    client: &Client,
    node: &str,
    opts: &ExecOptions,
    reporter: &dyn Reporter,
    summary: &mut Summary,
) -> Result<(), DrainError> {
    let evict_params = EvictParams::default();
    let mut last_wait = String::new();
    loop {
        let must_leave: Vec<Pod> = pods_on(client, node)
            .await?
            .into_iter()
            .filter(|p| !stays_on_node(p))
            .collect();
        if must_leave.is_empty() {
            return Ok(());
        }
        let evictable: Vec<&Pod> = must_leave
            .iter()
            .filter(|p| !is_live_launcher(p) && p.metadata.deletion_timestamp.is_none())
            .collect();
        if evictable.is_empty() {
            let left: Vec<String> = must_leave.iter().map(pod_id).collect();
            report_waiting(reporter, &left, &mut last_wait);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let mut refused = false;
        for pod in evictable {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let id = pod_id(pod);
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let evicted = retry::retry_while(
                &format!("evicting pod {id}"),
                retry::is_transient_for_eviction,
                || api.evict(&name, &evict_params),
            )
            .await;
            match evicted {
                Ok(_) => {
                    reporter.event(&Event::Evicted { pod: id.clone() });
                    summary.evicted.push(id);
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(kube::Error::Api(s)) if s.code == 429 => {
                    refused = true;
                    reporter.event(&Event::EvictionRetry {
                        pod: id,
                        message: s.message.clone(),
                    });
                }
                Err(e) => return Err(api_evict_err(e, &ns)),
            }
        }
        if refused {
            tokio::time::sleep(opts.eviction_retry).await;
        }
    }
}

fn pod_id(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn api_evict_err(e: kube::Error, ns: &str) -> DrainError {
    api_error(e, "create", "pods/eviction", ns)
}

/// Waits until no live launcher pod is left on the node (`--vms-only`: other pods stay).
async fn wait_for_launchers(client: &Client, node: &str, reporter: &dyn Reporter) -> Result<(), DrainError> {
    let mut last = String::new();
    loop {
        let left: Vec<String> = pods_on(client, node)
            .await?
            .iter()
            .filter(|p| is_live_launcher(p))
            .map(pod_id)
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        report_waiting(reporter, &left, &mut last);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Says which pods the drain waits for, once for each change of that list.
fn report_waiting(reporter: &dyn Reporter, left: &[String], last: &mut String) {
    let what = format!("{} pod(s) still on the node: {}", left.len(), left.join(", "));
    if what != *last {
        reporter.event(&Event::Waiting { what: what.clone() });
        *last = what;
    }
}

/// Deletes the migrations this drain created for `node` that have not been handed off yet;
/// returns the VMIs (`ns/name`) whose migration it cancelled.
async fn cancel_unstarted(client: &Client, node: &str) -> Result<Vec<String>, DrainError> {
    let all: Api<VirtualMachineInstanceMigration> = Api::all(client.clone());
    let selector = ListParams::default().labels(&format!("{NODE_LABEL}={node}"));
    let ours = retry::transient("listing migrations", || all.list(&selector))
        .await
        .map_err(list_err_vmim)?;
    let mut cancelled = Vec::new();
    for m in ours
        .items
        .iter()
        .filter(|m| matches!(phase(m), "" | "Pending" | "Scheduling"))
        // One being deleted already (a blocked VM's, cancelled when it was blocked) is not
        // this stop's doing.
        .filter(|m| m.metadata.deletion_timestamp.is_none())
    {
        let ns = m.metadata.namespace.clone().unwrap_or_default();
        cancelled.push(format!("{ns}/{}", m.spec.vmi_name));
        let api: Api<VirtualMachineInstanceMigration> = Api::namespaced(client.clone(), &ns);
        let name = m.metadata.name.as_deref().unwrap_or_default();
        let params = DeleteParams::default();
        retry::transient(&format!("cancelling migration {ns}/{name}"), || {
            delete_if_present(&api, name, &params)
        })
        .await
        .map_err(|e| api_error(e, "delete", "virtualmachineinstancemigrations.kubevirt.io", &ns))?;
    }
    Ok(cancelled)
}

/// What `--uncordon` did.
#[derive(Debug, Default)]
pub struct UncordonReport {
    /// VMs given back their run strategy (they start again).
    pub restarted: Vec<String>,
    /// VMs that needed nothing (runStrategy Always restarted them already).
    pub already_running: Vec<String>,
    /// Standalone VMIs the drain deleted: nothing can recreate them.
    pub lost: Vec<String>,
    /// VMs someone else changed since the drain stopped them (`ns/name: what`): left as they are.
    pub changed_by_others: Vec<String>,
}

/// What became of one VM the drain had halted.
enum Restore {
    Restarted,
    ChangedByOthers(String),
}

/// Gives a VM the drain halted its run strategy back, if it is still Halted: the patch carries
/// the resourceVersion read, so an edit by someone else meanwhile (409) is read again, and a VM
/// whose strategy someone changed, or that was deleted, is left alone.
async fn restore_vm(client: &Client, vm: &StoppedVm, strategy: &str) -> Result<Restore, DrainError> {
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), &vm.namespace);
    let id = format!("{}/{}", vm.namespace, vm.name);
    let started = Instant::now();
    while started.elapsed() < CONFLICT_PATIENCE {
        let Some(current) = retry::transient(&format!("reading VM {id}"), || vms.get_opt(&vm.name))
            .await
            .map_err(|e| api_error(e, "get", "virtualmachines.kubevirt.io", &vm.namespace))?
        else {
            return Ok(Restore::ChangedByOthers("deleted since the drain".into()));
        };
        let now = vm_core::effective::run_strategy(&current.spec)
            .strategy()
            .map(|s| s.to_string());
        // Already given back, by a run that stopped before it could update the record: done
        // (a Manual VM may still wait for its start, which is not ours to guess).
        if now.as_deref() == Some(strategy) && strategy != "Manual" {
            return Ok(Restore::Restarted);
        }
        if now.as_deref() != Some("Halted") {
            return Ok(Restore::ChangedByOthers(format!(
                "runStrategy is {} since the drain, not Halted; left as it is",
                now.as_deref().unwrap_or("unset")
            )));
        }
        let patch = json!({
            "metadata": {"resourceVersion": current.metadata.resource_version},
            "spec": {"runStrategy": strategy},
        });
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        match retry::transient(&format!("restoring the runStrategy of VM {id}"), || {
            vms.patch(&vm.name, &params, &patch)
        })
        .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tokio::time::sleep(CONFLICT_PAUSE).await;
                continue;
            }
            Err(e) => {
                return Err(api_error(
                    e,
                    "patch",
                    "virtualmachines.kubevirt.io",
                    &vm.namespace,
                ));
            }
        }
        if strategy == "Manual" {
            // What `virtctl start` asks of a Manual VM.
            let start = json!({"status": {"stateChangeRequests": [{"action": "Start"}]}});
            let start = Patch::Merge(&start);
            retry::transient(&format!("starting VM {id}"), || {
                vms.patch_status(&vm.name, &params, &start)
            })
            .await
            .map_err(|e| api_error(e, "patch", "virtualmachines/status", &vm.namespace))?;
        }
        return Ok(Restore::Restarted);
    }
    Err(DrainError::Other(format!(
        "VM {id} kept changing while its runStrategy was restored (conflicts for {} s); run --uncordon again",
        CONFLICT_PATIENCE.as_secs()
    )))
}

/// Uncordons `node`, then restores the run strategy of the VMs the drain stopped (so that they
/// start again on it), and releases the lock. It takes the node's lock first, as `holder`: a
/// drain that still works on the node (its lock renewed) is never undone under it, and the
/// refusal names it; a drain that was stopped or killed left its lock behind, which is taken
/// over as a new drain would.
///
/// # Errors
/// [`DrainError::Locked`] while another run holds the node's lock; API errors, naming the call.
pub async fn uncordon(
    client: &Client,
    node: &str,
    lock_namespace: &str,
    holder: &str,
) -> Result<UncordonReport, DrainError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), lock_namespace);
    lease::acquire(&leases, lock_namespace, node, holder).await?;
    let result = restore_node(client, node).await;
    // Released whatever happened: a failed uncordon is run again, and must not find its own lock.
    lease::release_if_held(&leases, lock_namespace, node, holder).await?;
    result
}

/// The work of [`uncordon`], under the node's lock.
///
/// The node is uncordoned before any VM is restarted: a VM the drain stopped could not
/// migrate (local or ReadWriteOnce storage, host devices), so it belongs back on this node,
/// and restarted while the node is still cordoned the scheduler would place it elsewhere or
/// nowhere. Each VM leaves the record on the node only once it is dealt with, so a run that
/// fails midway (an API error, a VM that keeps changing) leaves the record of exactly the VMs
/// still to restart, and the same command finishes the job.
async fn restore_node(client: &Client, node: &str) -> Result<UncordonReport, DrainError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut report = UncordonReport::default();
    set_unschedulable(&nodes, node, false).await?;
    let mut left = stopped_vms(&nodes, node).await?;
    while let Some(vm) = left.first().cloned() {
        let id = format!("{}/{}", vm.namespace, vm.name);
        match vm.run_strategy.as_deref() {
            None => report.lost.push(id),
            Some("Always") => report.already_running.push(id),
            Some(strategy) => match restore_vm(client, &vm, strategy).await? {
                Restore::Restarted => report.restarted.push(id),
                Restore::ChangedByOthers(what) => {
                    report.changed_by_others.push(format!("{id}: {what}"));
                }
            },
        }
        left.remove(0);
        record_stopped(&nodes, node, &left).await?;
    }
    Ok(report)
}
