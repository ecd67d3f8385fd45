//! The values KubeVirt would really use, resolved from the places it reads them.
//!
//! Reference: KubeVirt `types.go` `(*VirtualMachine).RunStrategy()`,
//! `pkg/util/migrations/migrations.go` `VMIEvictionStrategy()`, `pkg/virt-config` defaults,
//! `pkg/virt-controller/watch/migration/migrationpolicy.go` (which MigrationPolicy applies).
//!
//! One job a submodule: `strategy` (a VM's run and eviction strategy values), `cluster` (the
//! cluster-wide settings from the CRs) and `migration` (the MigrationPolicy that applies and
//! the options it gives); the eviction strategy that applies is resolved here from both.

mod cluster;
mod migration;
mod strategy;

pub use cluster::{
    ClusterConfig, DEFAULT_COMPLETION_TIMEOUT_PER_GIB, MigrationOptionSource, SupportContainer,
};
pub use migration::{MigrationSettings, matching_policy, migration_settings};
pub use strategy::{
    EffectiveEviction, EvictionSource, EvictionStrategy, RunStrategy, RunStrategyResolution, run_strategy,
};

/// Resolves the eviction strategy: the running VMI's value (stamped by the mutating webhook at
/// creation since v1.1), else the template's, else the cluster's, else `None`.
#[must_use]
pub fn eviction_strategy(
    vmi_value: Option<&str>,
    template_value: Option<&str>,
    cluster: &ClusterConfig,
) -> EffectiveEviction {
    let (raw, source) = if let Some(v) = vmi_value {
        (v.to_string(), EvictionSource::Vmi)
    } else if let Some(v) = template_value {
        (v.to_string(), EvictionSource::Template)
    } else if let Some((v, source)) = &cluster.eviction_strategy {
        (v.clone(), source.clone())
    } else {
        ("None".to_string(), EvictionSource::Default)
    };
    EffectiveEviction {
        strategy: EvictionStrategy::parse(&raw),
        raw,
        source,
    }
}

#[cfg(test)]
mod tests;
