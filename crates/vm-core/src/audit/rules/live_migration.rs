//! Live migration: a VM that asks to be live-migrated on eviction but cannot be blocks every
//! drain of its node for ever (the `VMCannotBeEvicted` alert).

use super::super::context::AuditContext;
use super::super::finding::{Category, Severity};
use super::super::rule::Rule;
use super::super::subject::Subject;
use super::Out;
use crate::effective::EvictionStrategy;
use crate::migratability::Migratability;

pub(crate) static LIVE_MIGRATE_NOT_MIGRATABLE: Rule = Rule {
    id: "live-migrate-not-migratable",
    category: Category::LiveMigration,
    severity: Severity::Error,
    summary: "evictionStrategy LiveMigrate on a VM that cannot be live-migrated: every drain hangs",
    explanation: "KubeVirt's eviction webhook denies the eviction of a launcher pod whose VMI has \
evictionStrategy LiveMigrate but is not live-migratable (\"VMI ... is configured with an eviction \
strategy but is not live-migratable\"), so `kubectl drain` of its node retries for ever. Common \
causes: a ReadWriteOnce PVC (DisksNotLiveMigratable), a bridge on the pod network, host devices or \
GPUs, a non-shared hostDisk.\n\nFix: use ReadWriteMany storage and masquerade binding, or choose \
another eviction strategy and plan for the downtime.",
};

pub(crate) static NOT_MIGRATABLE: Rule = Rule {
    id: "live-migration-not-migratable",
    category: Category::LiveMigration,
    severity: Severity::Warning,
    summary: "the VM cannot be live-migrated: node maintenance stops it",
    explanation: "All recovery procedures of the best-practice guide assume live-migratable VMs. \
This VM cannot move while running: a drain or a node failure stops it.\n\nFix: remove the cause \
named in the message (ReadWriteMany storage, masquerade binding, no host devices).",
};

pub(crate) static UNKNOWN: Rule = Rule {
    id: "live-migration-unknown",
    category: Category::LiveMigration,
    severity: Severity::Info,
    summary: "live-migratability cannot be decided from what is known",
    explanation: "The VM uses a PersistentVolumeClaim that is not among the objects audited, so \
its access mode (ReadWriteMany or not) is unknown. Audit the live cluster, or add the PVC to the \
input.",
};

pub(crate) fn check(ctx: &AuditContext<'_>, subject: &Subject<'_>, out: &mut Out<'_>) {
    let eviction = ctx.eviction(subject);
    match ctx.migratability(subject) {
        Migratability::Migratable => {}
        Migratability::NotMigratable {
            reason,
            message,
            reported,
        } => {
            let origin = if reported {
                "reported by KubeVirt"
            } else {
                "computed from the spec"
            };
            let detail = if message.is_empty() {
                format!("{reason}, {origin}")
            } else {
                format!("{reason}, {origin}: {message}")
            };
            if eviction.strategy == Some(EvictionStrategy::LiveMigrate) {
                out.emit(
                    &LIVE_MIGRATE_NOT_MIGRATABLE,
                    format!("evictionStrategy LiveMigrate but not live-migratable ({detail}); every drain of its node is blocked"),
                    "make the VM migratable (ReadWriteMany storage, masquerade binding) or change its eviction strategy",
                );
            } else {
                out.emit(
                    &NOT_MIGRATABLE,
                    format!("not live-migratable ({detail})"),
                    "make the VM migratable: ReadWriteMany storage, masquerade binding, no host devices",
                );
            }
        }
        Migratability::Unknown(why) => out.emit(
            &UNKNOWN,
            why,
            "include the PVC in the input, or audit the live cluster",
        ),
    }
}
