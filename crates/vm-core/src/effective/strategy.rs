//! The strategies of one VM as KubeVirt resolves them: its run strategy (`runStrategy`, or
//! the deprecated `running`), and the eviction strategy's values and where one was found.

use std::fmt;

use crate::kubevirt::VirtualMachineSpec;

/// `spec.runStrategy` values KubeVirt knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // The variants are KubeVirt's own names.
pub enum RunStrategy {
    Always,
    RerunOnFailure,
    Manual,
    Halted,
    Once,
    WaitAsReceiver,
}

impl RunStrategy {
    /// Parses KubeVirt's spelling; `None` for anything else.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "Always" => Self::Always,
            "RerunOnFailure" => Self::RerunOnFailure,
            "Manual" => Self::Manual,
            "Halted" => Self::Halted,
            "Once" => Self::Once,
            "WaitAsReceiver" => Self::WaitAsReceiver,
            _ => return None,
        })
    }

    /// Whether KubeVirt brings the VM back by itself after its VMI fails.
    #[must_use]
    pub fn restarts_after_failure(self) -> bool {
        matches!(self, Self::Always | Self::RerunOnFailure)
    }
}

impl fmt::Display for RunStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// How a VM's run strategy was decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunStrategyResolution {
    /// `spec.runStrategy` holds a valid value.
    Explicit(RunStrategy),
    /// Only the deprecated `spec.running` is set.
    FromRunning(RunStrategy),
    /// Neither field is set: KubeVirt treats the VM as `Halted`.
    Defaulted,
    /// Both `running` and `runStrategy` are set: the API server's webhook rejects this.
    Conflict,
    /// `spec.runStrategy` holds a value KubeVirt does not know.
    Invalid(String),
}

impl RunStrategyResolution {
    /// The strategy KubeVirt applies, where there is one.
    #[must_use]
    pub fn strategy(&self) -> Option<RunStrategy> {
        match self {
            Self::Explicit(s) | Self::FromRunning(s) => Some(*s),
            Self::Defaulted => Some(RunStrategy::Halted),
            Self::Conflict | Self::Invalid(_) => None,
        }
    }
}

/// Resolves a VM's run strategy as `(*VirtualMachine).RunStrategy()` does.
#[must_use]
pub fn run_strategy(spec: &VirtualMachineSpec) -> RunStrategyResolution {
    match (&spec.run_strategy, spec.running) {
        (Some(_), Some(_)) => RunStrategyResolution::Conflict,
        (Some(value), None) => match RunStrategy::parse(value) {
            Some(s) => RunStrategyResolution::Explicit(s),
            None => RunStrategyResolution::Invalid(value.clone()),
        },
        (None, Some(true)) => RunStrategyResolution::FromRunning(RunStrategy::Always),
        (None, Some(false)) => RunStrategyResolution::FromRunning(RunStrategy::Halted),
        (None, None) => RunStrategyResolution::Defaulted,
    }
}

/// `evictionStrategy` values KubeVirt accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // The variants are KubeVirt's own names.
pub enum EvictionStrategy {
    None,
    LiveMigrate,
    LiveMigrateIfPossible,
    External,
}

impl EvictionStrategy {
    /// Parses KubeVirt's spelling; `None` for anything else.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "None" => Self::None,
            "LiveMigrate" => Self::LiveMigrate,
            "LiveMigrateIfPossible" => Self::LiveMigrateIfPossible,
            "External" => Self::External,
            _ => return None,
        })
    }
}

impl fmt::Display for EvictionStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Where the effective eviction strategy was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvictionSource {
    /// The running VMI's `spec.evictionStrategy` (frozen when the VMI was created).
    Vmi,
    /// The VM (or replica set, or pool) template's `spec.evictionStrategy`.
    Template,
    /// `spec.configuration.evictionStrategy` of the named KubeVirt CR.
    KubeVirt(String),
    /// `spec.evictionStrategy` of the named HyperConverged CR.
    HyperConverged(String),
    /// Nothing sets it: KubeVirt's built-in default is `None`.
    Default,
}

impl fmt::Display for EvictionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vmi => write!(f, "the VMI's spec.evictionStrategy"),
            Self::Template => write!(f, "spec.template.spec.evictionStrategy"),
            Self::KubeVirt(name) => write!(f, "KubeVirt CR {name} spec.configuration.evictionStrategy"),
            Self::HyperConverged(name) => write!(f, "HyperConverged CR {name} spec.evictionStrategy"),
            Self::Default => write!(f, "KubeVirt's default (nothing sets it)"),
        }
    }
}

/// The eviction strategy KubeVirt would apply, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectiveEviction {
    /// The value as written; `"None"` when defaulted.
    pub raw: String,
    /// The parsed value; `None` when `raw` is not a value KubeVirt accepts.
    pub strategy: Option<EvictionStrategy>,
    /// Where `raw` was found.
    pub source: EvictionSource,
}
