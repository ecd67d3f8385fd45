//! The live cluster as a [`ClusterSnapshot`]: one paged list per kind, run concurrently.

use std::fmt::Debug;

use futures::try_join;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::{StorageClass, VolumeAttachment};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use vm_core::kubevirt::{
    DataVolume, HyperConverged, KubeVirt, MigrationPolicy, NetworkAttachmentDefinition, StorageProfile,
    VirtualMachine, VirtualMachineClusterInstancetype, VirtualMachineInstance,
    VirtualMachineInstanceMigration, VirtualMachineInstanceReplicaSet, VirtualMachineInstancetype,
    VirtualMachinePool,
};
use vm_core::snapshot::{ClusterSnapshot, SnapshotSource};

use crate::error::{ApiError, Scope};

/// Which part of the cluster to read.
#[derive(Clone, Debug, Default)]
pub struct LiveScope {
    /// One namespace, or `None` for all.
    pub namespace: Option<String>,
    /// `-l`: a label selector for the VM-like objects (VMs, VMIs, replica sets, pools).
    pub selector: Option<String>,
}

/// Objects per page: big enough to keep round trips few, small enough to bound memory per call.
const PAGE: u32 = 500;

fn resource_name<K: Resource<DynamicType = ()>>() -> String {
    let group = K::group(&());
    let plural = K::plural(&());
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// Whether a KubeVirt kind is optional: a cluster without HCO, pools or instancetypes is fine.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    Optional,
}

async fn list_all<K>(
    api: Api<K>,
    selector: Option<&str>,
    scope: Scope,
    need: Need,
) -> Result<Vec<K>, ApiError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let mut params = ListParams::default().limit(PAGE);
    if let Some(sel) = selector {
        params = params.labels(sel);
    }
    let mut items = Vec::new();
    loop {
        let page = match api.list(&params).await {
            Ok(page) => page,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return match need {
                    Need::Optional => Ok(Vec::new()),
                    Need::Required => Err(ApiError::NotServed {
                        resource: resource_name::<K>(),
                        api_version: K::api_version(&()).to_string(),
                        hint: "; is KubeVirt installed? (kubectl get crd virtualmachines.kubevirt.io)",
                    }),
                };
            }
            Err(e) => return Err(ApiError::from_kube(e, "list", &resource_name::<K>(), scope)),
        };
        items.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> (Api<K>, Scope)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Scope::Namespace(ns.to_string()),
        ),
        None => (Api::all(client.clone()), Scope::Cluster),
    }
}

async fn list_ns<K>(
    client: &Client,
    namespace: Option<&str>,
    selector: Option<&str>,
    need: Need,
) -> Result<Vec<K>, ApiError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let (api, scope) = scoped::<K>(client, namespace);
    list_all(api, selector, scope, need).await
}

/// Multus NetworkAttachmentDefinitions, read only for the device-plugin resources they name: a
/// cluster without Multus does not serve the kind (none, then), and a user who may not list
/// them still gets a snapshot (the running launcher pods carry those resources anyway; only
/// VMs not running go uncounted, and the planners say so).
async fn list_nads(
    client: &Client,
    namespace: Option<&str>,
) -> Result<Vec<NetworkAttachmentDefinition>, ApiError> {
    match list_ns::<NetworkAttachmentDefinition>(client, namespace, None, Need::Optional).await {
        Err(ApiError::Forbidden { .. }) => Ok(Vec::new()),
        other => other,
    }
}

/// PDBs through policy/v1, or policy/v1beta1 on clusters older than 1.21.
async fn list_pdbs(client: &Client, namespace: Option<&str>) -> Result<Vec<PodDisruptionBudget>, ApiError> {
    let (api, scope) = scoped::<PodDisruptionBudget>(client, namespace);
    match api.list(&ListParams::default()).await {
        Ok(list) => return Ok(list.items),
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => {
            return Err(ApiError::from_kube(
                e,
                "list",
                "poddisruptionbudgets.policy",
                scope,
            ));
        }
    }
    let resource = ApiResource {
        group: "policy".into(),
        version: "v1beta1".into(),
        api_version: "policy/v1beta1".into(),
        kind: "PodDisruptionBudget".into(),
        plural: "poddisruptionbudgets".into(),
    };
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| ApiError::from_kube(e, "list", "poddisruptionbudgets.policy", scope.clone()))?;
    list.items
        .into_iter()
        .map(|obj| {
            let mut value = serde_json::to_value(obj).unwrap_or_default();
            value["apiVersion"] = "policy/v1".into();
            value["kind"] = "PodDisruptionBudget".into();
            serde_json::from_value(value).map_err(|e| ApiError::Status {
                verb: "decode",
                resource: "poddisruptionbudgets.policy".into(),
                scope: scope.clone(),
                message: e.to_string(),
                code: 200,
            })
        })
        .collect()
}

/// Lists everything the audit and the planners read.
///
/// Nodes, pods and the cluster configuration CRs are read cluster-wide whatever the scope:
/// capacity depends on every pod of every node. The VM-like objects, PVCs, PDBs and
/// instancetypes follow `scope`.
///
/// # Errors
/// The first list that fails, naming the resource and the scope; a 404 on VMs or VMIs means
/// KubeVirt is not installed.
pub async fn snapshot(client: &Client, scope: &LiveScope) -> Result<ClusterSnapshot, ApiError> {
    let ns = scope.namespace.as_deref();
    let sel = scope.selector.as_deref();
    let (vms, vmis, replica_sets, pools, migrations) = try_join!(
        list_ns::<VirtualMachine>(client, ns, sel, Need::Required),
        list_ns::<VirtualMachineInstance>(client, ns, sel, Need::Required),
        list_ns::<VirtualMachineInstanceReplicaSet>(client, ns, sel, Need::Optional),
        list_ns::<VirtualMachinePool>(client, ns, sel, Need::Optional),
        list_ns::<VirtualMachineInstanceMigration>(client, ns, None, Need::Optional),
    )?;
    let (nodes, pods, pvcs, pdbs) = try_join!(
        list_all(
            Api::<Node>::all(client.clone()),
            None,
            Scope::Cluster,
            Need::Required
        ),
        list_ns::<Pod>(client, None, None, Need::Required),
        list_ns::<PersistentVolumeClaim>(client, ns, None, Need::Required),
        list_pdbs(client, ns),
    )?;
    let (kubevirts, hyperconvergeds, instancetypes, cluster_instancetypes, migration_policies) = try_join!(
        list_ns::<KubeVirt>(client, None, None, Need::Optional),
        list_ns::<HyperConverged>(client, None, None, Need::Optional),
        list_ns::<VirtualMachineInstancetype>(client, ns, None, Need::Optional),
        list_all(
            Api::<VirtualMachineClusterInstancetype>::all(client.clone()),
            None,
            Scope::Cluster,
            Need::Optional
        ),
        // KubeVirt serves MigrationPolicies since v0.53; a cluster without them has none.
        list_all(
            Api::<MigrationPolicy>::all(client.clone()),
            None,
            Scope::Cluster,
            Need::Optional
        ),
    )?;
    // CDI's kinds exist only where CDI is installed; a cluster without it has no DataVolumes.
    let (data_volumes, storage_profiles, storage_classes, network_attachment_definitions) = try_join!(
        list_ns::<DataVolume>(client, ns, None, Need::Optional),
        list_all(
            Api::<StorageProfile>::all(client.clone()),
            None,
            Scope::Cluster,
            Need::Optional
        ),
        list_all(
            Api::<StorageClass>::all(client.clone()),
            None,
            Scope::Cluster,
            Need::Optional
        ),
        list_nads(client, ns),
    )?;
    Ok(ClusterSnapshot {
        source: SnapshotSource::Live,
        data_volumes,
        storage_profiles,
        storage_classes,
        network_attachment_definitions,
        nodes,
        pods,
        pvcs,
        pdbs,
        vms,
        vmis,
        replica_sets,
        pools,
        migrations,
        kubevirts,
        hyperconvergeds,
        instancetypes,
        cluster_instancetypes,
        migration_policies,
        leases: Vec::new(),
        volume_attachments: Vec::new(),
        origins: Default::default(),
        copies: Default::default(),
    })
}

/// Adds what only a recovery needs to `snapshot`: the node's Lease in `kube-node-lease` (its
/// kubelet's last sign of life) and every VolumeAttachment (which pin RWO volumes to the node).
/// Kept apart from [`snapshot`] so that the audit and the drain need no rights on them.
///
/// # Errors
/// Reading the Lease or listing VolumeAttachments failed, naming the call.
pub async fn add_recovery_evidence(
    client: &Client,
    node: &str,
    snapshot: &mut ClusterSnapshot,
) -> Result<(), ApiError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), vm_core::recover::NODE_LEASE_NAMESPACE);
    let lease = leases.get_opt(node).await.map_err(|e| {
        ApiError::from_kube(
            e,
            "get",
            "leases.coordination.k8s.io",
            Scope::Namespace(vm_core::recover::NODE_LEASE_NAMESPACE.to_string()),
        )
    })?;
    snapshot.leases = lease.into_iter().collect();
    snapshot.volume_attachments = list_all(
        Api::<VolumeAttachment>::all(client.clone()),
        None,
        Scope::Cluster,
        Need::Optional,
    )
    .await?;
    Ok(())
}
