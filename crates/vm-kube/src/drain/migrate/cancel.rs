//! Cancelling migrations: those past their `--migration-timeout` (the VM reported stuck, and
//! stopped with `--on-stuck shutdown`), and, when a run stops, those not handed off yet.

use std::time::Instant;

use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use vm_core::drain::DrainPlan;
use vm_core::kubevirt::VirtualMachineInstanceMigration;

use super::InFlight;
use crate::delete::delete_if_present;
use crate::drain::calls::{api_error, list_err_vmim, phase, split};
use crate::drain::node::stopped_vms;
use crate::drain::stop::stop_vm;
use crate::drain::stuck::StuckVm;
use crate::drain::{DrainError, Event, ExecOptions, NODE_LABEL, Reporter, Summary, retry};

/// Cancels the migrations past their `--migration-timeout`: each is deleted (KubeVirt aborts
/// it; the VM stays on its node) unless it succeeded meanwhile, and reported stuck with its
/// last phase and the scheduler's words; with `--on-stuck shutdown` its VM is then stopped as
/// `--shutdown-non-migratable` stops a VM.
pub(super) async fn cancel_stuck(
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

/// Deletes the migrations this drain created for `node` that have not been handed off yet;
/// returns the VMIs (`ns/name`) whose migration it cancelled.
pub(in crate::drain) async fn cancel_unstarted(
    client: &Client,
    node: &str,
) -> Result<Vec<String>, DrainError> {
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
