//! `kubectl vm-audit`: every KubeVirt VM against every best practice, live or from manifests.
//!
//! The binary is a thin shell around [`main`]: parse the flags ([`cli`]), load a snapshot from
//! files or the cluster, run `vm_core::audit`, render it ([`render`]) and map the outcome to an
//! exit status.

pub mod cli;
mod needs;
pub mod render;
mod rules_cmd;
mod run;

pub use run::main;
