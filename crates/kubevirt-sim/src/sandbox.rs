//! The test fixture: [`Sandbox::start`] gives a test its own control plane (own ports, own
//! temp dir) with simulated nodes and the KubeVirt API, and stops everything on drop. It
//! refuses to start without the control-plane binaries, so a sandbox test never passes
//! by not running.
//!
//! [`provision`] and [`wait_nodes_ready`] are shared with `vm-sandbox up`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use serde_json::Value;
use tokio::sync::watch;

use crate::binaries::Binaries;
use crate::controlplane::{ControlPlane, ControlPlaneOptions, client_from_kubeconfig};
use crate::crds::KubeVirtRelease;
use crate::nodes::NodeTemplate;
use crate::scenario::Scenario;
use crate::sim::{SimConfig, Simulator};
use crate::state::StateDir;
use crate::{Error, Result};

/// What a sandbox contains.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Simulated nodes.
    pub nodes: Vec<NodeTemplate>,
    /// Objects to apply after the KubeVirt API is installed, and the KubeVirt configuration.
    pub scenario: Scenario,
    /// `spec.configuration` of the KubeVirt CR when the scenario has none.
    pub kubevirt_configuration: Value,
    /// Simulator timings.
    pub sim: SimConfig,
    /// Control-plane timings.
    pub control_plane: ControlPlaneOptions,
    /// How long to wait for the nodes to be Ready.
    pub ready_timeout: Duration,
    /// The KubeVirt release whose API is served.
    pub kubevirt_release: KubeVirtRelease,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            nodes: NodeTemplate::workers(2, "32", "128Gi", "110"),
            scenario: Scenario::default(),
            kubevirt_configuration: Value::Object(Default::default()),
            sim: SimConfig::default(),
            control_plane: ControlPlaneOptions::default(),
            ready_timeout: Duration::from_secs(120),
            kubevirt_release: KubeVirtRelease::CURRENT,
        }
    }
}

impl SandboxConfig {
    /// A config with `count` default workers `node-1`..`node-N`.
    pub fn with_nodes(count: usize) -> Self {
        SandboxConfig {
            nodes: NodeTemplate::workers(count, "32", "128Gi", "110"),
            ..Default::default()
        }
    }

    /// A config for `scenario`: its nodes only when it has Node objects, else the default
    /// workers.
    pub fn from_scenario(scenario: Scenario) -> Self {
        let nodes = if scenario.nodes.is_empty() {
            SandboxConfig::default().nodes
        } else {
            Vec::new()
        };
        SandboxConfig {
            nodes,
            scenario,
            ..Default::default()
        }
    }

    /// All nodes: the configured ones (`nodes`, set explicitly) and the scenario's.
    pub fn all_nodes(&self) -> Vec<NodeTemplate> {
        let mut all = self.nodes.clone();
        all.extend(self.scenario.nodes.iter().cloned());
        all
    }
}

/// Installs the KubeVirt API and CR, creates the nodes and applies the scenario.
pub async fn provision(client: &kube::Client, config: &SandboxConfig) -> Result<()> {
    crate::crds::install(client, config.kubevirt_release).await?;
    let kv_config = config
        .scenario
        .kubevirt_configuration
        .clone()
        .unwrap_or_else(|| config.kubevirt_configuration.clone());
    crate::crds::install_kubevirt_cr(client, kv_config, config.kubevirt_release).await?;
    for node in config.all_nodes() {
        node.create(client).await?;
    }
    config.scenario.apply(client).await
}

/// Waits until every named node is Ready and the real node lifecycle controller has
/// lifted its `not-ready` taint (so pods can be scheduled there).
pub async fn wait_nodes_ready(client: &kube::Client, names: &[String], timeout: Duration) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let list = api
            .list(&Default::default())
            .await
            .map_err(|e| Error::kube("listing nodes", e))?;
        let pending: Vec<&String> = names
            .iter()
            .filter(|name| {
                !list
                    .items
                    .iter()
                    .any(|n| n.metadata.name.as_ref() == Some(*name) && node_is_ready(n))
            })
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("nodes to be Ready and untainted: {pending:?}"),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until every VM whose runStrategy makes it run (Always, RerunOnFailure, Once, or
/// `running: true`) has a Running VMI.
pub async fn wait_vms_running(client: &kube::Client, timeout: Duration) -> Result<()> {
    use kube::api::DynamicObject;
    let vms: Api<DynamicObject> =
        Api::all_with(client.clone(), &crate::crds::kubevirt_resource("VirtualMachine"));
    let vmis: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &crate::crds::kubevirt_resource("VirtualMachineInstance"),
    );
    let deadline = Instant::now() + timeout;
    loop {
        let vm_list = vms
            .list(&Default::default())
            .await
            .map_err(|e| Error::kube("listing VMs", e))?;
        let vmi_list = vmis
            .list(&Default::default())
            .await
            .map_err(|e| Error::kube("listing VMIs", e))?;
        let running: std::collections::HashSet<(Option<String>, Option<String>)> = vmi_list
            .items
            .iter()
            .filter(|v| v.data.pointer("/status/phase").and_then(Value::as_str) == Some("Running"))
            .map(|v| (v.metadata.namespace.clone(), v.metadata.name.clone()))
            .collect();
        let pending: Vec<String> = vm_list
            .items
            .iter()
            .filter(|vm| {
                let v = serde_json::to_value(vm).unwrap_or(Value::Null);
                matches!(
                    crate::kubevirt::vm::run_strategy(&v).as_str(),
                    "Always" | "RerunOnFailure" | "Once"
                )
            })
            .filter(|vm| !running.contains(&(vm.metadata.namespace.clone(), vm.metadata.name.clone())))
            .map(|vm| {
                format!(
                    "{}/{}",
                    vm.metadata.namespace.clone().unwrap_or_default(),
                    vm.metadata.name.clone().unwrap_or_default()
                )
            })
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let shown: Vec<&String> = pending.iter().take(10).collect();
        let why = why_not_running(client).await?;
        if let Some((message, Some(shortfall))) = &why {
            return Err(Error::Other(format!(
                "{} VM(s) cannot all run, e.g. {shown:?}: {shortfall}. The scheduler says: {message}",
                pending.len()
            )));
        }
        if Instant::now() > deadline {
            let said = why
                .map(|(message, _)| format!("; a launcher pod is unschedulable: {message}"))
                .unwrap_or_default();
            return Err(Error::Timeout {
                what: format!("{} VM(s) to be Running, e.g. {shown:?}{said}", pending.len()),
                seconds: timeout.as_secs(),
            });
        }
        // Listing thousands of VMs is not free for the API server (or this process):
        // poll big clusters less often.
        let pause = if vm_list.items.len() > 200 { 3_000 } else { 500 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// The scheduler's message from a launcher pod it could not place, if any, and whether the
/// waiting launcher pods cannot fit on the nodes at all ([`crate::room`]).
async fn why_not_running(client: &kube::Client) -> Result<Option<(String, Option<String>)>> {
    use k8s_openapi::api::core::v1::Pod;
    let pods: Api<Pod> = Api::all(client.clone());
    let launchers = pods
        .list(&kube::api::ListParams::default().labels("kubevirt.io=virt-launcher"))
        .await
        .map_err(|e| Error::kube("listing launcher pods", e))?;
    let Some(message) = launchers
        .items
        .iter()
        .find_map(crate::room::unschedulable_message)
    else {
        return Ok(None);
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let nodes = nodes
        .list(&Default::default())
        .await
        .map_err(|e| Error::kube("listing nodes", e))?;
    let all_pods = pods
        .list(&Default::default())
        .await
        .map_err(|e| Error::kube("listing pods", e))?;
    let shortfall = crate::room::shortfall(&nodes.items, &all_pods.items);
    Ok(Some((message, shortfall)))
}

/// Ready=True and no `node.kubernetes.io/not-ready` / `unreachable` taint.
pub fn node_is_ready(node: &Node) -> bool {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| {
            t.iter()
                .any(|t| t.key == "node.kubernetes.io/not-ready" || t.key == "node.kubernetes.io/unreachable")
        });
    ready && !tainted
}

/// An isolated sandbox for one test. Dropping it stops the simulator and the processes
/// and removes its directory.
pub struct Sandbox {
    state: StateDir,
    client: kube::Client,
    shutdown: Option<watch::Sender<bool>>,
    sim_thread: Option<std::thread::JoinHandle<()>>,
    control_plane: Option<ControlPlane>,
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("state", &self.state.root())
            .finish()
    }
}

impl Sandbox {
    /// Starts a sandbox in a new temp dir and returns once its nodes are Ready.
    ///
    /// A control plane whose API server never answers is started once more, from scratch in
    /// another temp dir with other ports: on a loaded machine with several sandboxes starting
    /// at once, an API server was once seen running while its port refused every connection
    /// for the whole startup timeout.
    pub async fn start(config: SandboxConfig) -> Result<Sandbox> {
        match Self::start_once(config.clone()).await {
            Err(Error::Timeout { what, seconds }) if what.starts_with("kube-apiserver to be ready") => {
                tracing::warn!(
                    "the API server did not answer within {seconds} s; starting the sandbox again in a new directory"
                );
                Self::start_once(config).await
            }
            other => other,
        }
    }

    async fn start_once(config: SandboxConfig) -> Result<Sandbox> {
        let bins = Binaries::locate()?;
        let dir = tempfile::Builder::new()
            .prefix("vm-sandbox-")
            .tempdir()
            .map_err(|e| Error::io("creating the sandbox temp dir", std::env::temp_dir(), e))?;
        let state = StateDir::new(dir.path())?;
        let control_plane = ControlPlane::start(&state, &bins, &config.control_plane).await?;
        let client = control_plane.client.clone();
        provision(&client, &config).await?;
        let (tx, rx) = watch::channel(false);
        let kubeconfig = state.kubeconfig();
        let sim_config = config.sim.clone();
        let down_dir = state.nodes_down();
        let partitioned_dir = state.nodes_partitioned();
        let history = state.launcher_runs();
        let sim_thread = std::thread::Builder::new()
            .name("kubevirt-sim".into())
            .spawn(move || {
                run_simulator_thread(kubeconfig, sim_config, down_dir, partitioned_dir, history, rx)
            })
            .map_err(|e| Error::Other(format!("starting the simulator thread: {e}")))?;
        let sandbox = Sandbox {
            state,
            client,
            shutdown: Some(tx),
            sim_thread: Some(sim_thread),
            control_plane: Some(control_plane),
            _dir: Some(dir),
        };
        let names: Vec<String> = config.all_nodes().into_iter().map(|n| n.name).collect();
        wait_nodes_ready(&sandbox.client, &names, config.ready_timeout).await?;
        Ok(sandbox)
    }

    /// An admin client (bound to the runtime that called [`Sandbox::start`]).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The admin kubeconfig, for `kubectl --kubeconfig` and the plugins.
    pub fn kubeconfig(&self) -> PathBuf {
        self.state.kubeconfig()
    }

    /// The state directory (logs are in `logs/`).
    pub fn state_dir(&self) -> &Path {
        self.state.root()
    }

    /// Powers `node` off: its simulated kubelet stops (no more heartbeats, pod updates or
    /// deletions) and the launcher pods running there stop running (recorded in
    /// [`crate::history`]); its pods and VolumeAttachments stay as they are.
    pub fn node_down(&self, node: &str) -> Result<()> {
        self.state.set_node_down(node, true)
    }

    /// Powers `node` back on (a reboot): its kubelet resumes, and the launcher pods that
    /// were running when it went down go Failed.
    pub fn node_up(&self, node: &str) -> Result<()> {
        self.state.set_node_down(node, false)
    }

    /// Cuts `node` off from the network: the machine and its guests keep running (their
    /// runs stay open in [`crate::history`]), but its kubelet and virt-handler neither
    /// renew its Lease, nor post node or pod status, nor see what changes in the API, so
    /// the control plane treats it as a silent node (NotReady, tainted). A pod deleted
    /// meanwhile (even force-deleted) keeps running there until [`Sandbox::heal`].
    pub fn partition(&self, node: &str) -> Result<()> {
        self.state.set_node_partitioned(node, true)
    }

    /// Reconnects `node`: its kubelet catches up with the API, killing the launcher pods
    /// that are gone from it or being deleted (their runs stop now, reason `deleted`), and
    /// resumes its Lease renewals and the status of the pods that still exist.
    pub fn heal(&self, node: &str) -> Result<()> {
        self.state.set_node_partitioned(node, false)
    }

    /// Stops the sandbox's kube-apiserver, waits `down_for`, and starts it again with the same
    /// flags, port, etcd and certificate; returns once it answers again (some 6 to 8 s after
    /// the start). The cluster's state survives in etcd. Meanwhile every client sees its
    /// connections refused; the controller manager, the scheduler and the simulator's
    /// watches resume by themselves afterwards.
    pub async fn restart_apiserver(&mut self, down_for: Duration) -> Result<()> {
        match self.control_plane.as_mut() {
            Some(cp) => cp.restart_apiserver(down_for).await,
            None => Err(Error::Other("the sandbox's control plane is stopped".into())),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.sim_thread.take() {
            let _ = t.join();
        }
        if let Some(mut cp) = self.control_plane.take() {
            cp.stop();
        }
        if std::env::var_os("VM_SANDBOX_KEEP").is_some()
            && let Some(dir) = self._dir.take()
        {
            eprintln!("keeping sandbox state in {}", dir.keep().display());
        }
    }
}

/// Body of the fixture's simulator thread: its own runtime and client, so the simulator
/// keeps running while the test blocks (e.g. on a `kubectl` child process).
fn run_simulator_thread(
    kubeconfig: PathBuf,
    config: SimConfig,
    nodes_down_dir: PathBuf,
    nodes_partitioned_dir: PathBuf,
    run_history: PathBuf,
    shutdown: watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubevirt-sim: cannot build the simulator runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let client = match client_from_kubeconfig(&kubeconfig).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("kubevirt-sim: {e}");
                return;
            }
        };
        let sim = Simulator {
            client,
            config,
            nodes_down_dir,
            nodes_partitioned_dir,
            run_history: Some(run_history),
        };
        if let Err(e) = sim.run(shutdown).await {
            eprintln!("kubevirt-sim: {e}");
        }
    });
    rt.shutdown_timeout(Duration::from_secs(2));
}
