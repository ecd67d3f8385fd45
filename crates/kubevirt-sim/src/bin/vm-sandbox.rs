//! `vm-sandbox`: start, inspect and stop the sandbox (a real Kubernetes 1.20 control plane
//! with KubeVirt and kubelets simulated) from a shell or a script.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

use kubevirt_sim::binaries::Binaries;
use kubevirt_sim::controlplane::{ControlPlane, ControlPlaneOptions, client_from_kubeconfig};
use kubevirt_sim::crds::KubeVirtRelease;
use kubevirt_sim::nodes::{CPU_ANNOTATION, FILLED_LABELS_ANNOTATION, NodeTemplate};
use kubevirt_sim::process::{self, ManagedProcess};
use kubevirt_sim::sandbox::{SandboxConfig, node_is_ready, provision, wait_nodes_ready};
use kubevirt_sim::scenario::Scenario;
use kubevirt_sim::state::{SandboxInfo, StateDir};
use kubevirt_sim::{SimConfig, Simulator};

/// The order `down` stops processes in: clients before the servers they talk to.
const STOP_ORDER: &[&str] = &[
    "simulator",
    "kube-scheduler",
    "kube-controller-manager",
    "kube-apiserver",
    "etcd",
];

#[derive(Parser)]
#[command(
    name = "vm-sandbox",
    version,
    about = "A real Kubernetes control plane with KubeVirt and kubelets simulated"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct StateArg {
    /// Directory holding the sandbox's state, logs and kubeconfig.
    #[arg(long, default_value = ".sandbox", env = "VM_SANDBOX_STATE_DIR")]
    state_dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Start the sandbox in the background; prints the KUBECONFIG to use.
    Up {
        #[command(flatten)]
        state: StateArg,
        /// Number of simulated worker nodes (node-1..node-N), besides the scenario's. Default:
        /// 3, or none when the scenario has Node objects.
        #[arg(long)]
        nodes: Option<usize>,
        /// Number of sample VMs to create (namespace default, vm-1..vm-M).
        #[arg(long, default_value_t = 0)]
        vms: usize,
        /// Multi-document Kubernetes YAML: Nodes become simulated nodes, the rest is applied.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// CPU capacity of each generated node.
        #[arg(long, default_value = "32")]
        node_cpu: String,
        /// Memory capacity of each generated node.
        #[arg(long, default_value = "128Gi")]
        node_memory: String,
        /// Pod capacity of each generated node.
        #[arg(long, default_value = "110")]
        node_pods: String,
        /// Seconds without heartbeat before the controller manager marks a node NotReady.
        #[arg(long, default_value_t = 10)]
        node_grace_period: u64,
        /// Milliseconds between node heartbeats (Lease renewals).
        #[arg(long, default_value_t = 2000)]
        heartbeat_ms: u64,
        /// Milliseconds without virt-handler heartbeat before a node counts as unresponsive
        /// (KubeVirt: 5 min).
        #[arg(long, default_value_t = 15_000)]
        handler_timeout_ms: u64,
        /// Fixed duration of each live migration, in milliseconds.
        #[arg(long, default_value_t = 1_000)]
        migration_base_ms: u64,
        /// Extra live-migration time per GiB of guest memory, in milliseconds.
        #[arg(long, default_value_t = 1_000)]
        migration_ms_per_gib: u64,
        /// Milliseconds a migration target pod may stay unschedulable (KubeVirt: 5 min).
        #[arg(long, default_value_t = 20_000)]
        migration_unschedulable_timeout_ms: u64,
        /// First retry delay after a failed evacuation migration, in ms (KubeVirt: 20 s).
        #[arg(long, default_value_t = 20_000)]
        evacuation_backoff_ms: u64,
        /// How long to wait for the sandbox to be ready: `90`, `90s`, `3m` or `1h` (a bare
        /// number is seconds), as the plugins take durations.
        #[arg(long, default_value = "180s", value_parser = parse_duration)]
        timeout: Duration,
        /// The KubeVirt release whose API to serve (e.g. 1.5: migrations without
        /// spec.addedNodeSelector, as before 1.6).
        #[arg(long, default_value = "1.6", value_parser = KubeVirtRelease::parse)]
        kubevirt_version: KubeVirtRelease,
    },
    /// Stop everything `up` started (and nothing else).
    Down {
        #[command(flatten)]
        state: StateArg,
    },
    /// Show the processes and nodes.
    Status {
        #[command(flatten)]
        state: StateArg,
    },
    /// Power a simulated node off (`down`: its guests stop, its kubelet goes silent) or
    /// back on (`up`: a reboot; the launcher pods that were running there go Failed); or cut
    /// it off from the network (`partition`: its guests keep running, its kubelet goes
    /// silent and sees no API changes) and reconnect it (`heal`: its kubelet kills the pods
    /// deleted meanwhile and resumes).
    Node {
        /// `down`, `up`, `partition` or `heal`.
        #[arg(value_parser = ["down", "up", "partition", "heal"])]
        action: String,
        /// Node name.
        name: String,
        #[command(flatten)]
        state: StateArg,
    },
    /// Stop the API server and start it again with the same flags (`restart`): its clients
    /// see their connections refused meanwhile; the cluster's state survives in etcd.
    Apiserver {
        /// `restart`.
        #[arg(value_parser = ["restart"])]
        action: String,
        /// Seconds to leave it stopped before starting it again.
        #[arg(long, default_value_t = 5)]
        down_for: u64,
        #[command(flatten)]
        state: StateArg,
    },
    /// Run the simulator in the foreground (what `up` starts in the background).
    #[command(hide = true)]
    Simulate {
        #[command(flatten)]
        state: StateArg,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VM_SANDBOX_LOG")
                .unwrap_or_else(|_| "info,kube_client=off,kube=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
        Command::Up {
            state,
            nodes,
            vms,
            scenario,
            node_cpu,
            node_memory,
            node_pods,
            node_grace_period,
            heartbeat_ms,
            handler_timeout_ms,
            migration_base_ms,
            migration_ms_per_gib,
            migration_unschedulable_timeout_ms,
            evacuation_backoff_ms,
            timeout,
            kubevirt_version,
        } => {
            let default_node = NodeTemplate::worker("", &node_cpu, &node_memory, &node_pods);
            let scenario = match scenario {
                Some(path) => Scenario::load(&path, &default_node)?,
                None => Scenario::default(),
            };
            for node in &scenario.nodes {
                if let Some(added) = node.annotations.get(FILLED_LABELS_ANNOTATION) {
                    eprintln!(
                        "scenario node {} has node-labeller labels but no machine-type.node.kubevirt.io/* label, \
                         which every launcher pod selects: added {added}, as the node-labeller would \
                         (annotation {FILLED_LABELS_ANNOTATION}); name them in the node's labels or its \
                         {CPU_ANNOTATION} annotation (machine-types=...) to choose",
                        node.name
                    );
                }
            }
            let config = SandboxConfig {
                // A scenario with nodes gets those only, unless --nodes asks for more.
                nodes: NodeTemplate::workers(
                    nodes.unwrap_or(if scenario.nodes.is_empty() { 3 } else { 0 }),
                    &node_cpu,
                    &node_memory,
                    &node_pods,
                ),
                scenario,
                sim: SimConfig {
                    heartbeat_interval_ms: heartbeat_ms,
                    handler_timeout_ms,
                    migration_base_ms,
                    migration_ms_per_gib,
                    migration_unschedulable_timeout_ms,
                    evacuation_backoff_ms,
                    ..SimConfig::default()
                },
                control_plane: ControlPlaneOptions {
                    node_monitor_grace_period: Duration::from_secs(node_grace_period),
                    ..Default::default()
                },
                ready_timeout: timeout,
                kubevirt_release: kubevirt_version,
                ..Default::default()
            };
            rt.block_on(up(&StateDir::new(&state.state_dir)?, config, vms))
        }
        Command::Down { state } => down(&StateDir::new(&state.state_dir)?),
        Command::Status { state } => rt.block_on(status(&StateDir::new(&state.state_dir)?)),
        Command::Node { action, name, state } => {
            rt.block_on(node(&StateDir::new(&state.state_dir)?, &action, &name))
        }
        Command::Apiserver {
            action: _,
            down_for,
            state,
        } => rt.block_on(restart_apiserver(&StateDir::new(&state.state_dir)?, down_for)),
        Command::Simulate { state } => rt.block_on(simulate(&StateDir::new(&state.state_dir)?)),
    }
}

/// A duration as the plugins take it: `90` (seconds), `90s`, `15m`, `1h`; jiff's friendly
/// format also takes `1m30s` and `2h 30m`.
fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration such as 90s, 15m or 1h");
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let duration: jiff::SignedDuration = text.parse().map_err(|_| bad())?;
    Duration::try_from(duration).map_err(|_| bad())
}

fn marker(state: &StateDir) -> String {
    state.root().display().to_string()
}

fn running(state: &StateDir) -> Vec<(String, u32)> {
    let marker = marker(state);
    process::read_pids(&state.pids())
        .into_iter()
        .filter(|(_, pid)| process::is_ours(*pid, &marker))
        .collect()
}

async fn up(state: &StateDir, config: SandboxConfig, vms: usize) -> Result<()> {
    let started = Instant::now();
    let alive = running(state);
    if !alive.is_empty() {
        let names: Vec<&str> = alive.iter().map(|(n, _)| n.as_str()).collect();
        bail!(
            "a sandbox is already running in {} ({}); run `vm-sandbox down --state-dir {}` first",
            state.root().display(),
            names.join(", "),
            state.root().display()
        );
    }
    // A fresh cluster each time: old etcd data, keys, marks and run history go.
    for dir in [
        state.etcd_data(),
        state.pki(),
        state.pids(),
        state.nodes_down(),
        state.nodes_partitioned(),
    ] {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing stale {}", dir.display()))?;
        }
    }
    let runs = state.launcher_runs();
    if runs.exists() {
        std::fs::remove_file(&runs).with_context(|| format!("removing stale {}", runs.display()))?;
    }
    let bins = Binaries::locate()?;
    eprintln!("starting the control plane in {}", state.root().display());
    let mut cp = ControlPlane::start(state, &bins, &config.control_plane)
        .await
        .context("starting the control plane")?;
    eprintln!(
        "API server ready at {} after {:.1} s",
        cp.apiserver_url,
        started.elapsed().as_secs_f64()
    );
    provision(&cp.client, &config)
        .await
        .context("installing the KubeVirt API, nodes and scenario")?;
    if vms > 0 {
        create_sample_vms(&cp.client, vms)
            .await
            .context("creating sample VMs")?;
    }
    state.write_info(&SandboxInfo {
        apiserver_url: cp.apiserver_url.clone(),
        etcd_port: cp.etcd_port,
        sim: config.sim.clone(),
    })?;
    let exe = std::env::current_exe().context("locating the vm-sandbox executable")?;
    let mut sim = process::spawn(
        "simulator",
        &exe,
        &[
            "simulate".into(),
            "--state-dir".into(),
            state.root().display().to_string(),
        ],
        &state.logs(),
    )?;
    process::write_pid(&state.pids(), "simulator", sim.pid)?;
    let names: Vec<String> = config.all_nodes().into_iter().map(|n| n.name).collect();
    eprintln!("waiting for {} node(s) to be Ready", names.len());
    let ready = wait_nodes_ready(&cp.client, &names, config.ready_timeout).await;
    if let Err(e) = sim.check_running() {
        bail!("{e}");
    }
    ready.context("waiting for the nodes")?;
    eprintln!(
        "nodes Ready after {:.1} s; waiting for the VMs that should run",
        started.elapsed().as_secs_f64()
    );
    let vms_ready = kubevirt_sim::sandbox::wait_vms_running(&cp.client, config.ready_timeout).await;
    if let Err(e) = sim.check_running() {
        bail!("{e}");
    }
    vms_ready.context("waiting for the VMs")?;
    // Success: let the processes outlive this command (their PIDs are recorded for `down`).
    let procs: Vec<ManagedProcess> = std::mem::take(&mut cp.processes);
    for p in procs.into_iter().chain([sim]) {
        p.detach();
    }
    eprintln!(
        "sandbox up in {:.1} s (logs in {})",
        started.elapsed().as_secs_f64(),
        state.logs().display()
    );
    println!("export KUBECONFIG={}", state.kubeconfig().display());
    Ok(())
}

/// `count` VMs with runStrategy Always; they run once the VM controller is simulated.
async fn create_sample_vms(client: &kube::Client, count: usize) -> Result<()> {
    use kube::api::{DynamicObject, Patch, PatchParams};
    let ar = kubevirt_sim::crds::kubevirt_resource("VirtualMachine");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    for i in 1..=count {
        let name = format!("vm-{i}");
        let vm = serde_json::json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "sample"}},
            "spec": {
                "runStrategy": "Always",
                "template": {
                    "metadata": {"labels": {"kubevirt.io/vm": name}},
                    "spec": {
                        "domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}], "interfaces": [{"name": "default", "masquerade": {}}]}, "resources": {"requests": {"memory": "1Gi", "cpu": "1"}}},
                        "networks": [{"name": "default", "pod": {}}],
                        "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:latest"}}],
                    },
                },
            },
        });
        api.patch(
            &name,
            &PatchParams::apply("vm-sandbox").force(),
            &Patch::Apply(&vm),
        )
        .await?;
    }
    Ok(())
}

fn down(state: &StateDir) -> Result<()> {
    let marker = marker(state);
    let mut recorded = process::read_pids(&state.pids());
    if recorded.is_empty() {
        eprintln!("no sandbox recorded in {}", state.root().display());
        return Ok(());
    }
    recorded.sort_by_key(|(name, _)| STOP_ORDER.iter().position(|n| n == name).unwrap_or(0));
    for (name, pid) in recorded {
        if process::stop_recorded(pid, &marker, Duration::from_secs(10)) {
            eprintln!("stopped {name} (pid {pid})");
        } else {
            eprintln!("{name} (pid {pid}) was not running");
        }
        let _ = std::fs::remove_file(state.pids().join(format!("{name}.pid")));
    }
    Ok(())
}

async fn status(state: &StateDir) -> Result<()> {
    let marker = marker(state);
    let recorded = process::read_pids(&state.pids());
    if recorded.is_empty() {
        println!("no sandbox in {}", state.root().display());
        return Ok(());
    }
    let info = state.read_info()?;
    println!("state dir:  {}", state.root().display());
    println!("API server: {}", info.apiserver_url);
    println!("kubeconfig: {}", state.kubeconfig().display());
    let mut all_up = true;
    for name in STOP_ORDER.iter().rev() {
        if let Some((_, pid)) = recorded.iter().find(|(n, _)| n == name) {
            let up = process::is_ours(*pid, &marker);
            all_up &= up;
            println!(
                "{name:<24} pid {pid:<8} {}",
                if up { "running" } else { "NOT RUNNING" }
            );
        }
    }
    if !all_up {
        bail!(
            "some sandbox processes are not running (logs in {})",
            state.logs().display()
        );
    }
    let client = client_from_kubeconfig(&state.kubeconfig()).await?;
    let nodes: Api<Node> = Api::all(client);
    let list = tokio::time::timeout(Duration::from_secs(10), nodes.list(&Default::default()))
        .await
        .context("listing nodes timed out")??;
    let down = kubevirt_sim::state::read_nodes_down(&state.nodes_down());
    let partitioned = kubevirt_sim::state::read_nodes_partitioned(&state.nodes_partitioned());
    for n in &list.items {
        let name = n.metadata.name.clone().unwrap_or_default();
        let ready = if node_is_ready(n) { "Ready" } else { "NotReady" };
        let kubelet = if down.contains(&name) {
            "kubelet down"
        } else if partitioned.contains(&name) {
            "kubelet partitioned"
        } else {
            "kubelet up"
        };
        println!("node {name:<20} {ready:<9} {kubelet}");
    }
    let runs = kubevirt_sim::history::read(state.root());
    let running = runs.iter().filter(|r| r.stopped.is_none()).count();
    let overlaps = kubevirt_sim::history::overlapping_runs(&runs).len();
    println!(
        "launcher runs: {} recorded, {running} running, {overlaps} overlapping ({})",
        runs.len(),
        state.launcher_runs().display()
    );
    Ok(())
}

async fn node(state: &StateDir, action: &str, name: &str) -> Result<()> {
    let client = client_from_kubeconfig(&state.kubeconfig()).await?;
    let nodes: Api<Node> = Api::all(client);
    if nodes
        .get_opt(name)
        .await
        .with_context(|| format!("looking up node {name}"))?
        .is_none()
    {
        bail!("no node named {name} in the sandbox");
    }
    let what = match action {
        "down" | "up" => {
            state.set_node_down(name, action == "down")?;
            if action == "down" {
                "stopped (it goes NotReady after the grace period)"
            } else {
                "restarted"
            }
        }
        _ => {
            state.set_node_partitioned(name, action == "partition")?;
            if action == "partition" {
                "cut off from the API server, its guests still running (it goes NotReady after the grace period)"
            } else {
                "reconnected (it stops the pods deleted meanwhile)"
            }
        }
    };
    eprintln!("node {name}: simulated kubelet {what}");
    Ok(())
}

async fn restart_apiserver(state: &StateDir, down_for: u64) -> Result<()> {
    let started = Instant::now();
    eprintln!("stopping kube-apiserver for {down_for} s");
    let pid = kubevirt_sim::controlplane::restart_recorded_apiserver(
        state,
        Duration::from_secs(down_for),
        Duration::from_secs(90),
    )
    .await
    .context("restarting kube-apiserver")?;
    eprintln!(
        "kube-apiserver answers again (pid {pid}), {:.1} s after it was stopped",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn simulate(state: &StateDir) -> Result<()> {
    let info = state.read_info()?;
    let client = client_from_kubeconfig(&state.kubeconfig()).await?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let sim = Simulator {
        client,
        config: info.sim,
        nodes_down_dir: state.nodes_down(),
        nodes_partitioned_dir: state.nodes_partitioned(),
        run_history: Some(state.launcher_runs()),
    };
    let task = tokio::spawn(sim.run(rx));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    let _ = tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    Ok(())
}
