//! All cluster and file I/O of the kubectl VM plugins.
//!
//! - [`client`]: a kube client from kubectl's flags (`--kubeconfig`, `--context`), never
//!   accepting invalid certificates.
//! - [`live`]: lists everything a [`vm_core::snapshot::ClusterSnapshot`] holds from the API.
//! - [`files`]: reads manifests from files, directories (recursively) and stdin.
//! - [`drain`] and [`recover`]: the node operations, step by step; [`rolling`]: a
//!   maintenance round over many nodes, resumable from its state in the cluster.
//! - [`access`]: the permissions each operation needs, checked up front.
//! - [`error`]: errors that name the API call and, for a 403, the missing permission.

pub mod access;
pub mod client;
pub mod delete;
pub mod drain;
pub mod error;
pub mod files;
pub mod identity;
pub mod live;
pub mod recover;
pub mod rolling;

/// The KubeVirt types, re-exported: they live in the sans-IO core so that the planners can use
/// them, and implement kube's `Resource` for `Api<T>`.
pub use vm_core::kubevirt as types;
