//! Node placement: selectors and affinity must leave somewhere to go (seed: "Common Practices",
//! "Maintenance of Node Handling": "ensure there are no restrictions in the node selector").

use k8s_openapi::api::core::v1::NodeSelectorTerm;

use super::super::context::AuditContext;
use super::super::finding::{Category, Severity};
use super::super::rule::Rule;
use super::super::subject::Subject;
use super::Out;
use crate::placement::Constraints;

const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

pub(crate) static PINNED: Rule = Rule {
    id: "node-placement-pinned",
    category: Category::NodePlacement,
    severity: Severity::Warning,
    summary: "the VM is pinned to one named node",
    explanation: "A nodeSelector on kubernetes.io/hostname, or a required node affinity naming a \
single node, ties the VM to that node: it cannot live-migrate for maintenance and cannot be \
restarted elsewhere when the node dies.\n\nFix: select nodes by a label that several nodes carry \
(a rack, a zone, a hardware class).",
};

pub(crate) static SINGLE_NODE: Rule = Rule {
    id: "node-placement-single-node",
    category: Category::NodePlacement,
    severity: Severity::Warning,
    summary: "only one node matches the VM's nodeSelector, affinity and tolerations",
    explanation: "The VM's constraints leave exactly one node. Draining that node has nowhere to \
send the VM, and its failure leaves the VM down.\n\nFix: widen the selector, or label more nodes.",
};

pub(crate) static NO_NODE: Rule = Rule {
    id: "node-placement-no-node",
    category: Category::NodePlacement,
    severity: Severity::Error,
    summary: "no node matches the VM's nodeSelector, affinity and tolerations",
    explanation: "No known node satisfies the VM's nodeSelector, required node affinity and \
taints together, so its launcher pod stays Pending (ErrorUnschedulable).\n\nFix: correct the \
selector, label a node, or add the toleration the nodes' taints need.",
};

pub(crate) static NO_MIGRATION_TARGET: Rule = Rule {
    id: "node-placement-no-migration-target",
    category: Category::NodePlacement,
    severity: Severity::Error,
    summary: "no other node meets the constraints of the VM's migration target pod",
    explanation: "A migration's target pod carries more than the VM asks for: KubeVirt pins it \
to the source node's CPU vendor, and for the default host-model CPU to the source's host model and \
its required CPU features (carried forward after each migration); dedicated CPUs need \
kubevirt.io/cpumanager=true, a named CPU model its cpu-model label. When no other node has them \
all, every drain of the VM's node hangs with the target pod Pending, and KubeVirt deletes it after \
5 minutes and tries again.\n\nFix: give the VM a CPU model that several nodes offer (a common named \
model instead of host-model), or add a node of the same CPU generation.",
};

/// The single node a term pins to, if it does.
fn pinned_by_term(term: &NodeSelectorTerm) -> Option<String> {
    let single = |key: &str, values: &Option<Vec<String>>, op: &str| {
        (op == "In" && values.as_ref().is_some_and(|v| v.len() == 1)).then(|| {
            (
                key.to_string(),
                values.as_ref().map(|v| v[0].clone()).unwrap_or_default(),
            )
        })
    };
    term.match_expressions
        .iter()
        .flatten()
        .filter(|r| r.key == HOSTNAME_LABEL)
        .find_map(|r| single(&r.key, &r.values, &r.operator))
        .or_else(|| {
            term.match_fields
                .iter()
                .flatten()
                .filter(|r| r.key == "metadata.name")
                .find_map(|r| single(&r.key, &r.values, &r.operator))
        })
        .map(|(key, value)| format!("required node affinity {key} In [{value}]"))
}

fn pinned(c: &Constraints) -> Option<String> {
    if let Some(host) = c.node_selector.get(HOSTNAME_LABEL) {
        return Some(format!("nodeSelector {HOSTNAME_LABEL}={host}"));
    }
    // Pinned only when every alternative term pins.
    let pins: Vec<String> = c.required_terms.iter().filter_map(pinned_by_term).collect();
    (!c.required_terms.is_empty() && pins.len() == c.required_terms.len() && c.required_terms.len() == 1)
        .then(|| pins[0].clone())
}

/// A running VMI whose migration target no other node admits (labels, affinity, taints; room is
/// the capacity rules' business).
fn check_migration_target(ctx: &AuditContext<'_>, subject: &Subject<'_>, out: &mut Out<'_>) {
    let Some(vmi) = subject.vmi else {
        return;
    };
    let Some(source) = vmi.status.as_ref().and_then(|s| s.node_name.as_deref()) else {
        return;
    };
    let others = || ctx.nodes.iter().filter(|n| n.name != source);
    if others().next().is_none() {
        return;
    }
    let constraints =
        match crate::migration_target::migration_target_with(ctx.snapshot, &ctx.launchers, vmi, &ctx.cluster)
        {
            Ok((c, _)) => c,
            Err(why) => {
                out.emit(
                    &NO_MIGRATION_TARGET,
                    why,
                    "label the node's host model, or give the VM a named CPU model",
                );
                return;
            }
        };
    // Nothing beyond the VM's own constraints, or its own selectors, affinity and tolerations
    // already leave no other node: the pinned and no-node rules say so. This rule is about
    // what KubeVirt adds to the target.
    let own = Constraints::of(subject.running_spec());
    if constraints.origins.is_empty() || !others().any(|n| own.admits(n)) {
        return;
    }
    if !others().any(|n| constraints.admits(n)) {
        let reasons: Vec<String> = others().filter_map(|n| constraints.admit(n).err()).collect();
        out.emit(
            &NO_MIGRATION_TARGET,
            format!(
                "no other node can take its migration target (running on node {source}): {}",
                crate::planning::group_by_node(&reasons).join("; ")
            ),
            "use a CPU model several nodes offer, or add a node of the same CPU generation",
        );
    }
}

pub(crate) fn check(ctx: &AuditContext<'_>, subject: &Subject<'_>, out: &mut Out<'_>) {
    check_migration_target(ctx, subject, out);
    let constraints = Constraints::of(subject.template_spec());
    let pin = pinned(&constraints);
    if let Some(how) = &pin {
        out.emit(
            &PINNED,
            format!("{how} pins the VM to one node"),
            "select by a label that several nodes carry",
        );
    }
    if ctx.nodes.is_empty() {
        return;
    }
    // Two matches settle it; the sentences are written only when no node matches.
    let matching: Vec<&str> = ctx
        .nodes
        .iter()
        .filter(|n| constraints.admits(n))
        .map(|n| n.name.as_str())
        .take(2)
        .collect();
    match matching.as_slice() {
        [] => {
            let reasons: Vec<String> = ctx
                .nodes
                .iter()
                .filter_map(|n| constraints.admit(n).err())
                .collect();
            let summary = crate::planning::group_by_node(&reasons).join("; ");
            out.emit(
                &NO_NODE,
                format!("no node of {} matches: {summary}", ctx.nodes.len()),
                format!(
                    "fix {}/affinity/tolerations or label a node",
                    subject.spec_path("nodeSelector")
                ),
            );
        }
        [only] if pin.is_none() && ctx.nodes.len() > 1 => out.emit(
            &SINGLE_NODE,
            format!(
                "only node {only} of {} matches the VM's nodeSelector, affinity and tolerations",
                ctx.nodes.len()
            ),
            "widen the selector or label more nodes so the VM has somewhere to go",
        ),
        _ => {}
    }
}
