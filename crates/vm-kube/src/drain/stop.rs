//! Stopping the VMs a drain shuts down (`--shutdown-non-migratable`, `--on-stuck shutdown`):
//! each is recorded on the node first, then its VMI deleted or its runStrategy set to Halted.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use vm_core::drain::{DrainPlan, VmAction, VmPlan};
use vm_core::kubevirt::{VirtualMachine, VirtualMachineInstance};

use super::calls::api_error;
use super::node::{StoppedVm, record_stopped, stopped_vms};
use super::{DrainError, Event, Reporter, Summary, retry};
use crate::delete::delete_if_present;

/// Stops the VMs the plan shuts down, after recording them on the node.
pub(super) async fn stop_vms(
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
pub(super) const CONFLICT_PATIENCE: Duration = Duration::from_secs(30);
pub(super) const CONFLICT_PAUSE: Duration = Duration::from_millis(20);

/// Stops one VM: records it on the node (with the run strategy to restore), then deletes its
/// VMI (runStrategy Always, or a standalone VMI) or sets runStrategy Halted. The patch carries
/// the resourceVersion the decision was made on: a VM edited by someone else meanwhile (409)
/// is read again and the decision made again, so the record never holds a stale strategy.
pub(super) async fn stop_vm(
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
