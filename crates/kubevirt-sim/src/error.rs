//! Errors of the sandbox, each saying which step failed so that a broken start-up can be
//! fixed without reading the code.

use std::path::PathBuf;

/// Result with the sandbox's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while starting, driving or stopping a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The control-plane binaries were not built yet.
    #[error(
        "control-plane binary {binary} not found in {dir}: run `sudo scripts/install-control-plane` \
         first (it builds Kubernetes 1.20.2 from Debian's source package once and caches it)"
    )]
    MissingBinary {
        /// The binary's name.
        binary: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// A file or directory operation failed.
    #[error("{what} ({path}): {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A process of the control plane could not be started or died early.
    #[error("{process}: {message}")]
    Process {
        /// The process (etcd, kube-apiserver, ...).
        process: String,
        /// What happened, with the tail of its log when there is one.
        message: String,
    },
    /// A call to the API server failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: kube::Error,
    },
    /// Something did not happen in time.
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        seconds: u64,
    },
    /// Any other failure, with its context.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(what: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Kube`] with context.
    pub fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            what: what.into(),
            source,
        }
    }
}
