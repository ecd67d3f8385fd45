//! The cluster-wide settings that change how VMs are treated, read from the KubeVirt CR and
//! the HyperConverged CR over KubeVirt's defaults, and where each was read.

use std::collections::BTreeMap;
use std::fmt;

use super::strategy::EvictionSource;
use crate::kubevirt::{HyperConverged, KubeVirt, MigrationConfiguration};

/// KubeVirt's default `completionTimeoutPerGiB` in seconds: 150 since v1.4.0, 800 before
/// (reference `kubevirt-semantics.md` §5, "Limits", and its version notes: commit 5080d817).
pub const DEFAULT_COMPLETION_TIMEOUT_PER_GIB: u64 = 150;

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
