//! `kubectl vm-recover --from-node NODE`: gets the VMs of a dead or failing node running
//! elsewhere, without ever running two copies of one VM.
//!
//! It first assesses the node and every VM on it (`vm_core::recover::assess`), changing
//! nothing. A Ready node's VMs are live-migrated with the drain's executor ([`migrate`]). A
//! node that is down is recovered by fencing ([`fence`]), and only once the operator has
//! confirmed that it is powered off.

pub mod cli;
mod fence;
mod migrate;
mod needs;
mod render;
mod run;

pub use run::main;
