//! Starting one migration: the VMI checked to be still on the node, a migration in flight for
//! it adopted, or a new one created (steered by `addedNodeSelector`) while the lock is held.

use std::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use vm_core::kubevirt::VirtualMachineInstanceMigration;

use crate::drain::calls::{api_error, is_final, list_err_vmim, phase, split, vmi_node};
use crate::drain::{DrainError, ExecOptions, NODE_LABEL, lease, retry};

/// How the migration of a VMI started.
pub(super) enum Start {
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
pub(super) async fn start_migration(
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
