//! `--uncordon`: under the node's lock, the node made schedulable again and the VMs the drain
//! halted given back their run strategy.

use std::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use vm_core::kubevirt::VirtualMachine;

use super::calls::api_error;
use super::node::{StoppedVm, record_stopped, set_unschedulable, stopped_vms};
use super::stop::{CONFLICT_PATIENCE, CONFLICT_PAUSE};
use super::{DrainError, lease, retry};

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
