//! The values KubeVirt would really use, resolved from the places it reads them.
//!
//! Reference: KubeVirt `types.go` `(*VirtualMachine).RunStrategy()`,
//! `pkg/util/migrations/migrations.go` `VMIEvictionStrategy()`, `pkg/virt-config` defaults,
//! `pkg/virt-controller/watch/migration/migrationpolicy.go` (which MigrationPolicy applies).

use std::collections::BTreeMap;
use std::fmt;

use crate::kubevirt::{
    HyperConverged, KubeVirt, MigrationConfiguration, MigrationPolicy, VirtualMachineSpec,
};

/// KubeVirt's default `completionTimeoutPerGiB` in seconds: 150 since v1.4.0, 800 before
/// (reference `kubevirt-semantics.md` §5, "Limits", and its version notes: commit 5080d817).
pub const DEFAULT_COMPLETION_TIMEOUT_PER_GIB: u64 = 150;

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

/// The cluster-wide settings that change how VMs are treated, read from the KubeVirt CR and
/// the HyperConverged CR (HCO copies its own into the KubeVirt CR, so the KubeVirt CR wins).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterConfig {
    /// The cluster-wide eviction strategy, with its source; `None` when neither CR sets one.
    pub eviction_strategy: Option<(String, EvictionSource)>,
    /// `developerConfiguration.cpuAllocationRatio` (default 10).
    pub cpu_allocation_ratio: u32,
    /// `developerConfiguration.memoryOvercommit` in percent (default 100).
    pub memory_overcommit: u32,
    /// `migrations.parallelMigrationsPerCluster` (default 5).
    pub parallel_migrations_per_cluster: u32,
    /// `migrations.parallelOutboundMigrationsPerNode` (default 2).
    pub parallel_outbound_migrations_per_node: u32,
    /// `cpuModel`: the model VMIs without one get (`None`: `host-model`).
    pub cpu_model: Option<String>,
    /// `developerConfiguration.nodeSelectors`, added to every launcher pod.
    pub node_selectors: std::collections::BTreeMap<String, String>,
    /// `migrations.completionTimeoutPerGiB` in seconds (default
    /// [`DEFAULT_COMPLETION_TIMEOUT_PER_GIB`]); 0 means no completion timeout.
    pub completion_timeout_per_gib: u64,
    /// Where `completion_timeout_per_gib` was read.
    pub completion_timeout_source: MigrationOptionSource,
    /// `migrations.allowAutoConverge` (default false).
    pub allow_auto_converge: bool,
    /// `migrations.allowPostCopy` (default false).
    pub allow_post_copy: bool,
    /// Where `allow_auto_converge` and `allow_post_copy` were read (the CR when it sets either).
    pub convergence_source: MigrationOptionSource,
    /// `network.defaultNetworkInterface`: the binding of the pod network a VMI that declares
    /// no interfaces and no networks gets (`bridge` by default, `virt-config.go`
    /// `DefaultNetworkInterface`).
    pub default_network_interface: String,
    /// The KubeVirt CR that sets `default_network_interface`, when one does.
    pub default_network_interface_from: Option<String>,
    /// The network binding plugins (`network.binding`) that declare `migration`: an interface
    /// bound by one of them can be live-migrated.
    pub migratable_binding_plugins: std::collections::BTreeSet<String>,
    /// `virtualMachineOptions.disableSerialConsoleLog` is set: no `guest-console-log`
    /// container unless a VMI asks for it.
    pub serial_console_log_disabled: bool,
    /// The `guest-console-log` container's resources (`supportContainerResources` over
    /// KubeVirt's defaults).
    pub console_log: SupportContainer,
}

/// Requests and limits of one of KubeVirt's support containers, cores and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SupportContainer {
    /// CPU request, cores.
    pub request_cpu: f64,
    /// Memory request, bytes.
    pub request_memory: f64,
    /// CPU limit, cores.
    pub limit_cpu: f64,
    /// Memory limit, bytes.
    pub limit_memory: f64,
}

impl SupportContainer {
    /// The `guest-console-log` defaults: 5m / 35M requested, 15m / 60M limits
    /// (`pkg/virt-controller/services/serialconsolelog.go`).
    pub const CONSOLE_LOG: Self = Self {
        request_cpu: 0.005,
        request_memory: 35_000_000.0,
        limit_cpu: 0.015,
        limit_memory: 60_000_000.0,
    };

    /// These values with each non-zero quantity of `resources` in their place, as
    /// `GetSupportContainerRequest` and `GetSupportContainerLimit` (`virt-config.go`) read them.
    #[must_use]
    pub fn overridden_by(self, resources: &crate::kubevirt::SupportResourceRequirements) -> Self {
        let get = |map: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
                   name: &str,
                   default: f64| {
            map.get(name)
                .and_then(|q| crate::quantity::parse_quantity(q).ok())
                .filter(|v| *v != 0.0)
                .unwrap_or(default)
        };
        Self {
            request_cpu: get(&resources.requests, "cpu", self.request_cpu),
            request_memory: get(&resources.requests, "memory", self.request_memory),
            limit_cpu: get(&resources.limits, "cpu", self.limit_cpu),
            limit_memory: get(&resources.limits, "memory", self.limit_memory),
        }
    }
}

impl ClusterConfig {
    /// KubeVirt's defaults when no CR says otherwise.
    #[must_use]
    pub fn defaults() -> Self {
        Self {
            eviction_strategy: None,
            cpu_allocation_ratio: 10,
            memory_overcommit: 100,
            parallel_migrations_per_cluster: 5,
            parallel_outbound_migrations_per_node: 2,
            cpu_model: None,
            node_selectors: std::collections::BTreeMap::new(),
            completion_timeout_per_gib: DEFAULT_COMPLETION_TIMEOUT_PER_GIB,
            completion_timeout_source: MigrationOptionSource::Default,
            allow_auto_converge: false,
            allow_post_copy: false,
            convergence_source: MigrationOptionSource::Default,
            default_network_interface: "bridge".into(),
            default_network_interface_from: None,
            migratable_binding_plugins: std::collections::BTreeSet::new(),
            serial_console_log_disabled: false,
            console_log: SupportContainer::CONSOLE_LOG,
        }
    }

    /// Reads the settings from the KubeVirt and HyperConverged CRs present (the first of each).
    #[must_use]
    pub fn from_crs(kubevirts: &[KubeVirt], hcos: &[HyperConverged]) -> Self {
        let mut cfg = Self::defaults();
        let kv = kubevirts.first();
        let hco = hcos.first();
        let kv_conf = kv.map(|k| &k.spec.configuration);
        cfg.eviction_strategy = kv
            .and_then(|k| {
                let value = k.spec.configuration.eviction_strategy.clone()?;
                Some((value, EvictionSource::KubeVirt(name_of(&k.metadata))))
            })
            .or_else(|| {
                let h = hco?;
                let value = h.spec.eviction_strategy.clone()?;
                Some((value, EvictionSource::HyperConverged(name_of(&h.metadata))))
            });
        if let Some(dev) = kv_conf.and_then(|c| c.developer_configuration.as_ref()) {
            cfg.cpu_allocation_ratio = dev.cpu_allocation_ratio.filter(|r| *r > 0).unwrap_or(10);
            cfg.memory_overcommit = dev.memory_overcommit.filter(|r| *r > 0).unwrap_or(100);
            cfg.node_selectors = dev.node_selectors.clone().unwrap_or_default();
        }
        cfg.cpu_model = kv_conf
            .and_then(|c| c.cpu_model.clone())
            .filter(|m| !m.is_empty());
        if let (Some(k), Some(network)) = (kv, kv_conf.and_then(|c| c.network.as_ref())) {
            if let Some(binding) = network
                .default_network_interface
                .as_ref()
                .filter(|b| !b.is_empty())
            {
                cfg.default_network_interface = binding.clone();
                cfg.default_network_interface_from = Some(name_of(&k.metadata));
            }
            cfg.migratable_binding_plugins = network
                .binding
                .iter()
                .filter(|(_, plugin)| plugin.get("migration").is_some_and(|m| !m.is_null()))
                .map(|(name, _)| name.clone())
                .collect();
        }
        cfg.serial_console_log_disabled = kv_conf
            .and_then(|c| c.virtual_machine_options.as_ref())
            .is_some_and(|o| o.disable_serial_console_log.is_some());
        // Per quantity, the first entry of the type that sets it non-zero counts
        // (`GetSupportContainerRequest`): applied last to first, the first wins.
        if let Some(conf) = kv_conf {
            for entry in conf
                .support_container_resources
                .iter()
                .rev()
                .filter(|r| r.type_ == "guest-console-log")
            {
                cfg.console_log = cfg.console_log.overridden_by(&entry.resources);
            }
        }
        let migrations: Option<(&MigrationConfiguration, MigrationOptionSource)> = kv
            .and_then(|k| {
                let m = k.spec.configuration.migrations.as_ref()?;
                Some((m, MigrationOptionSource::KubeVirt(name_of(&k.metadata))))
            })
            .or_else(|| {
                let h = hco?;
                let m = h.spec.live_migration_config.as_ref()?;
                Some((m, MigrationOptionSource::HyperConverged(name_of(&h.metadata))))
            });
        if let Some((m, source)) = migrations {
            if let Some(n) = m.parallel_migrations_per_cluster.filter(|n| *n > 0) {
                cfg.parallel_migrations_per_cluster = n;
            }
            if let Some(n) = m.parallel_outbound_migrations_per_node.filter(|n| *n > 0) {
                cfg.parallel_outbound_migrations_per_node = n;
            }
            // Negative values are invalid; KubeVirt's admission rejects them, so they are ignored.
            if let Some(n) = m.completion_timeout_per_gib.and_then(|n| u64::try_from(n).ok()) {
                cfg.completion_timeout_per_gib = n;
                cfg.completion_timeout_source = source.clone();
            }
            if m.allow_auto_converge.is_some() || m.allow_post_copy.is_some() {
                cfg.allow_auto_converge = m.allow_auto_converge.unwrap_or(false);
                cfg.allow_post_copy = m.allow_post_copy.unwrap_or(false);
                cfg.convergence_source = source;
            }
        }
        cfg
    }
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    match (&meta.namespace, &meta.name) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        (None, Some(name)) => name.clone(),
        _ => "(unnamed)".to_string(),
    }
}

/// Where a migration option's value came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MigrationOptionSource {
    /// The named MigrationPolicy, which selects the VMI.
    Policy(String),
    /// `spec.configuration.migrations` of the named KubeVirt CR.
    KubeVirt(String),
    /// `spec.liveMigrationConfig` of the named HyperConverged CR.
    HyperConverged(String),
    /// Nothing sets it: KubeVirt's built-in default.
    #[default]
    Default,
}

impl fmt::Display for MigrationOptionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Policy(name) => write!(f, "MigrationPolicy {name}"),
            Self::KubeVirt(name) => write!(f, "KubeVirt CR {name} spec.configuration.migrations"),
            Self::HyperConverged(name) => {
                write!(f, "HyperConverged CR {name} spec.liveMigrationConfig")
            }
            Self::Default => write!(f, "the default"),
        }
    }
}

/// The migration options KubeVirt would give a migration of one VMI: the cluster's, overridden
/// field by field by the MigrationPolicy that selects the VMI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationSettings {
    /// Seconds allowed per GiB of migrated data; 0 means no completion timeout.
    pub completion_timeout_per_gib: u64,
    /// Whether libvirt may throttle the guest's vCPUs so that the copy converges.
    pub allow_auto_converge: bool,
    /// Whether a migration that runs out of time may switch to post-copy.
    pub allow_post_copy: bool,
    /// Where the settings come from, in words: the matching policy, else the CR, else the
    /// default (for the precise origin of each value see the two fields below).
    pub source: String,
    /// Where `completion_timeout_per_gib` was read.
    pub timeout_source: MigrationOptionSource,
    /// Where `allow_auto_converge` and `allow_post_copy` were read.
    pub convergence_source: MigrationOptionSource,
    /// Policies that select the VMI's labels but also have a `namespaceSelector` that could not
    /// be checked because the namespace's labels are unknown; they were taken not to match.
    pub unchecked_policies: Vec<String>,
}

/// How well one policy matches: the numbers of its VMI and namespace labels that matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MatchScore {
    vmi: usize,
    namespace: usize,
}

impl MatchScore {
    /// KubeVirt's order: more matching labels in total wins; on a tie, more VMI labels wins.
    fn key(self) -> (usize, usize) {
        (self.vmi + self.namespace, self.vmi)
    }
}

fn all_present(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The MigrationPolicy KubeVirt applies to a VMI with `vmi_labels` in a namespace with
/// `namespace_labels`, as `matchPolicy` in KubeVirt's
/// `pkg/virt-controller/watch/migration/migrationpolicy.go` chooses it:
///
/// - a policy matches when every pair of its `virtualMachineInstanceSelector` is among the VMI's
///   labels and every pair of its `namespaceSelector` among the namespace's; a policy without
///   `selectors` matches nothing, and empty selectors match every VMI;
/// - of the matching policies the one with the most matching labels (VMI and namespace
///   together) wins; on a tie, the one with more matching VMI labels; on a further tie, the
///   one whose name sorts first.
///
/// `namespace_labels` is `None` when the namespace's labels are not known (the snapshot holds
/// no Namespace objects): a policy with a non-empty `namespaceSelector` is then taken not to
/// match, and is returned in the second list so that messages can say so.
///
/// Not reproduced: KubeVirt skips both selectors of a VMI that has no labels at all (a nil
/// map). A VMI being migrated always carries the labels virt-controller sets
/// (`kubevirt.io/nodeName`), so that case does not arise in a migration.
#[must_use]
pub fn matching_policy<'a>(
    policies: &'a [MigrationPolicy],
    vmi_labels: &BTreeMap<String, String>,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> (Option<&'a MigrationPolicy>, Vec<String>) {
    let mut best: Option<(&MigrationPolicy, MatchScore)> = None;
    let mut unchecked = Vec::new();
    for policy in policies {
        let Some(selectors) = &policy.spec.selectors else {
            continue;
        };
        if !all_present(&selectors.virtual_machine_instance_selector, vmi_labels) {
            continue;
        }
        let namespace_ok = match namespace_labels {
            Some(labels) => all_present(&selectors.namespace_selector, labels),
            None if selectors.namespace_selector.is_empty() => true,
            None => {
                unchecked.push(policy.metadata.name.clone().unwrap_or_default());
                false
            }
        };
        if !namespace_ok {
            continue;
        }
        let score = MatchScore {
            vmi: selectors.virtual_machine_instance_selector.len(),
            namespace: selectors.namespace_selector.len(),
        };
        let better = match best {
            None => true,
            Some((current, current_score)) => {
                score.key() > current_score.key()
                    || (score.key() == current_score.key() && policy.metadata.name < current.metadata.name)
            }
        };
        if better {
            best = Some((policy, score));
        }
    }
    (best.map(|(p, _)| p), unchecked)
}

/// The migration settings of a VMI: the cluster's (`cluster`), overridden by each field the
/// matching policy (see [`matching_policy`]) sets, as `applyMigrationPolicySpec` does.
#[must_use]
pub fn migration_settings(
    cluster: &ClusterConfig,
    policies: &[MigrationPolicy],
    vmi_labels: &BTreeMap<String, String>,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> MigrationSettings {
    let (policy, unchecked_policies) = matching_policy(policies, vmi_labels, namespace_labels);
    let mut settings = MigrationSettings {
        completion_timeout_per_gib: cluster.completion_timeout_per_gib,
        allow_auto_converge: cluster.allow_auto_converge,
        allow_post_copy: cluster.allow_post_copy,
        source: String::new(),
        timeout_source: cluster.completion_timeout_source.clone(),
        convergence_source: cluster.convergence_source.clone(),
        unchecked_policies,
    };
    let Some(policy) = policy else {
        settings.source = match (&settings.timeout_source, &settings.convergence_source) {
            (MigrationOptionSource::Default, other) | (other, _) => other.to_string(),
        };
        return settings;
    };
    let name = policy.metadata.name.clone().unwrap_or_default();
    let from_policy = MigrationOptionSource::Policy(name);
    let spec = &policy.spec;
    if let Some(n) = spec
        .completion_timeout_per_gib
        .and_then(|n| u64::try_from(n).ok())
    {
        settings.completion_timeout_per_gib = n;
        settings.timeout_source = from_policy.clone();
    }
    if let Some(b) = spec.allow_auto_converge {
        settings.allow_auto_converge = b;
        settings.convergence_source = from_policy.clone();
    }
    if let Some(b) = spec.allow_post_copy {
        settings.allow_post_copy = b;
        settings.convergence_source = from_policy.clone();
    }
    settings.source = from_policy.to_string();
    settings
}

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
