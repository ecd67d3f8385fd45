//! The layout of a sandbox's state directory. Everything a sandbox owns lives here (etcd
//! data, keys, logs, PID files, the kubeconfig), so `vm-sandbox down` can find and stop
//! exactly what `up` started, and a test's temp dir removes it all.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A sandbox's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// What `up` records for `status`, `down`, `node` and the simulator process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxInfo {
    /// `https://127.0.0.1:PORT`.
    pub apiserver_url: String,
    /// etcd's client port.
    pub etcd_port: u16,
    /// The simulator's settings.
    pub sim: crate::timings::SimConfig,
}

impl StateDir {
    /// Uses `root` (made absolute, so PID checks and the kubeconfig do not depend on the
    /// working directory).
    pub fn new(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let root = if root.is_absolute() {
            root.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| Error::io("reading the current directory", ".", e))?
                .join(root)
        };
        Ok(StateDir { root })
    }

    /// Creates the directory tree.
    pub fn create(&self) -> Result<()> {
        for dir in [
            self.root.clone(),
            self.pki(),
            self.logs(),
            self.pids(),
            self.nodes_down(),
            self.nodes_partitioned(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating the state directory", &dir, e))?;
        }
        Ok(())
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The kubeconfig for the admin user.
    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }
    /// Keys, tokens and the API server's generated certificate.
    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }
    /// kube-apiserver's `--cert-dir`.
    pub fn apiserver_cert_dir(&self) -> PathBuf {
        self.pki().join("apiserver")
    }
    /// The certificate kube-apiserver generates: the serving certificate and its CA.
    pub fn apiserver_cert(&self) -> PathBuf {
        self.apiserver_cert_dir().join("apiserver.crt")
    }
    /// etcd's data directory.
    pub fn etcd_data(&self) -> PathBuf {
        self.root.join("etcd")
    }
    /// Process logs.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// One `NAME.pid` file per background process.
    pub fn pids(&self) -> PathBuf {
        self.root.join("pids")
    }
    /// One empty file per node whose simulated kubelet is stopped (`vm-sandbox node down`).
    pub fn nodes_down(&self) -> PathBuf {
        self.root.join("nodes-down")
    }
    /// One empty file per node cut off from the network (`vm-sandbox node partition`): the
    /// machine and its guests keep running, but its kubelet and virt-handler cannot reach
    /// the API server.
    pub fn nodes_partitioned(&self) -> PathBuf {
        self.root.join("nodes-partitioned")
    }
    /// The launcher pods that ran ([`crate::history`]).
    pub fn launcher_runs(&self) -> PathBuf {
        crate::history::path(&self.root)
    }
    /// [`SandboxInfo`] as JSON.
    pub fn info_file(&self) -> PathBuf {
        self.root.join("sandbox.json")
    }

    /// Reads [`SandboxInfo`].
    pub fn read_info(&self) -> Result<SandboxInfo> {
        let path = self.info_file();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::io(
                "reading the sandbox description (is a sandbox up here?)",
                &path,
                e,
            )
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Other(format!("parsing {}: {e}", path.display())))
    }

    /// Writes [`SandboxInfo`].
    pub fn write_info(&self, info: &SandboxInfo) -> Result<()> {
        let path = self.info_file();
        let text = serde_json::to_string_pretty(info).map_err(|e| Error::Other(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| Error::io("writing", &path, e))
    }

    /// Marks a node down or up for the simulated kubelets.
    pub fn set_node_down(&self, node: &str, down: bool) -> Result<()> {
        set_mark(&self.nodes_down(), node, down, "down")
    }

    /// Cuts a node off from the network, or heals it, for the simulated kubelets.
    pub fn set_node_partitioned(&self, node: &str, partitioned: bool) -> Result<()> {
        set_mark(&self.nodes_partitioned(), node, partitioned, "partitioned")
    }
}

/// Creates or removes the file `node` in `dir`.
fn set_mark(dir: &Path, node: &str, on: bool, what: &str) -> Result<()> {
    if node.is_empty() || node.contains('/') {
        return Err(Error::Other(format!("invalid node name {node:?}")));
    }
    let path = dir.join(node);
    if on {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        std::fs::write(&path, b"").map_err(|e| Error::io(format!("marking the node {what}"), &path, e))
    } else {
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("clearing the node's {what} mark"), &path, e)),
        }
    }
}

/// The set of nodes currently marked down in `dir` (see [`StateDir::nodes_down`]).
pub fn read_nodes_down(dir: &Path) -> std::collections::HashSet<String> {
    read_marks(dir)
}

/// The set of nodes currently cut off from the network in `dir` (see
/// [`StateDir::nodes_partitioned`]).
pub fn read_nodes_partitioned(dir: &Path) -> std::collections::HashSet<String> {
    read_marks(dir)
}

/// The names of the files in `dir` (none when it does not exist).
fn read_marks(dir: &Path) -> std::collections::HashSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}
