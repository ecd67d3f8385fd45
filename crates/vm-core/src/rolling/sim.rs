//! The cluster as a rolling round leaves it, step by step: a copy of the snapshot on which each
//! planned step is applied, so that the next step is planned by [`plan_drain_with`] against
//! where the earlier ones put the VMs. There is no second placement engine: a step's allowed
//! targets are expressed by cordoning, in the copy, the nodes it may not use.
//!
//! Objects are never added or removed once the copy is made (a stopped VM and its pod are marked
//! finished instead), so indices stay valid and a step can be taken back exactly when the order
//! search backtracks.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    Affinity, Container, Node, NodeAffinity, NodeCondition, NodeSelector, NodeSpec, Pod, PodSpec, PodStatus,
    ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::drain::{DrainPlan, DrainPolicy, VmAction, plan_drain_with, vmi_is_active};
use crate::effective::ClusterConfig;
use crate::eta::MigrationModel;
use crate::kubevirt::{VirtualMachineInstance, VirtualMachineInstanceStatus};
use crate::migration_target::{TargetSources, migration_target_with, running_launcher_constraints};
use crate::placement::inter_pod::CREATED_BY_LABEL;
use crate::placement::{NodeView, PodTerms, SCHEDULABLE_LABEL, pod_is_finished, pod_requests};
use crate::resources::{Requests, vmi_launcher_requests};
use crate::snapshot::ClusterSnapshot;

/// The phase a stopped VMI and its pod are given: finished, so they neither hold room nor
/// count as on their node.
const STOPPED: &str = "Succeeded";

/// The simulated cluster.
#[derive(Clone, Debug)]
pub(super) struct Sim {
    /// The objects, with the applied steps.
    pub snapshot: ClusterSnapshot,
    cluster: ClusterConfig,
    /// Node index by name.
    nodes: HashMap<String, usize>,
    /// VMI index by `namespace/name`.
    vmis: HashMap<String, usize>,
    /// Pod indices by the UID in their `kubevirt.io/created-by` label.
    launchers: HashMap<String, Vec<usize>>,
}

/// The taints kube-controller-manager puts on a node that is not Ready, and takes off once
/// it is.
const LIFECYCLE_TAINTS: [&str; 2] = ["node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"];

/// What applying steps changed: the previous value of each object touched, to restore in
/// reverse order.
#[derive(Debug, Default)]
pub(super) struct Undo {
    vmis: Vec<(usize, Option<VirtualMachineInstanceStatus>)>,
    pods: Vec<(usize, Pod)>,
    nodes: Vec<(usize, Node)>,
}

impl Sim {
    /// A copy of `snapshot` in which every running VMI without a launcher pod (read from
    /// manifests) gets the pod KubeVirt rendered for it, so that its requests take room on its
    /// node and travel with it when it moves.
    pub fn new(snapshot: &ClusterSnapshot) -> Self {
        let mut snapshot = snapshot.clone();
        let cluster = ClusterConfig::from_crs(&snapshot.kubevirts, &snapshot.hyperconvergeds);
        materialize_launchers(&mut snapshot, &cluster);
        let nodes = index_by(&snapshot.nodes, |n| n.metadata.name.clone());
        let vmis = index_by(&snapshot.vmis, |v| Some(vmi_key(v)));
        let mut launchers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, pod) in snapshot.pods.iter().enumerate() {
            if let Some(uid) = pod.metadata.labels.as_ref().and_then(|l| l.get(CREATED_BY_LABEL)) {
                launchers.entry(uid.clone()).or_default().push(i);
            }
        }
        Self {
            snapshot,
            cluster,
            nodes,
            vmis,
            launchers,
        }
    }

    /// The drain plan of `node` when only the nodes `allowed` says yes to may take its VMs: the
    /// others are cordoned for the time of the call. `model` is the round's, fitted once: the
    /// copy keeps the snapshot's migrations as they were, so a refit would give the same.
    pub fn plan(
        &mut self,
        node: &str,
        allowed: &dyn Fn(&str) -> bool,
        policy: &DrainPolicy,
        model: &MigrationModel,
    ) -> DrainPlan {
        let mut saved = Vec::new();
        for (i, n) in self.snapshot.nodes.iter_mut().enumerate() {
            let name = n.metadata.name.as_deref().unwrap_or_default();
            if name != node && !allowed(name) {
                let spec = n.spec.get_or_insert_with(NodeSpec::default);
                saved.push((i, spec.unschedulable));
                spec.unschedulable = Some(true);
            }
        }
        let plan = plan_drain_with(&self.snapshot, node, policy, model);
        for (i, old) in saved {
            if let Some(spec) = self.snapshot.nodes[i].spec.as_mut() {
                spec.unschedulable = old;
            }
        }
        // The node was checked to exist when the round was validated.
        plan.expect("round nodes exist in the snapshot")
    }

    /// Applies the moves of `plan` for `node`: each migrated VMI and its launcher pod go to the
    /// target, the pod selecting what the migration target selects (the CPU selectors a
    /// host-model VM carries forward); each VM shut down is stopped with its pod. Blocked VMs
    /// stay. Other pods stay too: they are evicted, and where their controller recreates them
    /// is not known, so their load is left where it was.
    pub fn apply(&mut self, node: &str, plan: &DrainPlan, undo: &mut Undo) {
        let mut moves = Vec::new();
        {
            let sources = TargetSources::of(&self.snapshot);
            for vm in &plan.vms {
                let Some(&v) = self.vmis.get(&format!("{}/{}", vm.namespace, vm.name)) else {
                    continue;
                };
                let vmi = &self.snapshot.vmis[v];
                let pod = self.launcher_on(vmi, node);
                match (vm.action, vm.target.as_deref()) {
                    (VmAction::Migrate, Some(target)) => {
                        let selector = migration_target_with(&self.snapshot, &sources, vmi, &self.cluster)
                            .map(|(c, _)| c.node_selector)
                            .unwrap_or_default();
                        moves.push((v, pod, Some((target.to_string(), selector))));
                    }
                    (VmAction::Shutdown, _) => moves.push((v, pod, None)),
                    _ => {}
                }
            }
        }
        for (v, pod, to) in moves {
            let status = self.snapshot.vmis[v].status.get_or_insert_with(Default::default);
            undo.vmis.push((v, Some(status.clone())));
            match &to {
                Some((target, _)) => status.node_name = Some(target.clone()),
                None => status.phase = Some(STOPPED.into()),
            }
            if let Some(p) = pod {
                let pod = &mut self.snapshot.pods[p];
                undo.pods.push((p, pod.clone()));
                match to {
                    Some((target, selector)) => {
                        let spec = pod.spec.get_or_insert_with(PodSpec::default);
                        spec.node_name = Some(target);
                        spec.node_selector = Some(selector);
                    }
                    None => {
                        pod.status.get_or_insert_with(PodStatus::default).phase = Some(STOPPED.into());
                        if let Some(spec) = pod.spec.as_mut() {
                            spec.node_name = None;
                        }
                    }
                }
            }
        }
    }

    /// A maintained node comes back: uncordoned, Ready (without the lifecycle taints) and
    /// KubeVirt-schedulable, as the round waits for it to be before it goes on (a node just
    /// rebooted may not be any of these yet when the round is planned).
    pub fn bring_back(&mut self, node: &str, undo: &mut Undo) {
        if let Some(&i) = self.nodes.get(node) {
            let n = &mut self.snapshot.nodes[i];
            undo.nodes.push((i, n.clone()));
            n.spec.get_or_insert_with(NodeSpec::default).unschedulable = Some(false);
            n.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(SCHEDULABLE_LABEL.into(), "true".into());
            // Ready again: the node lifecycle controller takes its NotReady and unreachable
            // taints off.
            if let Some(taints) = n.spec.as_mut().and_then(|s| s.taints.as_mut()) {
                taints.retain(|t| !LIFECYCLE_TAINTS.contains(&t.key.as_str()));
            }
            let conditions = n
                .status
                .get_or_insert_with(Default::default)
                .conditions
                .get_or_insert_with(Vec::new);
            match conditions.iter_mut().find(|c| c.type_ == "Ready") {
                Some(c) => c.status = "True".into(),
                None => conditions.push(NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..NodeCondition::default()
                }),
            }
        }
    }

    /// Takes back what `undo` recorded, latest change first.
    pub fn undo(&mut self, undo: Undo) {
        for (i, node) in undo.nodes.into_iter().rev() {
            self.snapshot.nodes[i] = node;
        }
        for (i, pod) in undo.pods.into_iter().rev() {
            self.snapshot.pods[i] = pod;
        }
        for (i, status) in undo.vmis.into_iter().rev() {
            self.snapshot.vmis[i].status = status;
        }
    }

    /// The unfinished launcher pod of `vmi` bound to `node`.
    fn launcher_on(&self, vmi: &VirtualMachineInstance, node: &str) -> Option<usize> {
        let uid = vmi.metadata.uid.as_deref()?;
        self.launchers.get(uid)?.iter().copied().find(|&p| {
            let pod = &self.snapshot.pods[p];
            !pod_is_finished(pod) && pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
        })
    }

    /// What the active VMIs on `node` request through their launcher pods: all of them, and
    /// those that can live-migrate (the ones that need room elsewhere).
    pub fn demand_on(&self, node: &str) -> (Requests, Requests) {
        let mut all = Requests::default();
        let mut migrating = Requests::default();
        for vmi in crate::drain::vmis_on(&self.snapshot, node) {
            let Some(p) = self.launcher_on(vmi, node) else {
                continue;
            };
            let requests = pod_requests(&self.snapshot.pods[p]);
            all += &requests;
            if crate::planning::vmi_migratability(&self.snapshot, vmi, &self.cluster)
                == crate::migratability::Migratability::Migratable
            {
                migrating += &requests;
            }
        }
        (all, migrating)
    }

    /// Every node as the placement engine sees it now.
    pub fn views(&self) -> Vec<NodeView> {
        NodeView::all(&self.snapshot.nodes, &self.snapshot.pods)
    }

    /// Whether VMI `namespace/name` is on `node` now.
    pub fn vmi_on(&self, namespace: &str, name: &str, node: &str) -> Option<&VirtualMachineInstance> {
        let vmi = &self.snapshot.vmis[*self.vmis.get(&format!("{namespace}/{name}"))?];
        (vmi.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)).then_some(vmi)
    }

    /// The cluster configuration in force.
    pub fn cluster(&self) -> &ClusterConfig {
        &self.cluster
    }
}

fn index_by<T>(items: &[T], key: impl Fn(&T) -> Option<String>) -> HashMap<String, usize> {
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| Some((key(item)?, i)))
        .collect()
}

/// `namespace/name`, as drain plans name VMs.
fn vmi_key(vmi: &VirtualMachineInstance) -> String {
    format!(
        "{}/{}",
        vmi.metadata.namespace.as_deref().unwrap_or("default"),
        vmi.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Gives each running VMI without a launcher pod the pod KubeVirt renders for it on its node
/// (and a UID to link them, when the manifest has none): same labels, selectors, affinity,
/// tolerations, spread constraints and requests as the planners assume for it without a pod.
fn materialize_launchers(snapshot: &mut ClusterSnapshot, cluster: &ClusterConfig) {
    let mut added = Vec::new();
    {
        let sources = TargetSources::of(snapshot);
        for (i, vmi) in snapshot.vmis.iter().enumerate() {
            let status = vmi.status.as_ref();
            let running = matches!(
                status.and_then(|s| s.phase.as_deref()),
                Some("Running" | "Scheduled")
            );
            let Some(node) = status.and_then(|s| s.node_name.clone()) else {
                continue;
            };
            if !running || !vmi_is_active(vmi) || sources.of_vmi(vmi).is_some() {
                continue;
            }
            let uid = vmi
                .metadata
                .uid
                .clone()
                .unwrap_or_else(|| format!("planned:{}", vmi_key(vmi)));
            let mut with_uid = vmi.clone();
            with_uid.metadata.uid = Some(uid.clone());
            added.push((i, uid, rendered_pod(snapshot, &with_uid, &node, cluster)));
        }
    }
    for (i, uid, pod) in added {
        snapshot.vmis[i].metadata.uid = Some(uid);
        snapshot.pods.push(pod);
    }
}

/// The launcher pod of `vmi` on `node`, as rendered from its spec.
fn rendered_pod(
    snapshot: &ClusterSnapshot,
    vmi: &VirtualMachineInstance,
    node: &str,
    cluster: &ClusterConfig,
) -> Pod {
    let constraints = running_launcher_constraints(snapshot, vmi, cluster);
    let requests = vmi_launcher_requests(snapshot, vmi, cluster).unwrap_or_default();
    let requests: BTreeMap<String, Quantity> = requests
        .iter()
        .map(|(name, amount)| (name.to_string(), Quantity(format!("{amount}"))))
        .collect();
    let vmi_affinity = vmi.spec.affinity.clone().unwrap_or_default();
    let node_affinity = (!constraints.required_terms.is_empty()).then(|| NodeAffinity {
        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
            node_selector_terms: constraints.required_terms.clone(),
        }),
        ..NodeAffinity::default()
    });
    Pod {
        metadata: ObjectMeta {
            name: Some(format!(
                "virt-launcher-{}-planned",
                vmi.metadata.name.as_deref().unwrap_or_default()
            )),
            namespace: vmi.metadata.namespace.clone(),
            labels: Some(PodTerms::of_vmi(vmi, None).labels),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.to_string()),
            node_selector: Some(constraints.node_selector),
            affinity: Some(Affinity {
                node_affinity,
                pod_affinity: vmi_affinity.pod_affinity,
                pod_anti_affinity: vmi_affinity.pod_anti_affinity,
            }),
            tolerations: Some(constraints.tolerations),
            topology_spread_constraints: vmi.spec.topology_spread_constraints.clone(),
            containers: vec![Container {
                name: "compute".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(requests),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            ..PodStatus::default()
        }),
    }
}
