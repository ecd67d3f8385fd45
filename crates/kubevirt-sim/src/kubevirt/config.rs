//! The cluster-wide KubeVirt configuration the simulated controllers read from the KubeVirt
//! CR (`spec.configuration`), with KubeVirt's defaults for what it leaves unset.

use std::collections::BTreeMap;

use serde_json::Value;

/// The parts of `spec.configuration` the simulator acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// `evictionStrategy`; KubeVirt's default is `None`.
    pub eviction_strategy: String,
    /// `developerConfiguration.cpuAllocationRatio` (default 10).
    pub cpu_allocation_ratio: u64,
    /// `developerConfiguration.memoryOvercommit` in percent (default 100).
    pub memory_overcommit: u64,
    /// `migrations.parallelMigrationsPerCluster` (default 5).
    pub parallel_migrations_per_cluster: usize,
    /// `migrations.parallelOutboundMigrationsPerNode` (default 2).
    pub parallel_outbound_migrations_per_node: usize,
    /// Enabled feature gates.
    pub feature_gates: Vec<String>,
    /// `developerConfiguration.nodeSelectors`: added to every launcher pod's nodeSelector.
    pub node_selectors: BTreeMap<String, String>,
    /// `cpuModel`: the CPU model new VMIs get when they name none (default: host-model).
    pub cpu_model: Option<String>,
    /// `developerConfiguration.useEmulation`: no `/dev/kvm` or vhost-net needed.
    pub use_emulation: bool,
    /// `virtualMachineOptions.disableSerialConsoleLog`: KubeVirt treats the field being set
    /// at all (even to `{}`) as "disabled" (`IsSerialConsoleLogDisabled`, virt-config.go).
    pub disable_serial_console_log: bool,
    /// The `resources` of the `supportContainerResources` entry of type `guest-console-log`
    /// (`{requests, limits}`), or null.
    pub console_log_resources: Value,
    /// `network.defaultNetworkInterface` (default `bridge`, virt-config.go
    /// `DefaultNetworkInterface`): the binding of the pod network a VMI gets when it
    /// declares no interfaces and no networks.
    pub default_network_interface: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            eviction_strategy: "None".into(),
            cpu_allocation_ratio: 10,
            memory_overcommit: 100,
            parallel_migrations_per_cluster: 5,
            parallel_outbound_migrations_per_node: 2,
            feature_gates: Vec::new(),
            node_selectors: BTreeMap::new(),
            cpu_model: None,
            use_emulation: false,
            disable_serial_console_log: false,
            console_log_resources: Value::Null,
            default_network_interface: "bridge".into(),
        }
    }
}

impl ClusterConfig {
    /// From a KubeVirt CR (any JSON with `spec.configuration`); `None` gives the defaults.
    pub fn from_kubevirt(cr: Option<&Value>) -> Self {
        let mut c = ClusterConfig::default();
        let Some(conf) = cr.and_then(|cr| cr.pointer("/spec/configuration")) else {
            return c;
        };
        if let Some(s) = conf.get("evictionStrategy").and_then(Value::as_str) {
            c.eviction_strategy = s.to_string();
        }
        let uint = |p: &str| conf.pointer(p).and_then(Value::as_u64).filter(|v| *v > 0);
        if let Some(v) = uint("/developerConfiguration/cpuAllocationRatio") {
            c.cpu_allocation_ratio = v;
        }
        if let Some(v) = uint("/developerConfiguration/memoryOvercommit") {
            c.memory_overcommit = v;
        }
        if let Some(v) = uint("/migrations/parallelMigrationsPerCluster") {
            c.parallel_migrations_per_cluster = v as usize;
        }
        if let Some(v) = uint("/migrations/parallelOutboundMigrationsPerNode") {
            c.parallel_outbound_migrations_per_node = v as usize;
        }
        if let Some(gates) = conf
            .pointer("/developerConfiguration/featureGates")
            .and_then(Value::as_array)
        {
            c.feature_gates = gates
                .iter()
                .filter_map(|g| g.as_str().map(String::from))
                .collect();
        }
        if let Some(sel) = conf
            .pointer("/developerConfiguration/nodeSelectors")
            .and_then(Value::as_object)
        {
            c.node_selectors = sel
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect();
        }
        c.cpu_model = conf
            .get("cpuModel")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(String::from);
        c.use_emulation = conf.pointer("/developerConfiguration/useEmulation") == Some(&Value::Bool(true));
        c.disable_serial_console_log = conf
            .pointer("/virtualMachineOptions/disableSerialConsoleLog")
            .is_some_and(|v| !v.is_null());
        if let Some(entry) = conf
            .get("supportContainerResources")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|e| e.get("type").and_then(Value::as_str) == Some("guest-console-log"))
            })
        {
            c.console_log_resources = entry.get("resources").cloned().unwrap_or(Value::Null);
        }
        if let Some(binding) = conf
            .pointer("/network/defaultNetworkInterface")
            .and_then(Value::as_str)
            .filter(|b| !b.is_empty())
        {
            c.default_network_interface = binding.to_string();
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(ClusterConfig::from_kubevirt(None), ClusterConfig::default());
        let cr = json!({"spec": {"configuration": {
            "evictionStrategy": "LiveMigrate",
            "migrations": {"parallelMigrationsPerCluster": 3, "parallelOutboundMigrationsPerNode": 1},
            "cpuModel": "Haswell",
            "developerConfiguration": {"cpuAllocationRatio": 4, "nodeSelectors": {"zone": "a"}}
        }}});
        let c = ClusterConfig::from_kubevirt(Some(&cr));
        assert_eq!(c.eviction_strategy, "LiveMigrate");
        assert_eq!(c.parallel_migrations_per_cluster, 3);
        assert_eq!(c.parallel_outbound_migrations_per_node, 1);
        assert_eq!(c.cpu_allocation_ratio, 4);
        assert_eq!(c.memory_overcommit, 100);
        assert_eq!(c.cpu_model.as_deref(), Some("Haswell"));
        assert_eq!(c.node_selectors.get("zone").map(String::as_str), Some("a"));
        assert!(!c.use_emulation);
        assert!(!c.disable_serial_console_log);
        assert_eq!(c.default_network_interface, "bridge");
        assert!(c.console_log_resources.is_null());
        let cr = json!({"spec": {"configuration": {
            "virtualMachineOptions": {"disableSerialConsoleLog": {}},
            "network": {"defaultNetworkInterface": "masquerade"},
            "supportContainerResources": [
                {"type": "hotplug-attachment", "resources": {"requests": {"cpu": "1"}}},
                {"type": "guest-console-log", "resources": {"limits": {"cpu": "50m"}}},
            ],
        }}});
        let c = ClusterConfig::from_kubevirt(Some(&cr));
        assert!(c.disable_serial_console_log);
        assert_eq!(c.default_network_interface, "masquerade");
        assert_eq!(c.console_log_resources, json!({"limits": {"cpu": "50m"}}));
    }
}
