//! The migration target pod as the scheduler will see it: the launcher pod KubeVirt rendered
//! (live) or would render (from manifests), plus what virt-controller adds to a migration
//! target (reference `kubevirt-pod-constraints.md` §3): the source node's CPU vendor, and for
//! host-model guests the source's host model and its required CPU features, carried forward
//! from the source pod once a VM has migrated.
//!
//! The self anti-affinity that keeps a target off its source node is not modelled as a term:
//! the planners never offer the source node.

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::effective::ClusterConfig;
use crate::kubevirt::VirtualMachineInstance;
use crate::placement::{Constraints, pod_is_finished, pod_requests};
use crate::resources::{Requests, dedicated_cpus, launcher_requests};
use crate::snapshot::ClusterSnapshot;

/// Label prefixes the node-labeller writes and migration targets select.
pub const VENDOR_PREFIX: &str = "cpu-vendor.node.kubevirt.io/";
/// The node's host CPU model.
pub const HOST_MODEL_PREFIX: &str = "host-model-cpu.node.kubevirt.io/";
/// Features the node's host model requires.
pub const HOST_MODEL_FEATURE_PREFIX: &str = "host-model-required-features.node.kubevirt.io/";
/// Models a target node can take a migration of.
pub const MIGRATION_MODEL_PREFIX: &str = "cpu-model-migration.node.kubevirt.io/";
/// CPU features a node offers.
pub const FEATURE_PREFIX: &str = "cpu-feature.node.kubevirt.io/";
/// Named CPU models a node can run.
pub const MODEL_PREFIX: &str = "cpu-model.node.kubevirt.io/";
/// Nodes whose CPU manager gives out whole CPUs.
pub const CPU_MANAGER_LABEL: &str = "kubevirt.io/cpumanager";

/// The unfinished launcher pods of a snapshot by the UID of the VMI that created them, built
/// once so that planning many VMs does not scan every pod for each.
#[derive(Debug, Default)]
pub struct LauncherPods<'a>(std::collections::HashMap<&'a str, Vec<&'a Pod>>);

impl<'a> LauncherPods<'a> {
    /// Indexes the pods of `snapshot`.
    #[must_use]
    pub fn of(snapshot: &'a ClusterSnapshot) -> Self {
        let mut map: std::collections::HashMap<&str, Vec<&Pod>> = std::collections::HashMap::new();
        for pod in snapshot.pods.iter().filter(|p| !pod_is_finished(p)) {
            if let Some(uid) = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubevirt.io/created-by"))
            {
                map.entry(uid.as_str()).or_default().push(pod);
            }
        }
        Self(map)
    }

    /// The running launcher pod of `vmi`: bound to its node, owned by it, not finished.
    #[must_use]
    pub fn of_vmi(&self, vmi: &VirtualMachineInstance) -> Option<&'a Pod> {
        let uid = vmi.metadata.uid.as_deref()?;
        let node = vmi.status.as_ref()?.node_name.as_deref()?;
        self.0
            .get(uid)?
            .iter()
            .copied()
            .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
    }
}

/// Whether the guest's CPU model is host-model (the default when neither the VMI nor the
/// cluster names one).
#[must_use]
pub fn is_host_model(vmi: &VirtualMachineInstance, cluster: &ClusterConfig) -> bool {
    let model = vmi
        .spec
        .domain
        .cpu
        .as_ref()
        .and_then(|c| c.model.clone())
        .filter(|m| !m.is_empty())
        .or_else(|| cluster.cpu_model.clone());
    model.is_none_or(|m| m == "host-model")
}

/// The launcher pod's constraints rendered from the VMI spec as virt-controller does (§1a):
/// the VMI's own selectors, affinity and tolerations, the cluster-wide selectors, the CPU
/// manager label for dedicated CPUs, a named CPU model, and required CPU features.
#[must_use]
pub fn rendered_constraints(vmi: &VirtualMachineInstance, cluster: &ClusterConfig) -> Constraints {
    let mut c = Constraints::of(&vmi.spec);
    for (k, v) in &cluster.node_selectors {
        c.node_selector.entry(k.clone()).or_insert_with(|| v.clone());
        c.origins
            .insert(k.clone(), "KubeVirt's cluster-wide nodeSelectors".into());
    }
    let mut add = |key: String, why: String| {
        if !c.node_selector.contains_key(&key) {
            c.node_selector.insert(key.clone(), "true".into());
            c.origins.insert(key, why);
        }
    };
    if dedicated_cpus(&vmi.spec, None) {
        add(CPU_MANAGER_LABEL.into(), "dedicated CPUs".into());
    }
    if let Some(cpu) = vmi.spec.domain.cpu.as_ref() {
        if let Some(model) = cpu
            .model
            .as_deref()
            .filter(|m| !matches!(*m, "" | "host-model" | "host-passthrough"))
        {
            add(format!("{MODEL_PREFIX}{model}"), format!("CPU model {model}"));
        }
        for f in &cpu.features {
            if matches!(f.policy.as_deref(), None | Some("" | "require")) {
                add(
                    format!("{FEATURE_PREFIX}{}", f.name),
                    format!("required CPU feature {}", f.name),
                );
            }
        }
    } else if let Some(model) = cluster
        .cpu_model
        .as_deref()
        .filter(|m| !matches!(*m, "host-model" | "host-passthrough"))
    {
        add(
            format!("{MODEL_PREFIX}{model}"),
            format!("the cluster's default CPU model {model}"),
        );
    }
    c
}

/// What the scheduler will see of the migration target of `vmi`: constraints and requests.
///
/// Live, the base is the running launcher pod (what KubeVirt really rendered, its requests
/// overhead included), with the VMI's current nodeSelector and tolerations over it (KubeVirt
/// re-renders the target from the current VMI, and live-updates move them there). From
/// manifests, the pod is rendered from the VMI spec.
///
/// # Errors
/// KubeVirt creates no target pod at all: a host-model guest on a source node without a
/// host-model label (while other nodes have one).
pub fn migration_target(
    snapshot: &ClusterSnapshot,
    vmi: &VirtualMachineInstance,
    cluster: &ClusterConfig,
) -> Result<(Constraints, Requests), String> {
    migration_target_with(snapshot, &LauncherPods::of(snapshot), vmi, cluster)
}

/// [`migration_target`] with the launcher pods already indexed.
///
/// # Errors
/// As [`migration_target`].
pub fn migration_target_with(
    snapshot: &ClusterSnapshot,
    launchers: &LauncherPods<'_>,
    vmi: &VirtualMachineInstance,
    cluster: &ClusterConfig,
) -> Result<(Constraints, Requests), String> {
    let source_name = vmi.status.as_ref().and_then(|s| s.node_name.as_deref());
    let source = source_name.and_then(|n| {
        snapshot
            .nodes
            .iter()
            .find(|node| node.metadata.name.as_deref() == Some(n))
    });
    let (mut constraints, requests) = match launchers.of_vmi(vmi) {
        Some(pod) => {
            let mut c = Constraints::of_pod(pod);
            for (k, v) in vmi.spec.node_selector.iter().flatten() {
                c.node_selector.insert(k.clone(), v.clone());
            }
            c.tolerations = vmi.spec.tolerations.clone().unwrap_or_default();
            (c, pod_requests(pod))
        }
        None => (
            launcher_constraints(snapshot, vmi, cluster),
            launcher_requests(&vmi.spec, None, cluster).unwrap_or_default(),
        ),
    };
    add_migration_selectors(&mut constraints, vmi, cluster, source, snapshot)?;
    Ok((constraints, requests))
}

/// The constraints of a new launcher pod for `vmi` (a VM started again elsewhere): those of
/// [`rendered_constraints`], without the selectors of label families no node of the snapshot
/// carries (see [`drop_unlabelled_families`]).
#[must_use]
pub fn launcher_constraints(
    snapshot: &ClusterSnapshot,
    vmi: &VirtualMachineInstance,
    cluster: &ClusterConfig,
) -> Constraints {
    let mut c = rendered_constraints(vmi, cluster);
    drop_unlabelled_families(&mut c, snapshot);
    c
}

/// The label family of a selector key KubeVirt adds: its prefix up to the `/`, or the whole
/// key for single labels such as `kubevirt.io/cpumanager`.
fn family(key: &str) -> &str {
    match key.find(".node.kubevirt.io/") {
        Some(at) => &key[..at + ".node.kubevirt.io/".len()],
        None => key,
    }
}

/// Drops the selectors KubeVirt adds whose label family no node carries at all: such nodes
/// come from manifests written by hand (or a cluster without the node-labeller), and a
/// verdict of "no node has it" would be about the input, not the cluster.
fn drop_unlabelled_families(c: &mut Constraints, snapshot: &ClusterSnapshot) {
    let known = |fam: &str| {
        snapshot.nodes.iter().any(|n| {
            n.metadata
                .labels
                .iter()
                .flatten()
                .any(|(k, _)| k.starts_with(fam))
        })
    };
    let unknown: Vec<String> = c.origins.keys().filter(|k| !known(family(k))).cloned().collect();
    for key in unknown {
        c.node_selector.remove(&key);
        c.origins.remove(&key);
    }
}

/// §3: the vendor of the source node, and for host-model guests its host model and required
/// features (or the ones the source pod already carries from an earlier migration).
fn add_migration_selectors(
    c: &mut Constraints,
    vmi: &VirtualMachineInstance,
    cluster: &ClusterConfig,
    source: Option<&Node>,
    snapshot: &ClusterSnapshot,
) -> Result<(), String> {
    let Some(source) = source else {
        return Ok(());
    };
    let source_name = source.metadata.name.clone().unwrap_or_default();
    let labels = source.metadata.labels.clone().unwrap_or_default();
    if is_host_model(vmi, cluster) {
        let carried: Vec<String> = c
            .node_selector
            .keys()
            .filter(|k| k.contains(FEATURE_PREFIX) || k.contains(MIGRATION_MODEL_PREFIX))
            .cloned()
            .collect();
        if !carried.is_empty() {
            for key in carried {
                c.origins.entry(key).or_insert_with(|| {
                    format!("host-model, carried from the VM's earlier host by its pod on node {source_name}")
                });
            }
        } else if let Some(model) = labels.keys().find_map(|k| k.strip_prefix(HOST_MODEL_PREFIX)) {
            let why = format!("host-model on node {source_name}");
            c.node_selector
                .insert(format!("{MIGRATION_MODEL_PREFIX}{model}"), "true".into());
            c.origins
                .insert(format!("{MIGRATION_MODEL_PREFIX}{model}"), why.clone());
            for feature in labels
                .keys()
                .filter_map(|k| k.strip_prefix(HOST_MODEL_FEATURE_PREFIX))
            {
                let key = format!("{FEATURE_PREFIX}{feature}");
                c.node_selector.insert(key.clone(), "true".into());
                c.origins.insert(key, why.clone());
            }
        } else if snapshot_has_host_models(snapshot) {
            return Err(format!(
                "the VM uses host-model and node {source_name} has no {HOST_MODEL_PREFIX}* label, so KubeVirt \
                 creates no migration target pod (NoSuitableNodesForHostModelMigration)"
            ));
        }
    }
    if !c.node_selector.keys().any(|k| k.starts_with(VENDOR_PREFIX))
        && let Some(vendor) = labels.keys().find(|k| k.starts_with(VENDOR_PREFIX))
    {
        c.node_selector.insert(vendor.clone(), "true".into());
        c.origins
            .insert(vendor.clone(), format!("the CPU vendor of node {source_name}"));
    }
    Ok(())
}

fn snapshot_has_host_models(snapshot: &ClusterSnapshot) -> bool {
    // Asked only for a host-model guest on a node without the label: rare, so not indexed.
    snapshot.nodes.iter().any(|n| {
        n.metadata
            .labels
            .iter()
            .flatten()
            .any(|(k, _)| k.starts_with(HOST_MODEL_PREFIX))
    })
}

#[cfg(test)]
mod tests;
