//! Eviction strategy: LiveMigrate, so that maintenance and node pressure move VMs instead of
//! stopping them (seed: "Maintenance of Node Handling", "Node Overload").

use super::super::context::AuditContext;
use super::super::finding::{Category, Severity};
use super::super::rule::Rule;
use super::super::subject::Subject;
use super::Out;
use crate::effective::{EvictionSource, EvictionStrategy, eviction_strategy};

pub(crate) static NOT_LIVE_MIGRATE: Rule = Rule {
    id: "eviction-strategy-not-live-migrate",
    category: Category::EvictionStrategy,
    severity: Severity::Warning,
    summary: "effective eviction strategy is None or External: a drain stops the VM",
    explanation: "KubeVirt resolves the eviction strategy from the VMI spec (stamped at creation), \
then the VM template, then the KubeVirt CR, then the HyperConverged CR, and defaults to None. With \
None a drain or kubelet eviction shuts the VM down; with External it waits for an outside \
controller. The best-practice guide asks for LiveMigrate.\n\nFix: set \
evictionStrategy: LiveMigrate in the VMI spec (spec.template.spec.evictionStrategy in a VM), or \
the cluster-wide value in the KubeVirt or HyperConverged CR.",
};

pub(crate) static INVALID: Rule = Rule {
    id: "eviction-strategy-invalid",
    category: Category::EvictionStrategy,
    severity: Severity::Error,
    summary: "evictionStrategy holds a value KubeVirt does not accept",
    explanation: "Valid values are None, LiveMigrate, LiveMigrateIfPossible and External; the VMI \
admitter rejects anything else.\n\nFix: set evictionStrategy: LiveMigrate.",
};

pub(crate) static STALE: Rule = Rule {
    id: "eviction-strategy-stale",
    category: Category::EvictionStrategy,
    severity: Severity::Info,
    summary: "the running VMI keeps an older eviction strategy than the VM would get now",
    explanation: "Since KubeVirt 1.1 the eviction strategy is written into each new VMI and frozen \
there. A later change to the VM template or the cluster-wide value only applies after the VM \
restarts.\n\nFix: restart the VM (virtctl restart) when convenient.",
};

pub(crate) fn check(ctx: &AuditContext<'_>, subject: &Subject<'_>, out: &mut Out<'_>) {
    let effective = ctx.eviction(subject);
    let field = match effective.source {
        EvictionSource::Vmi | EvictionSource::Template => "evictionStrategy".to_string(),
        _ => subject.eviction_source(&effective.source),
    };
    let source = subject.eviction_source(&effective.source);
    match effective.strategy {
        None => out.emit(
            &INVALID,
            format!("{field} is `{}` (from {source})", effective.raw),
            "set evictionStrategy: LiveMigrate",
        ),
        Some(s @ (EvictionStrategy::None | EvictionStrategy::External)) => out.emit(
            &NOT_LIVE_MIGRATE,
            format!("effective evictionStrategy is {s} (from {source})"),
            format!("set {}: LiveMigrate", subject.spec_path("evictionStrategy")),
        ),
        Some(_) => {}
    }
    // A running VMI froze its value at creation; compare with what a new VMI would get.
    if effective.source == EvictionSource::Vmi && subject.template.is_some() {
        let template_value = subject
            .template
            .and_then(|t| t.spec.as_ref())
            .and_then(|s| s.eviction_strategy.as_deref());
        let fresh = eviction_strategy(None, template_value, &ctx.cluster);
        if fresh.raw != effective.raw {
            out.emit(
                &STALE,
                format!(
                    "the running VMI has evictionStrategy {} but a new VMI would get {} (from {})",
                    effective.raw,
                    fresh.raw,
                    subject.eviction_source(&fresh.source)
                ),
                "restart the VM to apply the current eviction strategy",
            );
        }
    }
}
