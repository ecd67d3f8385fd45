//! The permissions each operation needs, and the up-front check of them.
//!
//! A drain that finds out half-way that it may not create migrations leaves a cordoned node and
//! an operator guessing. So every run asks the API server first, with one
//! SelfSubjectAccessReview per permission, whether the user may do what the run will do, and
//! refuses before anything changes, naming every missing verb and resource.
//!
//! The lists here are the single statement of what the plugins call: `deploy/rbac/` holds one
//! ClusterRole per plugin, and a test checks that each role grants exactly the union of its
//! plugin's lists, no more and no less.

use std::collections::BTreeSet;
use std::fmt;

use futures::{StreamExt, stream};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::PostParams;
use kube::{Api, Client};

/// One verb on one resource (or subresource), cluster-wide or in one namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    /// The RBAC verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`.
    pub verb: &'static str,
    /// The API group; empty for the core group.
    pub group: &'static str,
    /// The plural resource name.
    pub resource: &'static str,
    /// The subresource (`status`, `eviction`), or empty.
    pub subresource: &'static str,
    /// The namespace, or `None` for every namespace (and cluster-scoped resources).
    pub namespace: Option<String>,
}

impl Permission {
    /// `verb` on `resource` of `group` in every namespace; `resource` may be `plural/sub`.
    fn new(verb: &'static str, group: &'static str, resource: &'static str) -> Self {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Self {
            verb,
            group,
            resource,
            subresource,
            namespace: None,
        }
    }

    /// The same permission, in `namespace` only (`None`: everywhere).
    fn within(mut self, namespace: Option<&str>) -> Self {
        self.namespace = namespace.map(str::to_string);
        self
    }

    /// `plural.group/sub`, as RBAC and `kubectl auth can-i` spell it.
    #[must_use]
    pub fn resource_name(&self) -> String {
        let mut name = self.resource.to_string();
        if !self.group.is_empty() {
            name = format!("{name}.{}", self.group);
        }
        if !self.subresource.is_empty() {
            name = format!("{name}/{}", self.subresource);
        }
        name
    }

    /// The `kubectl auth can-i` line that checks this permission.
    #[must_use]
    pub fn can_i(&self) -> String {
        let scope = match &self.namespace {
            Some(ns) => format!("-n {ns}"),
            None => "-A".to_string(),
        };
        format!(
            "kubectl auth can-i {} {} {scope}",
            self.verb,
            self.resource_name()
        )
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.resource_name())?;
        match &self.namespace {
            Some(ns) => write!(f, " in namespace {ns}"),
            None => write!(f, " at cluster scope"),
        }
    }
}

const KUBEVIRT: &str = "kubevirt.io";
const VMS: &str = "virtualmachines";
const VMIS: &str = "virtualmachineinstances";
const MIGRATIONS: &str = "virtualmachineinstancemigrations";

/// `verbs` on `resource` of `group`, in every namespace.
fn each(verbs: &[&'static str], group: &'static str, resource: &'static str) -> Vec<Permission> {
    verbs
        .iter()
        .map(|verb| Permission::new(verb, group, resource))
        .collect()
}

/// What [`crate::live::snapshot`] lists. The VM-like objects, PVCs, PDBs and namespaced
/// instancetypes and DataVolumes follow `namespace`; nodes, pods, the cluster configuration,
/// the MigrationPolicies, StorageProfiles and StorageClasses are read cluster-wide whatever it
/// says.
#[must_use]
pub fn read_cluster(namespace: Option<&str>) -> Vec<Permission> {
    let scoped = [
        (KUBEVIRT, VMS),
        (KUBEVIRT, VMIS),
        (KUBEVIRT, "virtualmachineinstancereplicasets"),
        (KUBEVIRT, MIGRATIONS),
        ("pool.kubevirt.io", "virtualmachinepools"),
        ("", "persistentvolumeclaims"),
        ("policy", "poddisruptionbudgets"),
        ("instancetype.kubevirt.io", "virtualmachineinstancetypes"),
        ("cdi.kubevirt.io", "datavolumes"),
    ];
    let cluster = [
        ("", "nodes"),
        ("", "pods"),
        (KUBEVIRT, "kubevirts"),
        ("hco.kubevirt.io", "hyperconvergeds"),
        ("instancetype.kubevirt.io", "virtualmachineclusterinstancetypes"),
        ("migrations.kubevirt.io", "migrationpolicies"),
        ("cdi.kubevirt.io", "storageprofiles"),
        ("storage.k8s.io", "storageclasses"),
    ];
    scoped
        .into_iter()
        .map(|(group, resource)| Permission::new("list", group, resource).within(namespace))
        .chain(
            cluster
                .into_iter()
                .map(|(group, resource)| Permission::new("list", group, resource)),
        )
        .collect()
}

/// What [`crate::live::add_recovery_evidence`] reads: the node's kubelet Lease and every
/// VolumeAttachment.
#[must_use]
pub fn read_recovery_evidence() -> Vec<Permission> {
    vec![
        Permission::new("get", "coordination.k8s.io", "leases")
            .within(Some(vm_core::recover::NODE_LEASE_NAMESPACE)),
        Permission::new("list", "storage.k8s.io", "volumeattachments"),
    ]
}

/// Taking, renewing and releasing the per-node lock (a Lease in `lock_namespace`).
#[must_use]
pub fn hold_lock(lock_namespace: &str) -> Vec<Permission> {
    each(
        &["get", "create", "update", "delete"],
        "coordination.k8s.io",
        "leases",
    )
    .into_iter()
    .map(|p| p.within(Some(lock_namespace)))
    .collect()
}

/// Reading a rolling round's state (a ConfigMap in `lock_namespace`) and whether a run holds
/// its lock: `--status`.
#[must_use]
pub fn read_round(lock_namespace: &str) -> Vec<Permission> {
    let mut needs = each(&["get"], "", "configmaps");
    needs.extend(each(&["get"], "coordination.k8s.io", "leases"));
    needs
        .into_iter()
        .map(|p| p.within(Some(lock_namespace)))
        .collect()
}

/// Recording a rolling round's plan and progress (a ConfigMap in `lock_namespace`).
#[must_use]
pub fn record_round(lock_namespace: &str) -> Vec<Permission> {
    each(&["get", "create", "update"], "", "configmaps")
        .into_iter()
        .map(|p| p.within(Some(lock_namespace)))
        .collect()
}

/// Cordoning or uncordoning a node, tainting it, and reading the VMs a drain recorded on it.
#[must_use]
pub fn edit_node() -> Vec<Permission> {
    each(&["get", "patch"], "", "nodes")
}

/// Creating migrations and following them by watch (and their target pods, for what the
/// scheduler says of those it cannot place); cancelling those that had not started or whose
/// target pod stayed unschedulable; finding where each VMI runs.
#[must_use]
pub fn migrate() -> Vec<Permission> {
    let mut needs = each(&["list", "watch", "create", "delete"], KUBEVIRT, MIGRATIONS);
    needs.extend(each(&["get", "list"], KUBEVIRT, VMIS));
    needs.extend(each(&["list", "watch"], "", "pods"));
    needs
}

/// Evicting the pods that are not VMs, as `kubectl drain` does.
#[must_use]
pub fn evict_pods() -> Vec<Permission> {
    vec![
        Permission::new("list", "", "pods"),
        Permission::new("create", "", "pods/eviction"),
    ]
}

/// `--shutdown-non-migratable`: a VM's runStrategy is set to Halted (its VMI then stops); a
/// standalone VMI is deleted.
#[must_use]
pub fn stop_vms() -> Vec<Permission> {
    let mut needs = each(&["get", "patch"], KUBEVIRT, VMS);
    needs.push(Permission::new("delete", KUBEVIRT, VMIS));
    needs
}

/// Starting a stopped VM again: its runStrategy back, and for a Manual VM the start request
/// that `virtctl start` makes.
#[must_use]
pub fn start_vms() -> Vec<Permission> {
    vec![
        Permission::new("patch", KUBEVIRT, VMS),
        Permission::new("patch", KUBEVIRT, "virtualmachines/status"),
    ]
}

/// Fencing a node that is down: its launcher pods force-deleted and the VolumeAttachments that
/// pin its volumes released (the taint is [`edit_node`]).
#[must_use]
pub fn fence() -> Vec<Permission> {
    let mut needs = each(&["list", "delete"], "", "pods");
    needs.push(Permission::new("delete", "storage.k8s.io", "volumeattachments"));
    needs
}

/// Following the VMIs of a fenced node until they run elsewhere; with `start_stopped`, deleting
/// a Manual VM's final VMI and asking the VM to start.
#[must_use]
pub fn follow_restarts(start_stopped: bool) -> Vec<Permission> {
    let mut needs = each(&["get", "list", "watch"], KUBEVIRT, VMIS);
    if start_stopped {
        needs.push(Permission::new("delete", KUBEVIRT, VMIS));
        needs.push(Permission::new("patch", KUBEVIRT, "virtualmachines/status"));
    }
    needs
}

/// The permissions of `sets`, each once, in a stable order.
#[must_use]
pub fn all_of(sets: impl IntoIterator<Item = Vec<Permission>>) -> Vec<Permission> {
    let mut all: Vec<Permission> = sets.into_iter().flatten().collect();
    all.sort();
    all.dedup();
    all
}

/// A permission without its namespace, as a ClusterRole grants it: `(verb, group, resource)`
/// with the resource spelled `plural` or `plural/sub`.
pub type Grant = (String, String, String);

/// The grants of `permissions`, each once.
#[must_use]
pub fn grants(permissions: &[Permission]) -> BTreeSet<Grant> {
    permissions
        .iter()
        .map(|p| {
            let resource = if p.subresource.is_empty() {
                p.resource.to_string()
            } else {
                format!("{}/{}", p.resource, p.subresource)
            };
            (p.verb.to_string(), p.group.to_string(), resource)
        })
        .collect()
}

/// Everything `role` grants, rule by rule expanded into single grants.
#[must_use]
pub fn granted_by(role: &ClusterRole) -> BTreeSet<Grant> {
    let mut granted = BTreeSet::new();
    for rule in role.rules.iter().flatten() {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    granted.insert((verb.clone(), group.clone(), resource.clone()));
                }
            }
        }
    }
    granted
}

/// Checks that `role` is named `name` and grants exactly `needed`: nothing it lacks, nothing
/// unused (least privilege).
///
/// # Errors
/// What differs, in words.
pub fn exact_role(role: &ClusterRole, name: &str, needed: &[Permission]) -> Result<(), String> {
    if role.metadata.name.as_deref() != Some(name) {
        return Err(format!("the role is {:?}, not {name}", role.metadata.name));
    }
    let granted = granted_by(role);
    let needed = grants(needed);
    let lacking: Vec<_> = needed.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&needed).collect();
    match (lacking.is_empty(), unused.is_empty()) {
        (true, true) => Ok(()),
        _ => Err(format!("{name} lacks {lacking:?} and grants unused {unused:?}")),
    }
}

/// Why a run may not go ahead.
#[derive(Debug, thiserror::Error)]
#[error("missing permission{}: {}", if .0.len() == 1 { "" } else { "s" }, join(.0))]
pub struct MissingPermissions(pub Vec<Permission>);

fn join(permissions: &[Permission]) -> String {
    permissions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many reviews are in flight at once: a run needs a few dozen, each a small POST.
const CONCURRENT_REVIEWS: usize = 8;

/// Asks the API server whether the current user has every permission in `needed`.
///
/// A cluster that cannot answer (the review API forbidden or not served, the server
/// unreachable) is not a refusal: the run goes on, and a call that is then denied still fails
/// with a 403 that names the permission.
///
/// # Errors
/// [`MissingPermissions`] with every permission the server denied.
pub async fn check(client: &Client, needed: &[Permission]) -> Result<(), MissingPermissions> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answers: Vec<(Permission, Option<bool>)> = stream::iter(needed.iter().cloned())
        .map(|permission| {
            let reviews = reviews.clone();
            async move {
                let allowed = review(&reviews, &permission).await;
                (permission, allowed)
            }
        })
        .buffer_unordered(CONCURRENT_REVIEWS)
        .collect()
        .await;
    let mut missing: Vec<Permission> = answers
        .into_iter()
        .filter(|(_, allowed)| *allowed == Some(false))
        .map(|(permission, _)| permission)
        .collect();
    missing.sort();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MissingPermissions(missing))
    }
}

/// Whether the user has `permission`; `None` when the server could not say.
async fn review(reviews: &Api<SelfSubjectAccessReview>, permission: &Permission) -> Option<bool> {
    let request = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(permission.verb.to_string()),
                group: Some(permission.group.to_string()),
                resource: Some(permission.resource.to_string()),
                subresource: (!permission.subresource.is_empty()).then(|| permission.subresource.to_string()),
                namespace: permission.namespace.clone(),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    match reviews.create(&PostParams::default(), &request).await {
        Ok(answer) => answer.status.map(|s| s.allowed),
        Err(e) => {
            tracing::debug!("cannot review {permission}: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests;
