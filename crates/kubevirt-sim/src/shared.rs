//! The state the simulator's controllers share: the admin client, the timings and which
//! simulated machines are down or cut off (files in the state directory, written by
//! `vm-sandbox node down|partition`). The kubelets ([`crate::kubelet`]), storage
//! ([`crate::storage`]) and KubeVirt's controllers ([`crate::kubevirt`]) each get a copy;
//! they depend on this module and never on [`crate::sim`], which only wires them. In a
//! real cluster each of them reads the same facts from the machines it runs on.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::state::{read_nodes_down, read_nodes_partitioned};

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

/// What every simulated controller reads: the client, the timings and the machines that are
/// down or partitioned.
#[derive(Clone)]
pub struct Shared {
    /// Admin client.
    pub client: kube::Client,
    /// Timings.
    pub config: SimConfig,
    /// Directory of files naming the nodes that are down (see [`crate::state::StateDir::nodes_down`]).
    pub nodes_down_dir: PathBuf,
    /// Directory of files naming the nodes cut off from the network (see
    /// [`crate::state::StateDir::nodes_partitioned`]).
    pub nodes_partitioned_dir: PathBuf,
    /// Where the kubelets record the launcher pods that run ([`crate::history`]); None:
    /// not recorded.
    pub run_history: Option<PathBuf>,
}

impl Shared {
    /// The nodes that are down (powered off): their guests are stopped.
    pub fn nodes_down(&self) -> HashSet<String> {
        read_nodes_down(&self.nodes_down_dir)
    }

    /// The nodes cut off from the network: their guests keep running, unseen.
    pub fn nodes_partitioned(&self) -> HashSet<String> {
        read_nodes_partitioned(&self.nodes_partitioned_dir)
    }

    /// The nodes whose kubelet and virt-handler cannot reach the API server: down or
    /// partitioned. To the control plane (and to KubeVirt's controllers) both look alike.
    pub fn nodes_unreachable(&self) -> HashSet<String> {
        let mut all = self.nodes_down();
        all.extend(self.nodes_partitioned());
        all
    }
}
