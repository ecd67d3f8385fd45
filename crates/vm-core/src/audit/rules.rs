//! The rule catalogue and the code that runs it. One module per category.

pub(crate) mod capacity;
pub(crate) mod configuration;
pub(crate) mod eviction;
pub(crate) mod live_migration;
pub(crate) mod node_placement;
pub(crate) mod probes;
pub(crate) mod resources;
pub(crate) mod run_strategy;

use std::collections::BTreeMap;

use super::context::AuditContext;
use super::finding::{Finding, ObjectRef};
use super::rule::Rule;
use super::subject::Subject;

/// Every rule, in the order `--list-rules` prints them.
pub static RULES: &[&Rule] = &[
    &run_strategy::NOT_RESTARTING,
    &run_strategy::MISSING,
    &run_strategy::HALTED,
    &run_strategy::DEPRECATED_RUNNING,
    &run_strategy::CONFLICT,
    &run_strategy::INVALID,
    &run_strategy::RERUN_ON_FAILURE_EVICTION,
    &run_strategy::STANDALONE_VMI,
    &resources::MEMORY_MISSING,
    &resources::CPU_MISSING,
    &resources::LIMITS_MISSING,
    &resources::INSTANCETYPE_NOT_FOUND,
    &resources::INSTANCETYPE_CONFLICT,
    &resources::MEMORY_OVERCOMMITTED,
    &eviction::NOT_LIVE_MIGRATE,
    &eviction::INVALID,
    &eviction::STALE,
    &live_migration::LIVE_MIGRATE_NOT_MIGRATABLE,
    &live_migration::NOT_MIGRATABLE,
    &live_migration::UNKNOWN,
    &live_migration::TIMEOUT_EXCEEDS_LIMIT,
    &live_migration::LARGE_WITHOUT_CONVERGENCE,
    &node_placement::PINNED,
    &node_placement::SINGLE_NODE,
    &node_placement::NO_NODE,
    &node_placement::NO_MIGRATION_TARGET,
    &capacity::EXCEEDS_EVERY_NODE,
    &capacity::NODE_EVACUATION,
    &capacity::NETWORK_RESOURCE_UNKNOWN,
    &probes::LIVENESS_MISSING,
    &probes::READINESS_MISSING,
    &probes::INVALID,
    &probes::LIVENESS_TOO_EARLY,
    &probes::TIMEOUT_EXCEEDS_PERIOD,
    &configuration::GRACE_PERIOD_ZERO,
    &configuration::PDB_BLOCKS_DRAIN,
    &configuration::SUPPRESSION_MISSING_REASON,
    &configuration::SUPPRESSION_UNKNOWN_RULE,
];

/// Collects the findings of one object.
pub(crate) struct Out<'a> {
    object: &'a ObjectRef,
    findings: &'a mut Vec<Finding>,
}

impl<'a> Out<'a> {
    pub(crate) fn new(object: &'a ObjectRef, findings: &'a mut Vec<Finding>) -> Self {
        Self { object, findings }
    }

    /// Records a finding of `rule` with its own severity.
    pub(crate) fn emit(&mut self, rule: &Rule, message: impl Into<String>, hint: impl Into<String>) {
        self.findings.push(Finding {
            object: self.object.clone(),
            rule: rule.id.to_string(),
            category: rule.category,
            severity: rule.severity,
            message: message.into(),
            hint: hint.into(),
        });
    }
}

/// Runs every per-object rule on `subject`.
pub(crate) fn check_subject(ctx: &AuditContext<'_>, subject: &Subject<'_>, findings: &mut Vec<Finding>) {
    let mut out = Out::new(&subject.object, findings);
    run_strategy::check(ctx, subject, &mut out);
    resources::check(ctx, subject, &mut out);
    eviction::check(ctx, subject, &mut out);
    live_migration::check(ctx, subject, &mut out);
    node_placement::check(ctx, subject, &mut out);
    capacity::check(ctx, subject, &mut out);
    probes::check(ctx, subject, &mut out);
    configuration::check(ctx, subject, &mut out);
}

/// The node-evacuation rule of every node (see [`capacity::check_nodes`]).
pub(crate) fn check_node_evacuation<'a>(
    ctx: &AuditContext<'a>,
) -> Vec<(ObjectRef, &'a BTreeMap<String, String>, Vec<Finding>)> {
    capacity::check_nodes(ctx)
}

/// Runs the rules about cluster objects (nodes, PDBs); returns each object audited with its
/// annotations and findings.
pub(crate) fn check_cluster<'a>(
    ctx: &AuditContext<'a>,
) -> Vec<(ObjectRef, &'a BTreeMap<String, String>, Vec<Finding>)> {
    let mut audited = check_node_evacuation(ctx);
    audited.extend(configuration::check_pdbs(ctx));
    audited
}
