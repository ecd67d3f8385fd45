//! The cluster-wide KubeVirt configuration the simulated controllers read from the KubeVirt
//! CR (`spec.configuration`), with KubeVirt's defaults for what it leaves unset.

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
            "developerConfiguration": {"cpuAllocationRatio": 4}
        }}});
        let c = ClusterConfig::from_kubevirt(Some(&cr));
        assert_eq!(c.eviction_strategy, "LiveMigrate");
        assert_eq!(c.parallel_migrations_per_cluster, 3);
        assert_eq!(c.parallel_outbound_migrations_per_node, 1);
        assert_eq!(c.cpu_allocation_ratio, 4);
        assert_eq!(c.memory_overcommit, 100);
    }
}
