//! Following the VMs of a fenced node until each runs elsewhere, by watch (kube-runtime's
//! watcher with backoff, through a reflector store), and starting the ones the operator asked
//! for once their old VMI has finished.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use vm_core::drain::vmi_is_active;
use vm_core::kubevirt::{VirtualMachine, VirtualMachineInstance};
use vm_core::recover::{RecoveryAction, RecoveryPlan};

use crate::delete::delete_if_present;
use crate::drain::DrainError;
use crate::drain::retry::{Backoff, transient};
use crate::error::{ApiError, Scope};

/// A VM the recovery waits for.
#[derive(Clone, Debug)]
pub struct Awaited {
    /// `ns/name`.
    pub id: String,
    namespace: String,
    name: String,
    /// The UID of the VMI it had on the dead node: the new one has another.
    old_uid: Option<String>,
    /// Whether the recovery itself must ask for the start (runStrategy Manual with
    /// `--start-stopped`); Always and RerunOnFailure restart by themselves.
    pub start_request: bool,
}

fn err(e: kube::Error, verb: &'static str, resource: &str, ns: &str) -> DrainError {
    DrainError::Api(ApiError::from_kube(
        e,
        verb,
        resource,
        Scope::Namespace(ns.to_string()),
    ))
}

/// The VMs the plan restarts elsewhere, with the UID of their current VMI.
///
/// # Errors
/// Reading a VMI failed.
pub async fn awaited(client: &Client, plan: &RecoveryPlan) -> Result<Vec<Awaited>, DrainError> {
    let mut out = Vec::new();
    for vm in plan
        .vms
        .iter()
        .filter(|v| v.action == RecoveryAction::RestartElsewhere)
    {
        let api: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), &vm.namespace);
        let id = format!("{}/{}", vm.namespace, vm.name);
        let current = transient(&format!("reading VMI {id}"), || api.get_opt(&vm.name))
            .await
            .map_err(|e| err(e, "get", "virtualmachineinstances.kubevirt.io", &vm.namespace))?;
        out.push(Awaited {
            id: format!("{}/{}", vm.namespace, vm.name),
            namespace: vm.namespace.clone(),
            name: vm.name.clone(),
            old_uid: current.and_then(|v| v.metadata.uid),
            start_request: vm.run_strategy.as_deref() == Some("Manual"),
        });
    }
    Ok(out)
}

/// Where the VM's VMI runs now, if it is a new one, Running, on another node than `dead`.
fn arrived(vmi: &VirtualMachineInstance, waited: &Awaited, dead: &str) -> Option<String> {
    let status = vmi.status.as_ref()?;
    let node = status.node_name.as_deref()?;
    (vmi.metadata.uid != waited.old_uid && status.phase.as_deref() == Some("Running") && node != dead)
        .then(|| node.to_string())
}

/// Waits until every awaited VM runs on another node, recording in `arrivals` where and how
/// long after `confirmed` each one did, as it happens: a caller that stops the wait (timeout,
/// Ctrl-C) still knows which arrived. Runs until done: the caller bounds it.
///
/// # Errors
/// Deleting a finished VMI or sending a Start request failed.
pub async fn until_running(
    client: &Client,
    dead: &str,
    awaited: &[Awaited],
    confirmed: Instant,
    log: &(dyn Fn(String) + Send + Sync),
    arrivals: &mut BTreeMap<String, (String, Duration)>,
) -> Result<(), DrainError> {
    if awaited.is_empty() {
        return Ok(());
    }
    let (store, writer) = reflector::store();
    let api: Api<VirtualMachineInstance> = Api::all(client.clone());
    let mut events = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .backoff(Backoff::default())
        .boxed();
    let mut cleared: BTreeSet<String> = BTreeSet::new();
    let mut requested: BTreeSet<String> = BTreeSet::new();
    while let Some(event) = events.next().await {
        if let Err(e) = event {
            tracing::warn!("watching VMIs: {e}; retrying");
            continue;
        }
        for waited in awaited {
            if arrivals.contains_key(&waited.id) {
                continue;
            }
            let key = ObjectRef::new(&waited.name).within(&waited.namespace);
            let vmi = store.get(&key);
            if let Some(node) = vmi.as_deref().and_then(|v| arrived(v, waited, dead)) {
                let after = confirmed.elapsed();
                log(format!(
                    "{} runs on {node} ({:.1} s after confirmation)",
                    waited.id,
                    after.as_secs_f64()
                ));
                arrivals.insert(waited.id.clone(), (node, after));
                continue;
            }
            if !waited.start_request {
                continue;
            }
            match vmi.as_deref() {
                // The old VMI finished (its pod is gone): remove it so a new one can start.
                Some(v)
                    if v.metadata.uid == waited.old_uid
                        && !vmi_is_active(v)
                        && cleared.insert(waited.id.clone()) =>
                {
                    delete_vmi(client, waited).await?;
                }
                None if requested.insert(waited.id.clone()) => {
                    request_start(client, waited).await?;
                    log(format!("asked {} to start (runStrategy Manual)", waited.id));
                }
                _ => {}
            }
        }
        if arrivals.len() == awaited.len() {
            break;
        }
    }
    Ok(())
}

async fn delete_vmi(client: &Client, waited: &Awaited) -> Result<(), DrainError> {
    let api: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), &waited.namespace);
    let params = DeleteParams::default();
    transient(&format!("deleting the finished VMI {}", waited.id), || {
        delete_if_present(&api, &waited.name, &params)
    })
    .await
    .map_err(|e| {
        err(
            e,
            "delete",
            "virtualmachineinstances.kubevirt.io",
            &waited.namespace,
        )
    })?;
    Ok(())
}

/// What `virtctl start` asks of a Manual VM.
async fn request_start(client: &Client, waited: &Awaited) -> Result<(), DrainError> {
    let api: Api<VirtualMachine> = Api::namespaced(client.clone(), &waited.namespace);
    let start = json!({"status": {"stateChangeRequests": [{"action": "Start"}]}});
    let (params, merge) = (PatchParams::default(), Patch::Merge(&start));
    transient(&format!("starting VM {}", waited.id), || {
        api.patch_status(&waited.name, &params, &merge)
    })
    .await
    .map_err(|e| err(e, "patch", "virtualmachines/status", &waited.namespace))?;
    Ok(())
}

/// A VM's VMI in words, for the report of one that is not running yet.
///
/// # Errors
/// Reading the VMI failed.
pub async fn state_of(client: &Client, id: &str) -> Result<String, DrainError> {
    let (ns, name) = id.split_once('/').unwrap_or(("default", id));
    let api: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), ns);
    let vmi = transient(&format!("reading VMI {id}"), || api.get_opt(name))
        .await
        .map_err(|e| err(e, "get", "virtualmachineinstances.kubevirt.io", ns))?;
    Ok(match vmi.and_then(|v| v.status) {
        None => "no VMI yet".to_string(),
        Some(s) => format!(
            "VMI {} on {}",
            s.phase.as_deref().unwrap_or("Pending"),
            s.node_name.as_deref().unwrap_or("no node yet")
        ),
    })
}
