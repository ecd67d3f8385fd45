//! Live migration: a VM that asks to be live-migrated on eviction but cannot be blocks every
//! drain of its node for ever (the `VMCannotBeEvicted` alert).

use super::super::context::AuditContext;
use super::super::finding::{Category, Severity};
use super::super::rule::Rule;
use super::super::subject::Subject;
use super::Out;
use crate::effective::{EvictionStrategy, MigrationSettings};
use crate::migratability::Migratability;
use crate::pod_network::interface_blocker;
use crate::quantity::format_bytes;
use crate::resources::guest_size;

/// Guest memory from which `migration-large-without-convergence` applies: 32 GiB. One pre-copy
/// pass over a 10 Gbit/s migration network then takes about half a minute (34 GB at 1.25 GB/s)
/// and grows with the guest, so a busy database or cache can dirty memory faster than a pass
/// completes; below it, only extreme write rates keep a migration from converging.
pub const LARGE_GUEST_BYTES: f64 = 32.0 * 1024.0 * 1024.0 * 1024.0;

pub(crate) static LIVE_MIGRATE_NOT_MIGRATABLE: Rule = Rule {
    id: "live-migrate-not-migratable",
    category: Category::LiveMigration,
    severity: Severity::Error,
    summary: "evictionStrategy LiveMigrate on a VM that cannot be live-migrated: every drain hangs",
    explanation: "KubeVirt's eviction webhook denies the eviction of a launcher pod whose VMI has \
evictionStrategy LiveMigrate but is not live-migratable (\"VMI ... is configured with an eviction \
strategy but is not live-migratable\"), so `kubectl drain` of its node retries for ever. Common \
causes: a ReadWriteOnce PVC, or a DataVolume whose PVC will be one (DisksNotLiveMigratable), a \
bridge on the pod network (InterfaceNotLiveMigratable; a VM that declares no interface gets the pod \
network with the cluster's spec.configuration.network.defaultNetworkInterface, which is bridge \
unless the KubeVirt CR says masquerade), host devices or GPUs, a non-shared hostDisk.\n\nFix: use \
ReadWriteMany storage and masquerade binding (declare interfaces: [{name: default, masquerade: {}}] \
with networks: [{name: default, pod: {}}], or set the cluster default to masquerade), or choose \
another eviction strategy and plan for the downtime.",
};

pub(crate) static NOT_MIGRATABLE: Rule = Rule {
    id: "live-migration-not-migratable",
    category: Category::LiveMigration,
    severity: Severity::Warning,
    summary: "the VM cannot be live-migrated: node maintenance stops it",
    explanation: "All recovery procedures of the best-practice guide assume live-migratable VMs. \
This VM cannot move while running: a drain or a node failure stops it. A VM that declares no \
interface counts too: KubeVirt gives it the pod network bound as the KubeVirt CR's \
spec.configuration.network.defaultNetworkInterface says, bridge when unset, and bridge on the pod \
network is not live-migratable (InterfaceNotLiveMigratable) without the annotation \
kubevirt.io/allow-pod-bridge-network-live-migration.\n\nFix: remove the cause named in the \
message (ReadWriteMany storage; masquerade binding, declared on the pod network interface or as \
the cluster default; no host devices).",
};

pub(crate) static UNKNOWN: Rule = Rule {
    id: "live-migration-unknown",
    category: Category::LiveMigration,
    severity: Severity::Info,
    summary: "live-migratability cannot be decided from what is known",
    explanation: "KubeVirt live-migrates a VM only when every PVC it uses is ReadWriteMany \
(DisksNotLiveMigratable otherwise). This VM uses a PVC whose access mode cannot be known from the \
objects audited: the PVC is not among them, nor a DataVolume of its name (CDI names the PVC after \
its DataVolume, and a VM's dataVolumeTemplates become DataVolumes); or its DataVolume's \
spec.storage leaves the access mode to CDI, which takes it from the StorageProfile of the storage \
class (the class named, else the default StorageClass), and that StorageProfile is not known or \
has no claimPropertySets with access modes (then CDI cannot create the PVC at all).\n\nFix: the \
message names what to add: the PVC or DataVolume, the StorageProfile (cdi.kubevirt.io/v1beta1, \
named after its StorageClass), the default StorageClass, or accessModes in the DataVolume's \
spec.storage. Or audit the live cluster, where CDI has made a StorageProfile for every \
StorageClass.",
};

pub(crate) static TIMEOUT_EXCEEDS_LIMIT: Rule = Rule {
    id: "migration-timeout-exceeds-limit",
    category: Category::LiveMigration,
    severity: Severity::Warning,
    summary: "KubeVirt would let the VM's migration run longer than the operator's limit (--max-migration-time)",
    explanation: "KubeVirt gives a live migration completionTimeoutPerGiB × size seconds; when \
that time is up it aborts the migration (or switches it to post-copy when allowPostCopy allows). \
The size is the guest memory (memory.guest, else the memory request) in decimal gigabytes rounded \
up, plus local disks for a block migration and migrated volumes, which this rule does not count, \
so the real allowance can only be longer. completionTimeoutPerGiB comes from the MigrationPolicy \
that selects the VMI, else the KubeVirt CR's spec.configuration.migrations (HCO: \
spec.liveMigrationConfig), else the default of 150 s (800 s before KubeVirt v1.4); 0 sets no \
completion timeout at all. Example: a 64Gi guest is 69 GB, and 69 × 150 s = 10350 s, almost three \
hours for one VM. A maintenance window planned around --max-migration-time can be overrun by a \
single migration that KubeVirt still lets run.\n\nThe rule runs only when the operator gives a \
limit (--max-migration-time). It skips VMs that cannot be live-migrated at all (other rules report \
those).\n\nFix: a MigrationPolicy selecting the VM with a completionTimeoutPerGiB of at most limit ÷ \
size (the hint computes it), together with allowAutoConverge or allowPostCopy so that the migration \
can finish in that time, or plan the window around the VM's real allowance.",
};

pub(crate) static LARGE_WITHOUT_CONVERGENCE: Rule = Rule {
    id: "migration-large-without-convergence",
    category: Category::LiveMigration,
    severity: Severity::Info,
    summary: "a large VM whose migration may never converge: neither auto-converge nor post-copy is allowed",
    explanation: "A pre-copy live migration copies the guest's memory while the guest runs, then \
copies again what the guest dirtied meanwhile, until the rest fits in the allowed downtime. A guest \
that writes memory faster than the migration network copies it never gets there. KubeVirt then \
aborts the migration at the completion timeout (completionTimeoutPerGiB × size, 150 s per GB by \
default: 69 × 150 s = 10350 s for 64Gi) or when it stops making progress (progressTimeout, 150 s). \
The VMI stays on its node, the eviction is retried, and `kubectl drain` of the node never \
finishes. Two options let a migration finish anyway, both off by default: allowAutoConverge \
(libvirt throttles the guest's vCPUs until the copy catches up) and allowPostCopy (the guest moves \
to the target and pulls the remaining pages on demand; a network failure during post-copy loses \
the guest).\n\nThe rule applies from 32Gi of guest memory: one copy pass over a 10 Gbit/s \
migration network then takes about half a minute (34 GB at 1.25 GB/s) and grows with the guest; \
below that, only extreme write rates keep a migration from converging. It is informational because \
whether a guest converges depends on its write rate, which no manifest shows; an idle large VM \
migrates fine.\n\nFix: a MigrationPolicy whose selectors match the VM and that sets \
allowAutoConverge: true (or allowPostCopy: true), or enable them cluster-wide in the KubeVirt CR's \
spec.configuration.migrations.",
};

/// The migrated size as KubeVirt counts it (`getVMIMigrationDataSize`): guest memory scaled to
/// decimal gigabytes, rounded up.
fn migration_size_gb(memory_bytes: f64) -> u64 {
    (memory_bytes / 1e9).ceil() as u64
}

fn unchecked_note(settings: &MigrationSettings) -> String {
    if settings.unchecked_policies.is_empty() {
        return String::new();
    }
    format!(
        "; MigrationPolicy {} selects by namespace labels, which are not known here, and was taken not to apply",
        settings.unchecked_policies.join(", ")
    )
}

fn check_migration_time(ctx: &AuditContext<'_>, subject: &Subject<'_>, out: &mut Out<'_>) {
    let Some(memory) = guest_size(subject.running_spec(), ctx.instancetype_of(subject)).memory else {
        return;
    };
    let large = memory >= LARGE_GUEST_BYTES;
    let limit = ctx.options.max_migration_seconds;
    if !large && limit.is_none() {
        return;
    }
    let settings = ctx.migration_settings(subject);
    let size = migration_size_gb(memory);
    let per_gib = settings.completion_timeout_per_gib;
    let allowed = size.saturating_mul(per_gib);
    let memory_words = format_bytes(memory);
    if let Some(limit) = limit {
        let note = unchecked_note(&settings);
        if per_gib == 0 {
            out.emit(
                &TIMEOUT_EXCEEDS_LIMIT,
                format!(
                    "KubeVirt sets no completion timeout for its migration (completionTimeoutPerGiB 0, from {}): a migration of its {memory_words} may run until it stops making progress, beyond the {limit} s limit (--max-migration-time){note}",
                    settings.timeout_source
                ),
                format!(
                    "select the VM with a MigrationPolicy whose completionTimeoutPerGiB is at most {} ({limit} s ÷ {size} GB)",
                    (limit / size.max(1)).max(1)
                ),
            );
        } else if allowed > limit {
            out.emit(
                &TIMEOUT_EXCEEDS_LIMIT,
                format!(
                    "KubeVirt lets a migration of its {memory_words} take up to {allowed} s ({size} GB × {per_gib} s per GiB, from {}), more than the {limit} s limit (--max-migration-time){note}",
                    settings.timeout_source
                ),
                format!(
                    "select the VM with a MigrationPolicy whose completionTimeoutPerGiB is at most {} ({limit} s ÷ {size} GB), with allowAutoConverge or allowPostCopy so that it can finish in time",
                    (limit / size.max(1)).max(1)
                ),
            );
        }
    }
    if large && !settings.allow_auto_converge && !settings.allow_post_copy {
        let cancelled = if per_gib == 0 {
            "it is cancelled when it stops making progress".to_string()
        } else {
            format!("it is cancelled after {allowed} s ({size} GB × {per_gib} s per GiB)")
        };
        out.emit(
            &LARGE_WITHOUT_CONVERGENCE,
            format!(
                "{memory_words} of guest memory and neither allowAutoConverge nor allowPostCopy (from {}): if the guest dirties memory faster than it is copied, the migration never converges, {cancelled}, and a drain of its node does not finish{}",
                settings.convergence_source,
                unchecked_note(&settings)
            ),
            "create a MigrationPolicy with allowAutoConverge: true (or allowPostCopy: true) whose virtualMachineInstanceSelector matches the VM's labels",
        );
    }
}

pub(crate) fn check(ctx: &AuditContext<'_>, subject: &Subject<'_>, out: &mut Out<'_>) {
    let eviction = ctx.eviction(subject);
    let migratability = ctx.migratability(subject);
    if !matches!(migratability, Migratability::NotMigratable { .. }) {
        check_migration_time(ctx, subject, out);
    }
    match migratability {
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
            // The interface's own fix (which interface, or the cluster default) when the spec
            // shows the cause; KubeVirt's reported condition names only the reason.
            let interface_fix = (reason == "InterfaceNotLiveMigratable")
                .then(|| interface_blocker(subject.running_spec(), subject.vmi_annotations(), &ctx.cluster))
                .flatten()
                .map(|b| b.fix);
            if eviction.strategy == Some(EvictionStrategy::LiveMigrate) {
                out.emit(
                    &LIVE_MIGRATE_NOT_MIGRATABLE,
                    format!("evictionStrategy LiveMigrate but not live-migratable ({detail}); every drain of its node is blocked"),
                    interface_fix.map_or_else(
                        || "make the VM migratable (ReadWriteMany storage, masquerade binding) or change its eviction strategy".to_string(),
                        |fix| format!("{fix}; or change its eviction strategy"),
                    ),
                );
            } else {
                out.emit(
                    &NOT_MIGRATABLE,
                    format!("not live-migratable ({detail})"),
                    interface_fix.unwrap_or_else(|| {
                        "make the VM migratable: ReadWriteMany storage, masquerade binding, no host devices".to_string()
                    }),
                );
            }
        }
        Migratability::Unknown { why, add } => out.emit(&UNKNOWN, why, add),
    }
}
