//! The real control plane: etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler on free loopback ports, with the flags measured to work on 1.20.2
//! (see DESIGN section 4).
//!
//! Authentication is a bearer token for an admin in `system:masters`; RBAC is on, so
//! permissions behave as on a real cluster. The API server generates its own serving
//! certificate and CA in `--cert-dir`; the kubeconfig trusts exactly that file, so
//! clients really verify the server.
//!
//! The API server can be stopped and started again with the same flags (same port, same etcd,
//! same certificate): [`ControlPlane::restart_apiserver`] for the test fixture,
//! [`restart_recorded_apiserver`] for `vm-sandbox apiserver restart`. The cluster's state
//! survives in etcd, and every client (the controller manager, the scheduler, the simulator,
//! the plugins) must reconnect by itself, as after a control-plane upgrade or crash.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::binaries::Binaries;
use crate::pki;
use crate::ports::free_port;
use crate::process::{ManagedProcess, spawn};
use crate::state::StateDir;
use crate::{Error, Result};

/// Settings of the control-plane processes that tests want short.
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// kube-controller-manager `--node-monitor-grace-period`: how long a node may miss
    /// heartbeats before it is marked NotReady (40 s on real clusters).
    pub node_monitor_grace_period: Duration,
    /// How long to wait for the API server to answer.
    pub startup_timeout: Duration,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        ControlPlaneOptions {
            node_monitor_grace_period: Duration::from_secs(10),
            startup_timeout: Duration::from_secs(90),
        }
    }
}

/// A running control plane.
pub struct ControlPlane {
    /// The processes, in start order.
    pub processes: Vec<ManagedProcess>,
    /// `https://127.0.0.1:PORT`.
    pub apiserver_url: String,
    /// etcd's client port.
    pub etcd_port: u16,
    /// A client for the admin user.
    pub client: kube::Client,
    /// How the API server was started, to start it again the same way.
    apiserver_command: (PathBuf, Vec<String>),
    /// Where logs and PID files go.
    state: StateDir,
    /// How long the API server may take to answer.
    startup_timeout: Duration,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("apiserver_url", &self.apiserver_url)
            .field("processes", &self.processes)
            .finish()
    }
}

fn arg(flag: &str, value: impl std::fmt::Display) -> String {
    format!("--{flag}={value}")
}

impl ControlPlane {
    /// Starts the four processes and returns once the API server is ready. On failure the
    /// processes already started are stopped (by dropping them).
    pub async fn start(
        state: &StateDir,
        bins: &Binaries,
        opts: &ControlPlaneOptions,
    ) -> Result<ControlPlane> {
        state.create()?;
        let token = pki::random_token()?;
        let tokens = state.pki().join("tokens.csv");
        let sa_key = state.pki().join("service-account.key");
        pki::write_token_file(&tokens, &token)?;
        let sa_pub = state.pki().join("service-account.pub");
        pki::write_service_account_key(&sa_key, &sa_pub)?;
        let mut processes = Vec::new();

        let etcd_port = free_port()?;
        let etcd_peer = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        tracing::info!("starting etcd on 127.0.0.1:{etcd_port}");
        let mut etcd = spawn(
            "etcd",
            &bins.etcd,
            &[
                arg("name", "sandbox"),
                arg("data-dir", state.etcd_data().display()),
                arg("listen-client-urls", &etcd_url),
                arg("advertise-client-urls", &etcd_url),
                arg("listen-peer-urls", &peer_url),
                arg("initial-advertise-peer-urls", &peer_url),
                arg("initial-cluster", format!("sandbox={peer_url}")),
                arg(
                    "listen-metrics-urls",
                    format!("http://127.0.0.1:{}", free_port()?),
                ),
                arg("log-level", "warn"),
                arg("logger", "zap"),
            ],
            &state.logs(),
        )?;
        record(state, &etcd)?;
        wait_for_port(&mut etcd, etcd_port, Duration::from_secs(30))?;
        processes.push(etcd);

        let api_port = free_port()?;
        let apiserver_url = format!("https://127.0.0.1:{api_port}");
        tracing::info!("starting kube-apiserver on {apiserver_url}");
        let apiserver_args = vec![
            arg("etcd-servers", &etcd_url),
            arg("secure-port", api_port),
            arg("bind-address", "127.0.0.1"),
            arg("insecure-port", 0),
            arg("cert-dir", state.apiserver_cert_dir().display()),
            arg("token-auth-file", tokens.display()),
            arg("authorization-mode", "Node,RBAC"),
            arg("service-account-key-file", sa_pub.display()),
            arg("service-account-signing-key-file", sa_key.display()),
            arg("service-account-issuer", "https://kubernetes.default.svc"),
            arg("service-cluster-ip-range", "10.96.0.0/16"),
            arg("disable-admission-plugins", "ServiceAccount"),
            arg("allow-privileged", true),
            arg("profiling", false),
            arg("v", 1),
        ];
        let mut apiserver = spawn("kube-apiserver", &bins.apiserver, &apiserver_args, &state.logs())?;
        record(state, &apiserver)?;
        // The certificate appears a moment after start; the kubeconfig needs it.
        let cert = state.apiserver_cert();
        let deadline = Instant::now() + opts.startup_timeout;
        while !cert.exists() {
            apiserver.check_running()?;
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("{} to be generated", cert.display()),
                    seconds: opts.startup_timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        write_kubeconfig(state, &apiserver_url, &token)?;
        let client = client_from_kubeconfig(&state.kubeconfig()).await?;
        wait_ready(&client, &mut apiserver, deadline, opts.startup_timeout).await?;
        processes.push(apiserver);

        let kubeconfig = state.kubeconfig();
        tracing::info!("starting kube-controller-manager and kube-scheduler");
        let grace = opts.node_monitor_grace_period.as_secs().max(2);
        let kcm = spawn(
            "kube-controller-manager",
            &bins.controller_manager,
            &[
                arg("kubeconfig", kubeconfig.display()),
                arg("authentication-kubeconfig", kubeconfig.display()),
                arg("authorization-kubeconfig", kubeconfig.display()),
                arg("leader-elect", false),
                arg("bind-address", "127.0.0.1"),
                arg("secure-port", free_port()?),
                arg("port", 0),
                arg("cert-dir", state.pki().join("kube-controller-manager").display()),
                arg("node-monitor-period", "1s"),
                arg("node-monitor-grace-period", format!("{grace}s")),
                arg("node-startup-grace-period", format!("{}s", grace * 2)),
                arg("service-account-private-key-file", sa_key.display()),
                arg("root-ca-file", cert.display()),
                arg("kube-api-qps", 200),
                arg("kube-api-burst", 400),
                arg("profiling", false),
            ],
            &state.logs(),
        )?;
        record(state, &kcm)?;
        processes.push(kcm);
        let scheduler = spawn(
            "kube-scheduler",
            &bins.scheduler,
            &[
                arg("kubeconfig", kubeconfig.display()),
                arg("authentication-kubeconfig", kubeconfig.display()),
                arg("authorization-kubeconfig", kubeconfig.display()),
                arg("leader-elect", false),
                arg("bind-address", "127.0.0.1"),
                arg("secure-port", free_port()?),
                arg("port", 0),
                arg("cert-dir", state.pki().join("kube-scheduler").display()),
                arg("kube-api-qps", 200),
                arg("kube-api-burst", 400),
                arg("profiling", false),
            ],
            &state.logs(),
        )?;
        record(state, &scheduler)?;
        processes.push(scheduler);
        // A bad flag makes them exit at once; catch that here rather than as a hang later.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for p in processes.iter_mut() {
            p.check_running()?;
        }
        Ok(ControlPlane {
            processes,
            apiserver_url,
            etcd_port,
            client,
            apiserver_command: (bins.apiserver.clone(), apiserver_args),
            state: state.clone(),
            startup_timeout: opts.startup_timeout,
        })
    }

    /// Stops kube-apiserver (SIGTERM, SIGKILL after 10 s), waits `down_for`, and starts it
    /// again with the same flags; returns once it answers `/readyz` again.
    pub async fn restart_apiserver(&mut self, down_for: Duration) -> Result<()> {
        let i = self
            .processes
            .iter()
            .position(|p| p.name == "kube-apiserver")
            .ok_or_else(|| Error::Other("the control plane has no kube-apiserver".into()))?;
        tracing::info!("stopping kube-apiserver for {down_for:?}");
        self.processes[i].stop(Duration::from_secs(10));
        tokio::time::sleep(down_for).await;
        let (program, args) = &self.apiserver_command;
        self.processes[i] =
            start_apiserver_again(&self.state, program, args, &self.client, self.startup_timeout).await?;
        Ok(())
    }

    /// Stops all processes, newest first.
    pub fn stop(&mut self) {
        while let Some(mut p) = self.processes.pop() {
            p.stop(Duration::from_secs(5));
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts kube-apiserver with `args` (the flags of its first start) and waits until it is ready.
async fn start_apiserver_again(
    state: &StateDir,
    program: &Path,
    args: &[String],
    client: &kube::Client,
    timeout: Duration,
) -> Result<ManagedProcess> {
    let mut apiserver = spawn("kube-apiserver", program, args, &state.logs())?;
    record(state, &apiserver)?;
    wait_ready(client, &mut apiserver, Instant::now() + timeout, timeout).await?;
    tracing::info!("kube-apiserver answers again");
    Ok(apiserver)
}

/// `vm-sandbox apiserver restart`: stops the API server recorded in `state` (started by
/// `vm-sandbox up`), waits `down_for`, starts it again with the command line it had, and
/// leaves it running in the background. Returns its new PID.
pub async fn restart_recorded_apiserver(
    state: &StateDir,
    down_for: Duration,
    timeout: Duration,
) -> Result<u32> {
    let marker = state.root().display().to_string();
    let pid = crate::process::read_pids(&state.pids())
        .into_iter()
        .find(|(name, pid)| name == "kube-apiserver" && crate::process::is_ours(*pid, &marker))
        .map(|(_, pid)| pid)
        .ok_or_else(|| {
            Error::Other(format!(
                "no kube-apiserver of {} is running",
                state.root().display()
            ))
        })?;
    let cmdline_path = format!("/proc/{pid}/cmdline");
    let raw = std::fs::read(&cmdline_path)
        .map_err(|e| Error::io("reading the API server's command line", &cmdline_path, e))?;
    let mut words = raw
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).to_string());
    let program = PathBuf::from(
        words
            .next()
            .ok_or_else(|| Error::Other(format!("{cmdline_path} is empty")))?,
    );
    let args: Vec<String> = words.collect();
    crate::process::stop_recorded(pid, &marker, Duration::from_secs(10));
    tokio::time::sleep(down_for).await;
    let client = client_from_kubeconfig(&state.kubeconfig()).await?;
    let apiserver = start_apiserver_again(state, &program, &args, &client, timeout).await?;
    Ok(apiserver.detach())
}

/// Records the PID at once, so `vm-sandbox down` can clean up even after an interrupted `up`.
fn record(state: &StateDir, p: &ManagedProcess) -> Result<()> {
    crate::process::write_pid(&state.pids(), &p.name, p.pid)
}

fn wait_for_port(process: &mut ManagedProcess, port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        process.check_running()?;
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("{} to listen on port {port}", process.name),
                seconds: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `/readyz` answers ok (RBAC bootstrap done) and the system namespaces exist.
async fn wait_ready(
    client: &kube::Client,
    apiserver: &mut ManagedProcess,
    deadline: Instant,
    timeout: Duration,
) -> Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
    loop {
        let last: String;
        apiserver.check_running()?;
        let req = http::Request::get("/readyz")
            .body(Vec::new())
            .map_err(|e| Error::Other(e.to_string()))?;
        match client.request_text(req).await {
            Ok(text) if text.trim() == "ok" => {
                let lease_ns = namespaces.get_opt("kube-node-lease").await;
                if matches!(lease_ns, Ok(Some(_))) {
                    return Ok(());
                }
                last = "namespace kube-node-lease not created yet".into();
            }
            Ok(text) => last = text,
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!(
                    "kube-apiserver to be ready (last answer: {last}); log tail:\n{}",
                    crate::process::log_tail(&apiserver.log, 20)
                ),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Writes the admin kubeconfig, trusting the API server's generated certificate file.
pub fn write_kubeconfig(state: &StateDir, url: &str, token: &str) -> Result<()> {
    let cert_path = state.apiserver_cert();
    let cert = std::fs::read(&cert_path)
        .map_err(|e| Error::io("reading the API server certificate", &cert_path, e))?;
    let ca = base64::engine::general_purpose::STANDARD.encode(cert);
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: vm-sandbox
  cluster:
    server: {url}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: vm-sandbox
  context:
    cluster: vm-sandbox
    user: admin
    namespace: default
current-context: vm-sandbox
"
    );
    pki::write_private(&state.kubeconfig(), text.as_bytes())
}

/// A client from a kubeconfig file (its current context).
pub async fn client_from_kubeconfig(path: &std::path::Path) -> Result<kube::Client> {
    let kubeconfig =
        Kubeconfig::read_from(path).map_err(|e| Error::Other(format!("reading {}: {e}", path.display())))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Other(format!("loading {}: {e}", path.display())))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    kube::Client::try_from(config).map_err(|e| Error::kube("building a client", e))
}
