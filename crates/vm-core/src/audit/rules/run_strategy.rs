//! Run strategy: a VM should come back by itself after a failure (seed: "Run Strategy").

use super::super::context::AuditContext;
use super::super::finding::{Category, Severity};
use super::super::rule::Rule;
use super::super::subject::Subject;
use super::Out;
use crate::effective::{EvictionStrategy, RunStrategy, RunStrategyResolution, run_strategy};
use crate::migratability::Migratability;

pub(crate) static NOT_RESTARTING: Rule = Rule {
    id: "run-strategy-not-restarting",
    category: Category::RunStrategy,
    severity: Severity::Warning,
    summary: "runStrategy Manual or Once: KubeVirt does not restart the VM after a failure",
    explanation: "With runStrategy Manual or Once, a VM whose VMI fails (a crash, a lost node, a failed \
liveness probe) stays down until someone starts it. The best-practice guide asks for Always or \
RerunOnFailure so that KubeVirt restores the VM immediately.\n\nFix: set spec.runStrategy: Always \
(or RerunOnFailure, which restarts only after a failure, not after a guest shutdown).",
};

pub(crate) static MISSING: Rule = Rule {
    id: "run-strategy-missing",
    category: Category::RunStrategy,
    severity: Severity::Warning,
    summary: "neither spec.runStrategy nor spec.running is set: KubeVirt treats the VM as Halted",
    explanation: "KubeVirt resolves a VM with neither spec.runStrategy nor spec.running to Halted: the \
VM is never started and never restarted.\n\nFix: set spec.runStrategy: Always.",
};

pub(crate) static HALTED: Rule = Rule {
    id: "run-strategy-halted",
    category: Category::RunStrategy,
    severity: Severity::Info,
    summary: "the VM is Halted (stopped on purpose)",
    explanation: "A Halted VM is stopped. `virtctl start` switches it to Always. Nothing is wrong if \
it is meant to be off; it is listed so that a stopped production VM does not go unnoticed.",
};

pub(crate) static DEPRECATED_RUNNING: Rule = Rule {
    id: "run-strategy-deprecated-running",
    category: Category::RunStrategy,
    severity: Severity::Warning,
    summary: "spec.running is deprecated",
    explanation: "spec.running is deprecated; KubeVirt maps true to runStrategy Always and false to \
Halted, and warns on every write.\n\nFix: replace spec.running: true with spec.runStrategy: Always \
(spec.running: false with Halted).",
};

pub(crate) static CONFLICT: Rule = Rule {
    id: "run-strategy-conflict",
    category: Category::RunStrategy,
    severity: Severity::Error,
    summary: "both spec.running and spec.runStrategy are set: KubeVirt rejects the VM",
    explanation: "KubeVirt's admission webhook rejects a VM that sets both fields: \"Running and \
RunStrategy are mutually exclusive\".\n\nFix: remove spec.running and keep spec.runStrategy.",
};

pub(crate) static INVALID: Rule = Rule {
    id: "run-strategy-invalid",
    category: Category::RunStrategy,
    severity: Severity::Error,
    summary: "spec.runStrategy holds a value KubeVirt does not know",
    explanation: "Valid values are Always, RerunOnFailure, Manual, Halted, Once and WaitAsReceiver. \
Anything else is rejected.\n\nFix: set spec.runStrategy: Always.",
};

pub(crate) static RERUN_ON_FAILURE_EVICTION: Rule = Rule {
    id: "run-strategy-rerun-on-failure-eviction",
    category: Category::RunStrategy,
    severity: Severity::Warning,
    summary: "RerunOnFailure without live migration: a drain stops the VM for good",
    explanation: "When a VM cannot be live-migrated on eviction (eviction strategy None or External, \
or LiveMigrateIfPossible on a VM that cannot migrate), a drain deletes its launcher pod and the guest \
shuts down cleanly. The VMI then ends Succeeded, and RerunOnFailure only restarts after a failure, \
so the VM stays stopped (KubeVirt issue 9823).\n\nFix: use evictionStrategy: LiveMigrate on a \
migratable VM, or runStrategy: Always.",
};

pub(crate) static STANDALONE_VMI: Rule = Rule {
    id: "run-strategy-standalone-vmi",
    category: Category::RunStrategy,
    severity: Severity::Warning,
    summary: "a VMI that no VM, ReplicaSet or pool owns: nothing restarts it",
    explanation: "A VirtualMachineInstance created directly has no run strategy: when it fails or \
is evicted it is gone.\n\nFix: create a VirtualMachine with runStrategy: Always around the same \
spec (or a VirtualMachineInstanceReplicaSet for identical replicas).",
};

pub(crate) fn check(ctx: &AuditContext<'_>, subject: &Subject<'_>, out: &mut Out<'_>) {
    if subject.is_standalone_vmi() {
        out.emit(
            &STANDALONE_VMI,
            "VirtualMachineInstance has no owning VirtualMachine: no runStrategy restarts it",
            "wrap it in a VirtualMachine with spec.runStrategy: Always",
        );
        return;
    }
    let Some(spec) = subject.vm_spec else { return };
    let resolution = run_strategy(spec);
    match &resolution {
        RunStrategyResolution::Conflict => out.emit(
            &CONFLICT,
            format!(
                "spec.running ({}) and spec.runStrategy ({}) are both set",
                spec.running.unwrap_or_default(),
                spec.run_strategy.as_deref().unwrap_or_default()
            ),
            "remove spec.running",
        ),
        RunStrategyResolution::Invalid(value) => out.emit(
            &INVALID,
            format!("spec.runStrategy is `{value}`, not a KubeVirt run strategy"),
            "set spec.runStrategy: Always",
        ),
        RunStrategyResolution::Defaulted => out.emit(
            &MISSING,
            "spec.runStrategy is not set (nor spec.running): the VM resolves to Halted",
            "set spec.runStrategy: Always",
        ),
        RunStrategyResolution::FromRunning(s) => out.emit(
            &DEPRECATED_RUNNING,
            format!(
                "spec.running is {} (deprecated; means runStrategy {s})",
                spec.running.unwrap_or_default()
            ),
            format!("replace spec.running with spec.runStrategy: {s}"),
        ),
        RunStrategyResolution::Explicit(_) => {}
    }
    match resolution.strategy() {
        Some(s @ (RunStrategy::Manual | RunStrategy::Once)) => out.emit(
            &NOT_RESTARTING,
            format!("spec.runStrategy is {s}: the VM is not restarted after a failure"),
            "set spec.runStrategy: Always (or RerunOnFailure)",
        ),
        Some(RunStrategy::Halted) if resolution != RunStrategyResolution::Defaulted => out.emit(
            &HALTED,
            "runStrategy is Halted: the VM is stopped",
            "start it with `virtctl start` (which sets runStrategy Always) if it should run",
        ),
        Some(RunStrategy::RerunOnFailure) => {
            let eviction = ctx.eviction(subject);
            let migrates = match eviction.strategy {
                Some(EvictionStrategy::LiveMigrate) => true,
                Some(EvictionStrategy::LiveMigrateIfPossible) => {
                    ctx.migratability(subject) == Migratability::Migratable
                }
                _ => false,
            };
            if !migrates && eviction.strategy.is_some() {
                out.emit(
                    &RERUN_ON_FAILURE_EVICTION,
                    format!(
                        "runStrategy RerunOnFailure with eviction strategy {} (from {}): a drain shuts the guest down and it stays stopped",
                        eviction.raw,
                        subject.eviction_source(&eviction.source)
                    ),
                    format!(
                        "set {}: LiveMigrate, or runStrategy: Always",
                        subject.spec_path("evictionStrategy")
                    ),
                );
            }
        }
        _ => {}
    }
}
