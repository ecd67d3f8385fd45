//! The simulator: everything the sandbox plays instead of real machines: the kubelets of
//! the simulated nodes ([`crate::kubelet`]), storage (a CSI provisioner and the
//! attach/detach controller, [`crate::storage`]), non-graceful node shutdown
//! ([`crate::outofservice`]) and KubeVirt's controllers ([`crate::kubevirt`]). It runs
//! either inside `vm-sandbox` (a background process) or on a thread of the test fixture.
//! This module only wires them: what they share is [`crate::shared::Shared`].

use std::collections::HashSet;
use std::path::PathBuf;

use tokio::sync::watch;

use crate::Result;
use crate::shared::Shared;
pub use crate::timings::SimConfig;

/// The simulator.
#[derive(Clone)]
pub struct Simulator {
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

impl Simulator {
    /// The state the controllers share.
    fn shared(&self) -> Shared {
        Shared {
            client: self.client.clone(),
            config: self.config.clone(),
            nodes_down_dir: self.nodes_down_dir.clone(),
            nodes_partitioned_dir: self.nodes_partitioned_dir.clone(),
            run_history: self.run_history.clone(),
        }
    }

    /// The nodes that are down (powered off): their guests are stopped.
    pub fn nodes_down(&self) -> HashSet<String> {
        self.shared().nodes_down()
    }

    /// The nodes cut off from the network: their guests keep running, unseen.
    pub fn nodes_partitioned(&self) -> HashSet<String> {
        self.shared().nodes_partitioned()
    }

    /// The nodes whose kubelet and virt-handler cannot reach the API server: down or
    /// partitioned. To the control plane (and to KubeVirt's controllers) both look alike.
    pub fn nodes_unreachable(&self) -> HashSet<String> {
        self.shared().nodes_unreachable()
    }

    /// Runs until `shutdown` turns true (or its sender is dropped).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let shared = self.shared();
        let kubelets = tokio::spawn(crate::kubelet::run(shared.clone()));
        let kubevirt = self
            .config
            .kubevirt
            .then(|| tokio::spawn(crate::kubevirt::run(shared.clone())));
        let storage = tokio::spawn(crate::storage::run(shared));
        let out_of_service = tokio::spawn(crate::outofservice::run(self.client.clone()));
        loop {
            if *shutdown.borrow() {
                break;
            }
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        kubelets.abort();
        storage.abort();
        out_of_service.abort();
        if let Some(k) = kubevirt {
            k.abort();
        }
        Ok(())
    }
}
