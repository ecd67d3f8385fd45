//! The assessment of `kubectl vm-recover --from-node NODE`: how to bring back the VMs of a node,
//! computed before anything changes.
//!
//! A Ready node whose KubeVirt answers still takes part in a live migration, so its VMs are
//! migrated away, as a drain would. A node that is down (NotReady or Unknown), or Ready but
//! with virt-handler silent ("stuck"), cannot be a migration source: recovery means fencing the
//! node, force-deleting the launcher pods, releasing the volumes and letting each VM's run
//! strategy restart it elsewhere. Only `Always` and `RerunOnFailure` do that by themselves; the
//! others stay stopped unless the operator asks (reference §1, §7).
//!
//! Every VM to move or restart is placed together with the others onto the surviving nodes, so
//! the plan says up front whether they have room.

mod launcher;
mod node;
#[cfg(test)]
mod tests;
mod volumes;

use serde::Serialize;

use crate::effective::{ClusterConfig, RunStrategy, run_strategy};
use crate::kubevirt::{VirtualMachine, VirtualMachineInstance};
use crate::migration_target::{TargetSources, launcher_constraints, migration_target_with};
use crate::placement::{Demand, Occupancy, Placement, PodTerms, place_jointly_except};
use crate::planning::{migration_blocker, other_nodes, summarise, vmi_migratability};
use crate::resources::vmi_launcher_requests;
use crate::snapshot::ClusterSnapshot;

pub use crate::drain::PlanError;
pub use launcher::{LauncherState, is_launcher_pod, launcher_pods, launcher_state};
pub use node::{
    DEFAULT_LEASE_DURATION_SECONDS, HEARTBEAT_ANNOTATION, HEARTBEAT_TIMEOUT_SECONDS, NODE_LEASE_NAMESPACE,
    NodeAssessment, NodeState, OUT_OF_SERVICE_TAINT, age_seconds, assess_node, lease_renew_time, node_lease,
};
pub use volumes::{attachments_on, is_single_node, rwo_claims};

/// The instant the ages are measured from; the caller passes the clock so the planner stays pure.
pub use k8s_openapi::jiff::Timestamp;

/// Choices the operator makes with flags.
#[derive(Clone, Debug, Default)]
pub struct RecoveryPolicy {
    /// `--start-stopped`: also start elsewhere the VMs KubeVirt would leave stopped
    /// (runStrategy Manual).
    pub start_stopped: bool,
}

/// What happens to one VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecoveryAction {
    /// Live-migrated away (the node is Ready and takes part).
    Migrate,
    /// Started on another node once the node is fenced and its launcher pod is gone.
    RestartElsewhere,
    /// Not restarted: KubeVirt leaves it stopped, and the operator did not ask otherwise.
    LeftStopped,
    /// Cannot be recovered as planned: the recovery is not feasible.
    Blocked,
}

/// How the VMs leave the node, which tells the caller what it may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryMode {
    /// The node is Ready and KubeVirt there answers: live-migrate, nothing destructive.
    LiveMigration,
    /// The node is down or stuck: fence it, force-delete its launcher pods, restart elsewhere.
    Fencing {
        /// The kubelet still renews its Lease, so the node may still run the VMs: force-deleting
        /// their pods could leave two copies of one VM. The caller refuses without `--force`.
        lease_renewing: bool,
    },
}

/// The plan for one VMI of the node.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VmRecovery {
    /// Namespace.
    pub namespace: String,
    /// VMI name.
    pub name: String,
    /// The VM that owns the VMI (same name and namespace), if there is one: only a VM is
    /// recreated after its VMI fails.
    pub vm: Option<String>,
    /// The VM's effective run strategy; `null` for a standalone VMI (or an invalid strategy).
    pub run_strategy: Option<String>,
    /// The VMI's `status.phase`.
    pub phase: Option<String>,
    /// The state of its launcher pod on the node.
    pub launcher_pod: LauncherState,
    /// Names of its launcher pods on the node (what a fencing recovery force-deletes).
    pub launcher_pods: Vec<String>,
    /// Its single-node (RWO) claims, which cannot attach elsewhere while held by the node.
    pub rwo_volumes: Vec<String>,
    /// VolumeAttachments on the node of those claims' volumes (what fencing releases).
    pub volume_attachments: Vec<String>,
    /// The action.
    pub action: RecoveryAction,
    /// Why, in an operator's words.
    pub reasons: Vec<String>,
    /// A node with room for it in the joint placement (advisory: the scheduler picks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The whole assessment.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryPlan {
    /// `vm-recover/v1`.
    pub api_version: &'static str,
    /// `RecoveryPlan`.
    pub kind: &'static str,
    /// The node to recover from.
    pub node: String,
    /// The node's Ready condition.
    pub node_state: NodeState,
    /// The node carries the out-of-service taint: it was confirmed off.
    pub fenced: bool,
    /// The evidence about the node's health.
    pub node_assessment: NodeAssessment,
    /// One entry per active VMI on the node.
    pub vms: Vec<VmRecovery>,
    /// Every blocked VM, one sentence each.
    pub blockers: Vec<String>,
    /// True when nothing blocks.
    pub recoverable: bool,
}

impl RecoveryPlan {
    /// Whether the VMs are live-migrated or restarted after fencing, and, for fencing, whether
    /// the node still shows signs of life.
    #[must_use]
    pub fn mode(&self) -> RecoveryMode {
        if self.node_assessment.needs_fencing() {
            RecoveryMode::Fencing {
                lease_renewing: self.node_assessment.lease_renewing,
            }
        } else {
            RecoveryMode::LiveMigration
        }
    }
}

/// Assesses `node` at `now` and plans the recovery of its VMs.
///
/// # Errors
/// [`PlanError::NoSuchNode`] when the node is not in the snapshot.
pub fn assess(
    snapshot: &ClusterSnapshot,
    node: &str,
    now: Timestamp,
    policy: &RecoveryPolicy,
) -> Result<RecoveryPlan, PlanError> {
    let node_object = snapshot
        .nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(node))
        .ok_or_else(|| PlanError::NoSuchNode(node.to_string()))?;
    let assessment = assess_node(node_object, node_lease(&snapshot.leases, node), now);
    let planner = Planner {
        snapshot,
        node,
        fencing: assessment.needs_fencing(),
        policy,
        cluster: ClusterConfig::from_crs(&snapshot.kubevirts, &snapshot.hyperconvergeds),
        launchers: TargetSources::of(snapshot),
    };
    let vms = planner.plan_vms();
    let blockers: Vec<String> = vms
        .iter()
        .filter(|v| v.action == RecoveryAction::Blocked)
        .map(|v| format!("VM {}/{}: {}", v.namespace, v.name, v.reasons.join("; ")))
        .collect();
    Ok(RecoveryPlan {
        api_version: "vm-recover/v1",
        kind: "RecoveryPlan",
        node: node.to_string(),
        node_state: assessment.state,
        fenced: assessment.out_of_service,
        node_assessment: assessment,
        vms,
        recoverable: blockers.is_empty(),
        blockers,
    })
}

/// What every per-VM decision needs.
struct Planner<'a> {
    snapshot: &'a ClusterSnapshot,
    node: &'a str,
    fencing: bool,
    policy: &'a RecoveryPolicy,
    cluster: ClusterConfig,
    launchers: TargetSources<'a>,
}

impl Planner<'_> {
    /// Plans every active VMI of the node, then places those that leave it all together.
    /// The active VMIs on the node, and, when fencing, the failed ones a VM still owns: a
    /// VM keeps one VMI, so its failed VMI on the dead node means it runs nowhere (a Manual
    /// VM waits there for `--start-stopped`; Always and RerunOnFailure are being restarted).
    fn vmis_to_recover(&self) -> Vec<&VirtualMachineInstance> {
        self.snapshot
            .vmis
            .iter()
            .filter(|v| v.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some(self.node))
            .filter(|v| {
                crate::drain::vmi_is_active(v)
                    || (self.fencing
                        && v.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
                        && owning_vm(self.snapshot, v).is_some())
            })
            .collect()
    }

    fn plan_vms(&self) -> Vec<VmRecovery> {
        let mut vms = Vec::new();
        let mut demands = Vec::new();
        let mut demand_index = Vec::new();
        for vmi in self.vmis_to_recover() {
            let mut recovery = self.plan_vmi(vmi);
            if matches!(
                recovery.action,
                RecoveryAction::Migrate | RecoveryAction::RestartElsewhere
            ) {
                match self.demand(vmi, recovery.action) {
                    Ok(demand) => {
                        demand_index.push(vms.len());
                        demands.push(demand);
                    }
                    Err(why) => {
                        recovery.action = RecoveryAction::Blocked;
                        recovery.reasons.push(why);
                    }
                }
            }
            vms.push(recovery);
        }
        let others = other_nodes(self.snapshot, self.node);
        let occupancy = Occupancy::of_snapshot(self.snapshot, &self.launchers);
        let placements = place_jointly_except(&demands, &others, &occupancy, &[]);
        for (placement, &i) in placements.iter().zip(&demand_index) {
            apply_placement(&mut vms[i], placement);
        }
        vms
    }

    /// The plan for one VMI, before placement.
    fn plan_vmi(&self, vmi: &VirtualMachineInstance) -> VmRecovery {
        let vm = owning_vm(self.snapshot, vmi);
        let strategy = vm.and_then(|vm| run_strategy(&vm.spec).strategy());
        let pods = launcher_pods(&self.snapshot.pods, self.node, vmi);
        let claims = rwo_claims(self.snapshot, vmi);
        let attachments = attachments_on(&self.snapshot.volume_attachments, self.node, &claims);
        let (action, reasons) = if self.fencing {
            fencing_action(vm.is_some(), strategy, self.policy)
        } else {
            migration_action(self.snapshot, vmi, &self.cluster)
        };
        VmRecovery {
            namespace: vmi.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: vmi.metadata.name.clone().unwrap_or_default(),
            vm: vm.and_then(|vm| vm.metadata.name.clone()),
            run_strategy: strategy.map(|s| s.to_string()),
            phase: vmi.status.as_ref().and_then(|s| s.phase.clone()),
            launcher_pod: launcher_state(&pods),
            launcher_pods: names(pods.iter().map(|p| &p.metadata)),
            rwo_volumes: names(claims.iter().map(|c| &c.metadata)),
            volume_attachments: names(attachments.iter().map(|a| &a.metadata)),
            action,
            reasons,
            target: None,
        }
    }

    /// What the VMI's pod needs on its next node: a migration's target pod (with the CPU
    /// selectors and anti-affinity KubeVirt adds) or, when the VM is started again elsewhere,
    /// a new launcher pod. `Err`: KubeVirt creates no target pod for it at all.
    fn demand(&self, vmi: &VirtualMachineInstance, action: RecoveryAction) -> Result<Demand, String> {
        let id = format!(
            "{}/{}",
            vmi.metadata.namespace.as_deref().unwrap_or("default"),
            vmi.metadata.name.as_deref().unwrap_or_default()
        );
        if action == RecoveryAction::Migrate {
            let (constraints, requests) =
                migration_target_with(self.snapshot, &self.launchers, vmi, &self.cluster)?;
            return Ok(Demand {
                id,
                requests,
                constraints,
                pod: PodTerms::of_migration_target(vmi, self.launchers.of_vmi(vmi)),
            });
        }
        Ok(Demand {
            id,
            requests: vmi_launcher_requests(self.snapshot, vmi, &self.cluster).unwrap_or_default(),
            constraints: launcher_constraints(self.snapshot, vmi, &self.cluster),
            pod: PodTerms::of_vmi(vmi, None),
        })
    }
}

/// The VM that owns `vmi`: the one of the same name and namespace (KubeVirt names the VMI after
/// its VM).
fn owning_vm<'a>(snapshot: &'a ClusterSnapshot, vmi: &VirtualMachineInstance) -> Option<&'a VirtualMachine> {
    snapshot
        .vms
        .iter()
        .find(|vm| vm.metadata.name == vmi.metadata.name && vm.metadata.namespace == vmi.metadata.namespace)
}

/// The names of the objects, in order.
fn names<'a>(
    metas: impl Iterator<Item = &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
) -> Vec<String> {
    metas.filter_map(|m| m.name.clone()).collect()
}

/// On a Ready node: migrate what KubeVirt can migrate, block the rest with its reason.
fn migration_action(
    snapshot: &ClusterSnapshot,
    vmi: &VirtualMachineInstance,
    cluster: &ClusterConfig,
) -> (RecoveryAction, Vec<String>) {
    match migration_blocker(&vmi_migratability(snapshot, vmi, cluster)) {
        None => (RecoveryAction::Migrate, Vec::new()),
        Some(why) => (
            RecoveryAction::Blocked,
            vec![
                why,
                "the node is Ready, so it is not restarted elsewhere (`kubectl vm-drain-safe NODE \
                 --shutdown-non-migratable` stops it instead)"
                    .into(),
            ],
        ),
    }
}

/// On a node that is down or stuck: what the VM's run strategy does once its VMI fails.
fn fencing_action(
    has_vm: bool,
    strategy: Option<RunStrategy>,
    policy: &RecoveryPolicy,
) -> (RecoveryAction, Vec<String>) {
    let restart = |why: String| (RecoveryAction::RestartElsewhere, vec![why]);
    let stopped = |why: String| (RecoveryAction::LeftStopped, vec![why]);
    match strategy {
        None if !has_vm => stopped("standalone VMI: nothing recreates it".into()),
        None => stopped("the VM's runStrategy is not valid: KubeVirt does not restart it".into()),
        Some(s @ (RunStrategy::Always | RunStrategy::RerunOnFailure)) => restart(format!(
            "runStrategy {s}: KubeVirt starts it on another node once its launcher pod is gone"
        )),
        Some(RunStrategy::Manual) if policy.start_stopped => restart(
            "runStrategy Manual: KubeVirt does not restart it; started elsewhere because of --start-stopped"
                .into(),
        ),
        Some(RunStrategy::Manual) => stopped(
            "runStrategy Manual: KubeVirt does not restart it; --start-stopped starts it elsewhere".into(),
        ),
        Some(RunStrategy::Halted) => stopped("runStrategy Halted: KubeVirt keeps it stopped".into()),
        Some(RunStrategy::Once) => {
            stopped("runStrategy Once: it has had its one run; KubeVirt does not restart it".into())
        }
        Some(RunStrategy::WaitAsReceiver) => stopped(
            "runStrategy WaitAsReceiver: it waits for an incoming migration; KubeVirt does not restart it"
                .into(),
        ),
    }
}

/// Records where the joint placement put the VM, or blocks it with the placement's reasons.
fn apply_placement(vm: &mut VmRecovery, placement: &Placement) {
    match placement {
        Placement::Placed(target) => vm.target = Some(target.clone()),
        Placement::Unplaceable(reasons) => {
            vm.action = RecoveryAction::Blocked;
            vm.reasons
                .push(format!("no other node can take it: {}", summarise(reasons)));
        }
    }
}
