//! The simulator's timings ([`SimConfig`]): heartbeats, migration durations, backoffs and
//! timeouts, with defaults shorter than a real cluster's so a failure test takes seconds.
//! A leaf module: the state directory ([`crate::state`]) stores them and the controllers
//! read them through [`crate::shared::Shared`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Timings of the simulation. Real clusters count in minutes; the defaults are short so
/// that a failure test takes seconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// How often each up node renews its Lease (kubelet: 10 s).
    pub heartbeat_interval_ms: u64,
    /// How often each up node re-posts its status even when nothing changed (kubelet: 5 min
    /// when leases are used).
    pub node_status_interval_ms: u64,
    /// How many API calls the simulated kubelets make at once.
    pub concurrency: usize,
    /// How often virt-handler stamps its node heartbeat (KubeVirt: 1 min).
    pub handler_heartbeat_ms: u64,
    /// After how long without heartbeat a node's virt-handler counts as unresponsive
    /// (KubeVirt: 5 min).
    pub handler_timeout_ms: u64,
    /// Whether to run the simulated KubeVirt (off: kubelets only).
    pub kubevirt: bool,
    /// Fixed duration of every live migration, ms.
    pub migration_base_ms: u64,
    /// Extra migration time per GiB of guest memory, ms.
    pub migration_ms_per_gib: u64,
    /// How long a migration target pod may stay unschedulable before the migration fails
    /// (KubeVirt: 5 min).
    pub migration_unschedulable_timeout_ms: u64,
    /// First retry delay of the evacuation controller after a failed evacuation migration
    /// (KubeVirt: 20 s, doubling).
    pub evacuation_backoff_ms: u64,
    /// Base of the VM start-failure backoff (KubeVirt: 10 s × failures²).
    pub start_backoff_base_ms: u64,
    /// After how long a VolumeAttachment that no pod needs any more, pinned to a node that
    /// is down, is force-detached (Kubernetes: 6 min); 0 = never (only deleting it, or the
    /// out-of-service taint, releases it).
    pub force_detach_timeout_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            heartbeat_interval_ms: 2_000,
            node_status_interval_ms: 60_000,
            concurrency: 16,
            handler_heartbeat_ms: 30_000,
            handler_timeout_ms: 15_000,
            kubevirt: true,
            migration_base_ms: 1_000,
            migration_ms_per_gib: 1_000,
            migration_unschedulable_timeout_ms: 20_000,
            evacuation_backoff_ms: 20_000,
            start_backoff_base_ms: 10_000,
            force_detach_timeout_ms: 0,
        }
    }
}

impl SimConfig {
    /// [`SimConfig::heartbeat_interval_ms`] as a duration.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms.max(100))
    }
    /// [`SimConfig::node_status_interval_ms`] as a duration.
    pub fn node_status_interval(&self) -> Duration {
        Duration::from_millis(self.node_status_interval_ms.max(100))
    }
}
