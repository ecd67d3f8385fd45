//! Where the control-plane binaries live. They are built once by
//! `scripts/install-control-plane` and cached outside the clone, keyed by version, so
//! that a fresh clone or `cargo clean` does not cost another 6-minute build.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The Kubernetes version built from Debian's source package.
pub const KUBE_VERSION: &str = "1.20.2";

/// The paths of the four programs the sandbox runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// etcd (Debian package `etcd-server`).
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub apiserver: PathBuf,
    /// kube-controller-manager.
    pub controller_manager: PathBuf,
    /// kube-scheduler.
    pub scheduler: PathBuf,
}

/// The cache root: `$VM_SANDBOX_CACHE`, else `$HOME/.cache/kubectl-vm-plugins`
/// (the same rule as `scripts/install-control-plane`).
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("VM_SANDBOX_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache").join("kubectl-vm-plugins")
}

/// The directory holding the cached Kubernetes binaries.
pub fn kube_bin_dir() -> PathBuf {
    cache_root()
        .join(format!("kubernetes-{KUBE_VERSION}"))
        .join("bin")
}

impl Binaries {
    /// Finds all four programs, or says how to install the missing one.
    pub fn locate() -> Result<Self> {
        let dir = kube_bin_dir();
        let kube = |name: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            if is_executable(&path) {
                Ok(path)
            } else {
                Err(Error::MissingBinary {
                    binary: name.to_string(),
                    dir: dir.clone(),
                })
            }
        };
        let etcd = find_etcd().ok_or_else(|| Error::MissingBinary {
            binary: "etcd".into(),
            dir: PathBuf::from("/usr/bin"),
        })?;
        Ok(Binaries {
            etcd,
            apiserver: kube("kube-apiserver")?,
            controller_manager: kube("kube-controller-manager")?,
            scheduler: kube("kube-scheduler")?,
        })
    }
}

fn find_etcd() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("etcd"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin/etcd")])
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
