//! The audit: every VM-like object in a snapshot against every best-practice rule.
//!
//! Each rule has a stable id (kebab-case, never reused), a category, a severity, a one-line
//! summary and a longer explanation (`--explain ID`). Checks live in `rules/`, one file per
//! category; they read a [`Subject`] (a VM, standalone VMI, VMI ReplicaSet or VM pool, with the
//! VMI that runs it) through an [`AuditContext`] that holds the snapshot and the resolved
//! cluster configuration.

mod context;
mod finding;
mod rule;
mod rules;
mod subject;
mod suppression;

pub use context::{AuditContext, AuditOptions};
pub use finding::{AuditReport, Category, Finding, ObjectRef, Severity, Summary};
pub use rule::Rule;
pub use rules::RULES;
pub use subject::Subject;
pub use suppression::{SUPPRESS_ANNOTATION, SUPPRESS_REASON_ANNOTATION};

use crate::snapshot::ClusterSnapshot;

/// The migration options KubeVirt would give a migration of `subject`'s VMI: the KubeVirt (or
/// HyperConverged) CR's, overridden by the MigrationPolicy that selects it (see
/// [`crate::effective::matching_policy`] for the matching and its tie-breaks). The snapshot
/// holds no Namespace objects, so a policy with a non-empty `namespaceSelector` is taken not
/// to match; such policies are listed in `unchecked_policies`.
#[must_use]
pub fn effective_migration_settings(
    snapshot: &ClusterSnapshot,
    subject: &Subject<'_>,
) -> crate::effective::MigrationSettings {
    crate::effective::migration_settings(
        &crate::effective::ClusterConfig::from_crs(&snapshot.kubevirts, &snapshot.hyperconvergeds),
        &snapshot.migration_policies,
        subject.vmi_labels(),
        None,
    )
}

/// Looks a rule up by id.
#[must_use]
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().copied().find(|r| r.id == id)
}

/// Audits every object in `snapshot` with the default options (no operator limits).
#[must_use]
pub fn audit(snapshot: &ClusterSnapshot) -> AuditReport {
    audit_with(snapshot, &AuditOptions::default())
}

/// Audits every object in `snapshot` against the rules and the operator's `options` (for
/// instance `max_migration_seconds`, which turns on `migration-timeout-exceeds-limit`).
#[must_use]
pub fn audit_with(snapshot: &ClusterSnapshot, options: &AuditOptions) -> AuditReport {
    let ctx = AuditContext::with_options(snapshot, options);
    let mut report = AuditReport::default();
    for subject in subject::subjects(snapshot) {
        let mut found = Vec::new();
        rules::check_subject(&ctx, &subject, &mut found);
        suppression::apply(&subject.object, subject.annotations, found, &mut report);
        report.audited.push(subject.object);
    }
    for (object, annotations, found) in rules::check_cluster(&ctx) {
        suppression::apply(&object, annotations, found, &mut report);
        report.audited.push(object);
    }
    report.sort();
    report
}

/// The node-evacuation capacity rule alone, over the whole cluster: for every node that runs
/// VMIs, whether the other nodes can take them all at once (the costliest rule; the placement
/// engine's benchmark times it on its own). Findings are unsuppressed.
#[must_use]
pub fn node_evacuation(snapshot: &ClusterSnapshot) -> Vec<Finding> {
    let ctx = AuditContext::new(snapshot);
    rules::check_node_evacuation(&ctx)
        .into_iter()
        .flat_map(|(_, _, found)| found)
        .collect()
}

#[cfg(test)]
mod tests;
