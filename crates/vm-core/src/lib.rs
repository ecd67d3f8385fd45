//! Sans-IO core of the kubectl VM plugins: KubeVirt types, the cluster snapshot, the values
//! KubeVirt would really use, the placement engine and the audit rules.
//!
//! Nothing here talks to a cluster or reads files: every function takes a
//! [`snapshot::ClusterSnapshot`] (or parts of one) and returns a value, so the verdicts are
//! the same whether the objects came from a live cluster or from manifests.

pub mod audit;
pub mod datavolume;
pub mod drain;
pub mod effective;
pub mod eta;
pub mod kubevirt;
pub mod labels;
pub mod manifest;
pub mod migratability;
pub mod migration_target;
pub mod placement;
pub mod planning;
pub mod pod_network;
pub mod quantity;
pub mod recover;
pub mod resources;
pub mod rolling;
pub mod snapshot;
