//! Migration target pods the scheduler cannot place: what it says of them (with the taints
//! named), and the migrations cancelled, their VMs blocked, after the pending timeout.

use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use vm_core::kubevirt::VirtualMachineInstanceMigration;

use super::InFlight;
use crate::delete::delete_if_present;
use crate::drain::calls::{api_error, phase, split};
use crate::drain::pending::{self, TargetState};
use crate::drain::{BlockedVm, DrainError, Event, Reporter, Summary, retry};

/// Follows one event of the watch on migration target pods: what the scheduler says of the
/// target pod of a migration in flight (shown when it changes, kept in the summary), with the
/// taints named where the scheduler only counts them ([`pending::with_untolerated_taints`]).
/// A deleted pod changes nothing: KubeVirt deletes an unschedulable target pod when it fails
/// the try, and the VM's wait goes on into the next try (see [`PendingTargets`](pending::PendingTargets)).
pub(super) async fn target_pod_event(
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
pub(super) async fn block_expired(
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
