//! `kubectl vm-drain-safe NODE`: a pre-flight plan of what happens to every VM and pod of a
//! node, computed before anything changes (`vm_core::drain::plan_drain`).
//!
//! Today the plugin computes and prints the plan (`--dry-run`); the execution (lock, cordon,
//! migrations, evictions) and `--uncordon` are the next steps of the project.

pub mod cli;
mod render;
mod run;

pub use run::main;
