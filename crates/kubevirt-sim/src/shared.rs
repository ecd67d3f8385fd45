//! The state the simulator's controllers share: the admin client, the timings and which
//! simulated machines are down or cut off (files in the state directory, written by
//! `vm-sandbox node down|partition`). The kubelets ([`crate::kubelet`]), storage
//! ([`crate::storage`]) and KubeVirt's controllers ([`crate::kubevirt`]) each get a copy;
//! they depend on this module and never on [`crate::sim`], which only wires them. In a
//! real cluster each of them reads the same facts from the machines it runs on.

use crate::state::{read_nodes_down, read_nodes_partitioned};
pub use crate::timings::SimConfig;
use std::collections::HashSet;
use std::path::PathBuf;

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
