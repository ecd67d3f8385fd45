//! `kubectl vm-drain-safe NODE`: a pre-flight plan of what happens to every VM and pod of a
//! node, computed before anything changes (`vm_core::drain::plan_drain`).
//!
//! Without `--dry-run` it then executes the plan through `vm_kube::drain` (lock, cordon,
//! migrations, evictions), and `--uncordon` undoes the maintenance state. `--rolling` plans a
//! maintenance round over many nodes (`vm_core::rolling::plan_rolling`) and runs it node by
//! node (`vm_kube::rolling`).

pub mod cli;
mod needs;
mod render;
mod rolling;
mod round;
mod run;

pub use run::main;
