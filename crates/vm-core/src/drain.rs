//! The drain pre-flight: what would happen to every VM and pod of a node, computed before
//! anything changes.
//!
//! Every VMI on the node gets an action: `migrate` (live-migratable, and the joint placement
//! of all the node's VMs onto the other nodes has room for it), `shutdown` (not migratable,
//! and the operator allowed it), or `blocked` with the reasons. The other pods follow
//! `kubectl drain`'s rules: DaemonSet and mirror pods stay, unmanaged pods need `--force`,
//! pods with emptyDir data need `--delete-emptydir-data`, and a PodDisruptionBudget that allows
//! no disruption now blocks.
//!
//! Unlike a plain drain, a migratable VM is migrated whatever its eviction strategy: the plugin
//! creates the migration itself, so `None` or `External` do not shut it down.

mod pods;
#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::effective::{ClusterConfig, RunStrategy, eviction_strategy, run_strategy};
use crate::eta::MigrationModel;
use crate::kubevirt::VirtualMachineInstance;
use crate::migratability::Migratability;
use crate::migration_target::{TargetSources, migration_target_with};
use crate::placement::{Demand, Occupancy, Placement, PodTerms, place_jointly_except};
use crate::planning::{all_nodes, migration_blocker, summarise, vmi_migratability};
use crate::resources::{network_resources, unknown_network_resources_note};
use crate::snapshot::ClusterSnapshot;

pub use pods::{PodAction, PodPlan, controller_kind, is_mirror_pod, stays_on_node};

/// Choices the operator makes with flags.
#[derive(Clone, Debug, Default)]
pub struct DrainPolicy {
    /// `--shutdown-non-migratable`: stop VMs that cannot migrate instead of blocking.
    pub shutdown_non_migratable: bool,
    /// `--force`: evict pods that no controller manages (they are not recreated).
    pub force: bool,
    /// `--delete-emptydir-data`: evict pods whose emptyDir data is lost with them.
    pub delete_emptydir_data: bool,
    /// Assumed migration throughput in bytes per second: the prior of the time estimate, used
    /// when the cluster has too few finished migrations to fit on (see [`MigrationModel`]).
    pub migration_bytes_per_second: f64,
}

impl DrainPolicy {
    /// 1 GiB/s: a 10 GbE migration network, most of it used by one migration (the migration
    /// model's own default, [`crate::eta::DEFAULT_MIGRATION_BYTES_PER_SECOND`]).
    pub const DEFAULT_MIGRATION_BYTES_PER_SECOND: f64 = crate::eta::DEFAULT_MIGRATION_BYTES_PER_SECOND;
}

/// What happens to one VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmAction {
    /// Live-migrated to another node.
    Migrate,
    /// Stopped (only with `--shutdown-non-migratable`).
    Shutdown,
    /// Cannot leave the node: the drain is not feasible.
    Blocked,
}

/// The plan for one VMI of the node.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VmPlan {
    /// `VirtualMachineInstance`.
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// VMI name (the VM's name when a VM owns it).
    pub name: String,
    /// The action.
    pub action: VmAction,
    /// A node with room for it in the joint placement (advisory: the scheduler picks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Why, in an operator's words.
    pub reasons: Vec<String>,
    /// When no node can take it: every reason for every candidate node, one sentence each
    /// (`reasons` says it in short), for scripts and for `--explain`-style digging.
    #[serde(rename = "placementReasons", skip_serializing_if = "Vec::is_empty")]
    pub placement_reasons: Vec<String>,
    /// The effective eviction strategy.
    #[serde(rename = "evictionStrategy")]
    pub eviction_strategy: String,
    /// Whether KubeVirt can live-migrate it.
    #[serde(rename = "liveMigratable")]
    pub live_migratable: bool,
    /// The owning VM's run strategy, if a VM owns it.
    #[serde(rename = "runStrategy", skip_serializing_if = "Option::is_none")]
    pub run_strategy: Option<String>,
    /// Guest memory to copy, in bytes, for the estimate.
    #[serde(skip)]
    pub memory_bytes: f64,
    /// KubeVirt's completion timeout for its migration, in seconds: completionTimeoutPerGiB
    /// (of the MigrationPolicy that selects it, else the cluster's, default 150) times its
    /// memory in decimal GB, rounded up; `None` when the setting is 0 (no timeout). The
    /// executor's default `--migration-timeout` for this VM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration_timeout_seconds: Option<u64>,
}

/// The migration limits in force (KubeVirt CR or HCO, else KubeVirt's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationLimits {
    /// `parallelMigrationsPerCluster`.
    pub parallel_migrations_per_cluster: u32,
    /// `parallelOutboundMigrationsPerNode`.
    pub parallel_outbound_migrations_per_node: u32,
}

/// The whole pre-flight.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DrainPlan {
    /// `vm-drain-safe/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    /// `DrainPlan`.
    pub kind: &'static str,
    /// The node to drain.
    pub node: String,
    /// True when nothing blocks.
    pub feasible: bool,
    /// One entry per VMI on the node.
    pub vms: Vec<VmPlan>,
    /// The node's other pods.
    pub pods: Vec<PodPlan>,
    /// Everything that blocks, one sentence each.
    pub blockers: Vec<String>,
    /// Migration limits used.
    pub limits: MigrationLimits,
    /// Estimated wall time of the migrations, in seconds.
    #[serde(rename = "estimatedSeconds")]
    pub estimated_seconds: u64,
    /// The duration of one migration that the estimate assumes, and where it comes from.
    #[serde(rename = "migrationModel")]
    pub migration_model: MigrationModel,
}

/// Why no plan could be made at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The node is not in the snapshot.
    #[error("node {0} does not exist")]
    NoSuchNode(String),
}

/// KubeVirt's completion timeout for a migration of `vmi` (see
/// [`VmPlan::migration_timeout_seconds`]): the migrated size as KubeVirt counts it
/// (`getVMIMigrationDataSize`: guest memory in decimal gigabytes, rounded up) times the
/// effective completionTimeoutPerGiB.
fn completion_timeout(
    snapshot: &ClusterSnapshot,
    cluster: &ClusterConfig,
    vmi: &VirtualMachineInstance,
    memory_bytes: f64,
) -> Option<u64> {
    let labels = vmi.metadata.labels.clone().unwrap_or_default();
    let settings = crate::effective::migration_settings(cluster, &snapshot.migration_policies, &labels, None);
    let size = (memory_bytes / 1e9).ceil().max(1.0) as u64;
    (settings.completion_timeout_per_gib > 0)
        .then(|| size.saturating_mul(settings.completion_timeout_per_gib))
}

/// Whether a VMI is still active (not Succeeded or Failed).
#[must_use]
pub fn vmi_is_active(vmi: &VirtualMachineInstance) -> bool {
    !matches!(
        vmi.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The active VMIs whose `status.nodeName` is `node`.
#[must_use]
pub fn vmis_on<'a>(snapshot: &'a ClusterSnapshot, node: &str) -> Vec<&'a VirtualMachineInstance> {
    snapshot
        .vmis
        .iter()
        .filter(|v| v.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node) && vmi_is_active(v))
        .collect()
}

fn ns_name(vmi: &VirtualMachineInstance) -> (String, String) {
    (
        vmi.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        vmi.metadata.name.clone().unwrap_or_default(),
    )
}

/// The run strategy of the VM that owns `vmi` (same name and namespace), if any.
fn owner_run_strategy(snapshot: &ClusterSnapshot, vmi: &VirtualMachineInstance) -> Option<RunStrategy> {
    snapshot
        .vms
        .iter()
        .find(|vm| vm.metadata.name == vmi.metadata.name && vm.metadata.namespace == vmi.metadata.namespace)
        .and_then(|vm| run_strategy(&vm.spec).strategy())
}

/// Computes the drain plan of `node`, its time estimated with the migration model fitted on the
/// snapshot's finished migrations (the policy's throughput as the prior).
///
/// # Errors
/// [`PlanError::NoSuchNode`] when the node is not in the snapshot.
pub fn plan_drain(
    snapshot: &ClusterSnapshot,
    node: &str,
    policy: &DrainPolicy,
) -> Result<DrainPlan, PlanError> {
    let model = MigrationModel::fit(snapshot, MigrationModel::prior(policy.migration_bytes_per_second));
    plan_drain_with(snapshot, node, policy, &model)
}

/// [`plan_drain`] with a migration model given, for callers that plan many drains against one
/// history (a rolling round) and fit it once.
///
/// # Errors
/// [`PlanError::NoSuchNode`] when the node is not in the snapshot.
pub fn plan_drain_with(
    snapshot: &ClusterSnapshot,
    node: &str,
    policy: &DrainPolicy,
    model: &MigrationModel,
) -> Result<DrainPlan, PlanError> {
    if !snapshot
        .nodes
        .iter()
        .any(|n| n.metadata.name.as_deref() == Some(node))
    {
        return Err(PlanError::NoSuchNode(node.to_string()));
    }
    let cluster = ClusterConfig::from_crs(&snapshot.kubevirts, &snapshot.hyperconvergeds);
    let nodes = all_nodes(snapshot);
    let launchers = TargetSources::of(snapshot);
    let vmis = vmis_on(snapshot, node);

    let mut plans = Vec::new();
    let mut demands = Vec::new();
    let mut demand_index = Vec::new();
    for vmi in &vmis {
        let (namespace, name) = ns_name(vmi);
        let eviction = eviction_strategy(vmi.spec.eviction_strategy.as_deref(), None, &cluster);
        let migratability = vmi_migratability(snapshot, vmi, &cluster);
        let strategy = owner_run_strategy(snapshot, vmi);
        let mut plan = VmPlan {
            kind: "VirtualMachineInstance",
            namespace,
            name,
            action: VmAction::Migrate,
            target: None,
            reasons: Vec::new(),
            placement_reasons: Vec::new(),
            eviction_strategy: eviction.raw.clone(),
            live_migratable: migratability == Migratability::Migratable,
            run_strategy: strategy.map(|s| s.to_string()),
            memory_bytes: crate::resources::guest_size(&vmi.spec, None)
                .memory
                .unwrap_or(0.0),
            migration_timeout_seconds: None,
        };
        plan.migration_timeout_seconds = completion_timeout(snapshot, &cluster, vmi, plan.memory_bytes);
        let target = migration_target_with(snapshot, &launchers, vmi, &cluster);
        match migration_blocker(&migratability) {
            None if target.is_err() => {
                plan.action = VmAction::Blocked;
                plan.reasons.push(target.err().unwrap_or_default());
            }
            None => {
                // A running pod carries its NAD resources; one rendered from the spec needs the
                // NADs, and says so when they are not known.
                if launchers.of_vmi(vmi).is_none() {
                    let namespace = vmi.metadata.namespace.as_deref().unwrap_or("default");
                    let nads = &snapshot.network_attachment_definitions;
                    let unknown = network_resources(&vmi.spec, namespace, nads).unknown;
                    plan.reasons
                        .extend(unknown_network_resources_note(&unknown, snapshot.where_looked()));
                }
                if eviction.raw != "LiveMigrate" && eviction.raw != "LiveMigrateIfPossible" {
                    plan.reasons.push(format!(
                        "evictionStrategy {}: a plain kubectl drain would {}; vm-drain-safe migrates it instead",
                        eviction.raw,
                        if eviction.raw == "External" { "leave it to an external controller" } else { "shut it down" }
                    ));
                }
                let (constraints, requests) = target.unwrap_or_default();
                demand_index.push(plans.len());
                demands.push(Demand {
                    id: format!("{}/{}", plan.namespace, plan.name),
                    requests,
                    constraints,
                    pod: PodTerms::of_migration_target(vmi, launchers.of_vmi(vmi)),
                });
            }
            Some(why) => {
                plan.reasons.push(why);
                if policy.shutdown_non_migratable {
                    plan.action = VmAction::Shutdown;
                    plan.reasons.push(shutdown_consequence(strategy));
                } else {
                    plan.action = VmAction::Blocked;
                    plan.reasons
                        .push("blocks the drain (--shutdown-non-migratable stops it instead)".into());
                }
            }
        }
        plans.push(plan);
    }

    let occupancy = Occupancy::of_snapshot(snapshot, &launchers);
    for (placement, &i) in place_jointly_except(&demands, &nodes, &occupancy, &[node])
        .into_iter()
        .zip(&demand_index)
    {
        match placement {
            Placement::Placed(target) => plans[i].target = Some(target),
            Placement::Unplaceable(reasons) => {
                plans[i].action = VmAction::Blocked;
                plans[i]
                    .reasons
                    .push(format!("no other node can take it: {}", summarise(&reasons)));
                plans[i].placement_reasons = reasons;
            }
        }
    }

    let pods = pods::plan_pods(snapshot, node, &vmis, policy.force, policy.delete_emptydir_data);
    let mut blockers: Vec<String> = plans
        .iter()
        .filter(|p| p.action == VmAction::Blocked)
        .map(|p| format!("VM {}/{}: {}", p.namespace, p.name, p.reasons.join("; ")))
        .collect();
    blockers.extend(
        pods.iter()
            .filter(|p| p.action == PodAction::Blocked)
            .map(|p| format!("pod {}/{}: {}", p.namespace, p.name, p.reasons.join("; "))),
    );
    let limits = MigrationLimits {
        parallel_migrations_per_cluster: cluster.parallel_migrations_per_cluster,
        parallel_outbound_migrations_per_node: cluster.parallel_outbound_migrations_per_node,
    };
    let estimated_seconds = estimate_seconds(&plans, &limits, model);
    Ok(DrainPlan {
        api_version: "vm-drain-safe/v1",
        kind: "DrainPlan",
        node: node.to_string(),
        feasible: blockers.is_empty(),
        vms: plans,
        pods,
        blockers,
        limits,
        estimated_seconds,
        migration_model: *model,
    })
}

/// What stopping a VM means for it, by its run strategy.
fn shutdown_consequence(strategy: Option<RunStrategy>) -> String {
    match strategy {
        Some(RunStrategy::Always) => {
            "will be stopped; runStrategy Always restarts it on another node at once".into()
        }
        Some(s) => format!(
            "will be stopped and stays stopped (runStrategy {s}) until `kubectl vm-drain-safe NODE --uncordon` restarts it"
        ),
        None => "a standalone VMI: will be stopped and is not recreated".into(),
    }
}

/// Migrations run `min(per-cluster, per-node outbound)` at a time from one node; each takes
/// what `model` says for its memory. Greedy list scheduling, biggest first. The total is rounded
/// up to a whole second, less a microsecond of tolerance so that the rounding error of the
/// model's product does not add a second to a total that is whole.
pub(crate) fn estimate_seconds(plans: &[VmPlan], limits: &MigrationLimits, model: &MigrationModel) -> u64 {
    let slots = limits
        .parallel_migrations_per_cluster
        .min(limits.parallel_outbound_migrations_per_node)
        .max(1);
    let mut durations: Vec<f64> = plans
        .iter()
        .filter(|p| p.action == VmAction::Migrate)
        .map(|p| model.seconds(p.memory_bytes))
        .collect();
    durations.sort_by(|a, b| b.total_cmp(a));
    let mut lanes = vec![0.0_f64; slots as usize];
    for d in durations {
        let lane = lanes
            .iter_mut()
            .min_by(|a, b| a.total_cmp(b))
            .expect("at least one lane");
        *lane += d;
    }
    (lanes.into_iter().fold(0.0, f64::max) - 1e-6).ceil().max(0.0) as u64
}
