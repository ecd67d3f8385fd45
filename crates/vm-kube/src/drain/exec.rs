//! The steps of a drain and of `--uncordon`, against the API.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use vm_core::drain::{DrainPlan, VmAction, controller_kind, stays_on_node};
use vm_core::kubevirt::{VirtualMachine, VirtualMachineInstance, VirtualMachineInstanceMigration};

use super::node::{StoppedVm, record_stopped, set_unschedulable, stopped_vms};
use super::{DrainError, Event, ExecOptions, NODE_LABEL, Reporter, Stopped, Summary, lease};
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
    let renewal = lease::keep_renewed(leases, plan.node.clone(), opts.holder.clone());
    let mut summary = Summary::default();
    let ended = tokio::select! {
        r = work(client, plan, opts, reporter, &mut summary) => r.err(),
        s = stop => Some(WorkEnd::Stopped(s)),
    };
    renewal.abort();
    // No drain runs any more: free the node for a resuming run at once (a killed run's lock
    // expires instead).
    let leases: Api<Lease> = Api::namespaced(client.clone(), &opts.lock_namespace);
    lease::release(&leases, &opts.lock_namespace, &plan.node).await?;
    match ended {
        None => Ok(Outcome::Done(summary)),
        Some(WorkEnd::Failed(e)) => Err(e),
        Some(WorkEnd::Stopped(why)) => {
            summary.cancelled = cancel_unstarted(client, &plan.node).await?;
            summary.left_on_node = super::whereabouts::left_on_node(client, &plan.node).await?;
            Ok(Outcome::Stopped(why, summary))
        }
    }
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
        wait_empty(client, &plan.node, reporter, is_live_launcher).await?;
    } else {
        evict_rest(client, &plan.node, opts, reporter, summary).await?;
        wait_empty(client, &plan.node, reporter, |p| !stays_on_node(p)).await?;
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
        let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), &vm.namespace);
        let vmis: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), &vm.namespace);
        let owner = vms
            .get_opt(&vm.name)
            .await
            .map_err(|e| api_error(e, "get", "virtualmachines.kubevirt.io", &vm.namespace))?;
        // A re-run keeps the strategy recorded by the first run (the VM may be Halted by now).
        let recorded = record
            .iter()
            .find(|r| r.namespace == vm.namespace && r.name == vm.name)
            .cloned();
        let strategy = recorded.map_or_else(
            || {
                owner
                    .as_ref()
                    .and_then(|o| vm_core::effective::run_strategy(&o.spec).strategy())
                    .map(|s| s.to_string())
            },
            |r| r.run_strategy,
        );
        if !record
            .iter()
            .any(|r| r.namespace == vm.namespace && r.name == vm.name)
        {
            record.push(StoppedVm {
                namespace: vm.namespace.clone(),
                name: vm.name.clone(),
                run_strategy: strategy.clone(),
            });
            record_stopped(&nodes, &plan.node, &record).await?;
        }
        let id = format!("{}/{}", vm.namespace, vm.name);
        match (owner, strategy.as_deref()) {
            (Some(_), Some("Always")) | (None, _) => {
                let how = if strategy.is_some() {
                    "deleting its VMI; runStrategy Always starts it on another node"
                } else {
                    "deleting the standalone VMI; nothing recreates it"
                };
                reporter.event(&Event::Stopping {
                    vm: id.clone(),
                    how: how.into(),
                });
                delete_if_present(&vmis, &vm.name, &DeleteParams::default())
                    .await
                    .map_err(|e| {
                        api_error(e, "delete", "virtualmachineinstances.kubevirt.io", &vm.namespace)
                    })?;
            }
            (Some(_), _) => {
                reporter.event(&Event::Stopping {
                    vm: id.clone(),
                    how: "setting runStrategy Halted; --uncordon restores it".into(),
                });
                let patch = json!({"spec": {"runStrategy": "Halted", "running": null}});
                vms.patch(&vm.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| api_error(e, "patch", "virtualmachines.kubevirt.io", &vm.namespace))?;
            }
        }
        summary.stopped.push(id);
    }
    Ok(())
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
    let vmi = vmis
        .get_opt(name)
        .await
        .map_err(|e| api_error(e, "get", "virtualmachineinstances.kubevirt.io", ns))?;
    Ok(vmi
        .filter(vm_core::drain::vmi_is_active)
        .and_then(|v| v.status.and_then(|s| s.node_name)))
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
    let existing = all.list(&ListParams::default()).await.map_err(|e| {
        DrainError::Api(ApiError::from_kube(
            e,
            "list",
            "virtualmachineinstancemigrations.kubevirt.io",
            Scope::Cluster,
        ))
    })?;
    let mut active: BTreeMap<String, String> = BTreeMap::new(); // VMI id → VMIM name
    let mut attempts: BTreeMap<String, u32> = BTreeMap::new();
    for m in &existing.items {
        let ns = m.metadata.namespace.clone().unwrap_or_default();
        let id = format!("{ns}/{}", m.spec.vmi_name);
        if queue.contains(&id) && !is_final(phase(m)) {
            queue.retain(|q| q != &id);
            let name = m.metadata.name.clone().unwrap_or_default();
            attempts.insert(id.clone(), 1);
            reporter.event(&Event::MigrationStarted {
                vm: id.clone(),
                migration: name.clone(),
                attempt: 1,
            });
            active.insert(id, name);
        }
    }
    let selector = format!("{NODE_LABEL}={node}");
    let stream = watcher(all.clone(), watcher::Config::default().labels(&selector)).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut phases: BTreeMap<String, String> = BTreeMap::new();
    loop {
        while active.len() < slots
            && let Some(id) = queue.pop_front()
        {
            match vmi_node(client, &id).await? {
                Some(n) if n == node => {}
                Some(elsewhere) => {
                    reporter.event(&Event::Migrated {
                        vm: id.clone(),
                        node: elsewhere,
                    });
                    summary.migrated.push(id);
                    continue;
                }
                None => continue, // stopped meanwhile: nothing left to move
            }
            let attempt = attempts.entry(id.clone()).or_insert(0);
            *attempt += 1;
            let name = create_migration(client, &id, node).await?;
            reporter.event(&Event::MigrationStarted {
                vm: id.clone(),
                migration: name.clone(),
                attempt: *attempt,
            });
            active.insert(id, name);
        }
        if active.is_empty() && queue.is_empty() {
            return Ok(());
        }
        let Some(event) = stream.next().await else {
            return Err(DrainError::Other("the watch on migrations ended".into()).into());
        };
        let event = event.map_err(|e| DrainError::Other(format!("watching migrations: {e}")))?;
        let (object, deleted) = match event {
            watcher::Event::Apply(m) | watcher::Event::InitApply(m) => (m, false),
            watcher::Event::Delete(m) => (m, true),
            watcher::Event::Init | watcher::Event::InitDone => continue,
        };
        let name = object.metadata.name.clone().unwrap_or_default();
        let Some(id) = active.iter().find(|(_, n)| **n == name).map(|(id, _)| id.clone()) else {
            continue;
        };
        let now = if deleted && !is_final(phase(&object)) {
            "Deleted"
        } else {
            phase(&object)
        };
        if phases.get(&id).map(String::as_str) != Some(now) && !now.is_empty() {
            phases.insert(id.clone(), now.to_string());
            reporter.event(&Event::MigrationPhase {
                vm: id.clone(),
                phase: now.to_string(),
            });
        }
        match now {
            "Succeeded" => {
                active.remove(&id);
                let at = vmi_node(client, &id).await?.unwrap_or_else(|| "?".into());
                reporter.event(&Event::Migrated {
                    vm: id.clone(),
                    node: at,
                });
                summary.migrated.push(id);
            }
            "Failed" | "Deleted" => {
                active.remove(&id);
                let attempt = attempts.get(&id).copied().unwrap_or(1);
                let reason = if now == "Deleted" {
                    "the migration was deleted".to_string()
                } else {
                    failure_reason(&object)
                };
                reporter.event(&Event::MigrationFailed {
                    vm: id.clone(),
                    attempt,
                    reason: reason.clone(),
                });
                if attempt >= opts.max_attempts {
                    return Err(WorkEnd::Stopped(Stopped::MigrationKeptFailing { vm: id, reason }));
                }
                queue.push_back(id);
            }
            _ => {}
        }
    }
}

fn failure_reason(m: &VirtualMachineInstanceMigration) -> String {
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

async fn create_migration(client: &Client, id: &str, node: &str) -> Result<String, DrainError> {
    let (ns, name) = split(id);
    let api: Api<VirtualMachineInstanceMigration> = Api::namespaced(client.clone(), ns);
    let metadata = ObjectMeta {
        generate_name: Some(format!("vm-drain-safe-{name}-")),
        namespace: Some(ns.to_string()),
        labels: Some([(NODE_LABEL.to_string(), node.to_string())].into()),
        ..ObjectMeta::default()
    };
    let vmim = VirtualMachineInstanceMigration::new(metadata, name);
    let created = api
        .create(&PostParams::default(), &vmim)
        .await
        .map_err(|e| api_err_vmim(e, ns))?;
    Ok(created.metadata.name.unwrap_or_default())
}

fn api_err_vmim(e: kube::Error, ns: &str) -> DrainError {
    api_error(e, "create", "virtualmachineinstancemigrations.kubevirt.io", ns)
}

fn is_live_launcher(pod: &Pod) -> bool {
    controller_kind(pod) == Some("VirtualMachineInstance") && !vm_core::placement::pod_is_finished(pod)
}

async fn pods_on(client: &Client, node: &str) -> Result<Vec<Pod>, DrainError> {
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .map_err(|e| DrainError::Api(ApiError::from_kube(e, "list", "pods", Scope::Cluster)))?;
    Ok(list.items)
}

/// Evicts every pod that is not a DaemonSet or mirror pod, and not the live launcher pod of a
/// VMI that KubeVirt is still stopping; PDB refusals (429) are retried.
async fn evict_rest(
    client: &Client,
    node: &str,
    opts: &ExecOptions,
    reporter: &dyn Reporter,
    summary: &mut Summary,
) -> Result<(), DrainError> {
    loop {
        let pending: Vec<Pod> = pods_on(client, node)
            .await?
            .into_iter()
            .filter(|p| !stays_on_node(p) && !is_live_launcher(p) && p.metadata.deletion_timestamp.is_none())
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let mut refused = false;
        for pod in pending {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let id = format!("{ns}/{name}");
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            match api.evict(&name, &EvictParams::default()).await {
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

fn api_evict_err(e: kube::Error, ns: &str) -> DrainError {
    api_error(e, "create", "pods/eviction", ns)
}

/// Waits until no pod on the node is one that `must_leave` (for a drain: anything but
/// DaemonSet and mirror pods).
async fn wait_empty(
    client: &Client,
    node: &str,
    reporter: &dyn Reporter,
    must_leave: fn(&Pod) -> bool,
) -> Result<(), DrainError> {
    let mut last = String::new();
    loop {
        let left: Vec<String> = pods_on(client, node)
            .await?
            .iter()
            .filter(|p| must_leave(p))
            .map(|p| {
                format!(
                    "{}/{}",
                    p.metadata.namespace.as_deref().unwrap_or_default(),
                    p.metadata.name.as_deref().unwrap_or_default()
                )
            })
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        let what = format!("{} pod(s) still on the node: {}", left.len(), left.join(", "));
        if what != last {
            reporter.event(&Event::Waiting { what: what.clone() });
            last = what;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Deletes the migrations this drain created for `node` that have not been handed off yet;
/// returns the VMIs (`ns/name`) whose migration it cancelled.
async fn cancel_unstarted(client: &Client, node: &str) -> Result<Vec<String>, DrainError> {
    let all: Api<VirtualMachineInstanceMigration> = Api::all(client.clone());
    let ours = all
        .list(&ListParams::default().labels(&format!("{NODE_LABEL}={node}")))
        .await
        .map_err(|e| {
            DrainError::Api(ApiError::from_kube(
                e,
                "list",
                "virtualmachineinstancemigrations.kubevirt.io",
                Scope::Cluster,
            ))
        })?;
    let mut cancelled = Vec::new();
    for m in ours
        .items
        .iter()
        .filter(|m| matches!(phase(m), "" | "Pending" | "Scheduling"))
    {
        let ns = m.metadata.namespace.clone().unwrap_or_default();
        cancelled.push(format!("{ns}/{}", m.spec.vmi_name));
        let api: Api<VirtualMachineInstanceMigration> = Api::namespaced(client.clone(), &ns);
        let name = m.metadata.name.as_deref().unwrap_or_default();
        delete_if_present(&api, name, &DeleteParams::default())
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
}

/// Uncordons `node`, restores the run strategy of the VMs the drain stopped, and releases the lock.
///
/// # Errors
/// API errors, naming the call.
pub async fn uncordon(
    client: &Client,
    node: &str,
    lock_namespace: &str,
) -> Result<UncordonReport, DrainError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut report = UncordonReport::default();
    for vm in stopped_vms(&nodes, node).await? {
        let id = format!("{}/{}", vm.namespace, vm.name);
        let Some(strategy) = vm.run_strategy.as_deref() else {
            report.lost.push(id);
            continue;
        };
        if strategy == "Always" {
            report.already_running.push(id);
            continue;
        }
        let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), &vm.namespace);
        let patch = json!({"spec": {"runStrategy": strategy}});
        vms.patch(&vm.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| api_error(e, "patch", "virtualmachines.kubevirt.io", &vm.namespace))?;
        if strategy == "Manual" {
            // What `virtctl start` asks of a Manual VM.
            let start = json!({"status": {"stateChangeRequests": [{"action": "Start"}]}});
            vms.patch_status(&vm.name, &PatchParams::default(), &Patch::Merge(&start))
                .await
                .map_err(|e| api_error(e, "patch", "virtualmachines/status", &vm.namespace))?;
        }
        report.restarted.push(id);
    }
    set_unschedulable(&nodes, node, false).await?;
    record_stopped(&nodes, node, &[]).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), lock_namespace);
    lease::release(&leases, lock_namespace, node).await?;
    Ok(report)
}
