//! Capacity: a VM must fit on some node, and the rest of the cluster must be able to absorb the
//! VMs of any one node (seed: "verify that VMs can be scheduled on other nodes ... and that
//! sufficient resources are available").

use std::collections::{BTreeMap, HashMap};

use super::super::context::AuditContext;
use super::super::finding::{Category, Finding, ObjectRef, Severity};
use super::super::rule::Rule;
use super::super::subject::Subject;
use super::Out;
use crate::kubevirt::VirtualMachineInstance;
use crate::migratability::Migratability;
use crate::migration_target::{launcher_constraints, migration_target_with};
use crate::placement::{Constraints, Demand, Occupancy, Placement, Placer, PodTerms, shortfall};
use crate::planning::{summarise, vmi_migratability};
use crate::quantity::{format_bytes, format_cpu};
use crate::resources::{unknown_network_resources_note, vmi_launcher_requests};

static EMPTY: BTreeMap<String, String> = BTreeMap::new();

pub(crate) static EXCEEDS_EVERY_NODE: Rule = Rule {
    id: "capacity-exceeds-every-node",
    category: Category::Capacity,
    severity: Severity::Error,
    summary: "the VM's launcher pod requests more than any matching node can allocate",
    explanation: "The scheduler places the virt-launcher pod, whose requests are the guest's plus \
KubeVirt's overhead (about 250Mi plus page tables, per-vCPU and device costs). When they exceed the \
allocatable CPU or memory of every node the VM may run on, it can never start.\n\nFix: shrink the \
VM, or add bigger nodes that match its selector.",
};

pub(crate) static NODE_EVACUATION: Rule = Rule {
    id: "capacity-node-evacuation",
    category: Category::Capacity,
    severity: Severity::Warning,
    summary: "the VMs of this node do not all fit on the other nodes",
    explanation: "If this node is drained or fails, its VMs must be placed together on the other \
Ready, uncordoned KubeVirt nodes, within their free allocatable CPU and memory and their own \
selectors and tolerations. When they do not all fit, maintenance of this node blocks or a failure \
leaves VMs down.\n\nFix: add capacity, or spread the VMs' constraints over more nodes.",
};

pub(crate) static NETWORK_RESOURCE_UNKNOWN: Rule = Rule {
    id: "capacity-network-resource-unknown",
    category: Category::Capacity,
    severity: Severity::Info,
    summary: "a Multus network's NetworkAttachmentDefinition is not known, so its device resource is not counted",
    explanation: "For each Multus network of a VMI whose NetworkAttachmentDefinition carries the \
annotation k8s.v1.cni.cncf.io/resourceName (SR-IOV VFs, typically), KubeVirt makes the launcher \
pod request one of that device-plugin resource (pkg/network/multus/nad.go, renderresources.go), \
and only nodes with a free one can run the VM or take its migration. The NetworkAttachmentDefinition \
(k8s.cni.cncf.io/v1, in the VM's namespace unless networkName says ns/name) is not among the objects \
audited, so the capacity rules counted the pod without that resource.\n\nFix: add the \
NetworkAttachmentDefinition to the input, or audit the live cluster.",
};

pub(crate) fn check(ctx: &AuditContext<'_>, subject: &Subject<'_>, out: &mut Out<'_>) {
    let unknown = ctx.network_resources(subject).unknown;
    if let Some(note) = unknown_network_resources_note(&unknown, ctx.snapshot.where_looked()) {
        out.emit(
            &NETWORK_RESOURCE_UNKNOWN,
            note,
            format!(
                "add NetworkAttachmentDefinition {} to the input",
                unknown.join(", ")
            ),
        );
    }
    let Some(requests) = ctx.requests(subject) else {
        return;
    };
    let constraints = Constraints::of(subject.running_spec());
    let candidates: Vec<_> = ctx.nodes.iter().filter(|n| constraints.admits(n)).collect();
    if candidates.is_empty() {
        return; // node-placement-no-node says why.
    }
    let reasons: Vec<String> = candidates
        .iter()
        .filter_map(|n| shortfall(&requests, &n.allocatable, &n.name))
        .collect();
    if reasons.len() == candidates.len() {
        let shown: Vec<String> = reasons
            .iter()
            .take(3)
            .map(|r| r.replace(" free,", " allocatable,"))
            .collect();
        let assumed = ctx
            .built_in_sizing(subject)
            .map(|words| format!("; {words}"))
            .unwrap_or_default();
        out.emit(
            &EXCEEDS_EVERY_NODE,
            format!(
                "launcher pod requests {} memory and {} CPU (overhead included{assumed}), more than any matching node: {}",
                format_bytes(requests.memory),
                format_cpu(requests.cpu),
                shown.join("; ")
            ),
            "reduce the VM's size or add a bigger node that matches its selector",
        );
    }
}

/// For each node that runs VMIs: can the other nodes take them all at once?
pub(crate) fn check_nodes<'a>(
    ctx: &AuditContext<'a>,
) -> Vec<(ObjectRef, &'a BTreeMap<String, String>, Vec<Finding>)> {
    let mut audited = Vec::new();
    let occupancy = Occupancy::of_snapshot(ctx.snapshot, &ctx.launchers);
    // One placer for every node's evacuation: the nodes each set of constraints admits is
    // worked out once for the whole cluster.
    let mut placer = Placer::new(&ctx.nodes);
    let mut active_by_node: HashMap<&str, Vec<&VirtualMachineInstance>> = HashMap::new();
    for vmi in &ctx.snapshot.vmis {
        let status = vmi.status.as_ref();
        if let Some(node) = status.and_then(|s| s.node_name.as_deref())
            && matches!(
                status.and_then(|s| s.phase.as_deref()),
                Some("Running" | "Scheduled")
            )
        {
            active_by_node.entry(node).or_default().push(vmi);
        }
    }
    for node in &ctx.snapshot.nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let mut demands: Vec<Demand> = Vec::new();
        // VMs that get no target pod at all (KubeVirt refuses the migration), with why.
        let mut no_target: Vec<String> = Vec::new();
        let on_node = active_by_node.get(name).into_iter().flatten().copied();
        for vmi in on_node {
            let id = format!(
                "{}/{}",
                vmi.metadata.namespace.as_deref().unwrap_or("default"),
                vmi.metadata.name.as_deref().unwrap_or_default()
            );
            // What a drain does with it: a migratable VM needs room for its migration target
            // (with the CPU selectors and anti-affinity KubeVirt adds), any other a new
            // launcher pod when it is started again elsewhere.
            let migratable = vmi_migratability(ctx.snapshot, vmi, &ctx.cluster) == Migratability::Migratable;
            let demand = if migratable {
                match migration_target_with(ctx.snapshot, &ctx.launchers, vmi, &ctx.cluster) {
                    Ok((constraints, requests)) => Demand {
                        id,
                        requests,
                        constraints,
                        pod: PodTerms::of_migration_target(vmi, ctx.launchers.of_vmi(vmi)),
                    },
                    Err(why) => {
                        no_target.push(format!("{id} ({why})"));
                        continue;
                    }
                }
            } else {
                let Some(requests) = vmi_launcher_requests(ctx.snapshot, vmi, &ctx.cluster) else {
                    continue;
                };
                Demand {
                    id,
                    requests,
                    constraints: launcher_constraints(ctx.snapshot, vmi, &ctx.cluster),
                    pod: PodTerms::of_vmi(vmi, None),
                }
            };
            demands.push(demand);
        }
        if demands.is_empty() && no_target.is_empty() {
            continue;
        }
        // By name, so that the verdict and its message do not depend on the listing order.
        demands.sort_by(|a, b| a.id.cmp(&b.id));
        let object = ObjectRef {
            kind: "Node".into(),
            namespace: None,
            name: name.to_string(),
            source: None,
        };
        let mut findings = Vec::new();
        let mut out = Out::new(&object, &mut findings);
        let placements = placer.place_except(&demands, &occupancy, &[name]);
        let total = demands.len() + no_target.len();
        let mut stuck: Vec<String> = demands
            .iter()
            .zip(&placements)
            .filter_map(|(d, p)| match p {
                Placement::Unplaceable(reasons) => Some(format!("{} ({})", d.id, summarise(reasons))),
                Placement::Placed(_) => None,
            })
            .collect();
        stuck.extend(no_target);
        if !stuck.is_empty() {
            out.emit(
                &NODE_EVACUATION,
                format!(
                    "{} of the {} VMs on node {name} have no room elsewhere: {}",
                    stuck.len(),
                    total,
                    stuck.join("; ")
                ),
                "add capacity or widen these VMs' selectors before maintenance of this node",
            );
        }
        audited.push((
            object,
            node.metadata.annotations.as_ref().unwrap_or(&EMPTY),
            findings,
        ));
    }
    audited
}
