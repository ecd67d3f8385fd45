//! The command line of `kubectl vm-drain-safe`.

use clap::{Parser, ValueEnum};
use vm_cli::args::{KubeArgs, VerbosityArgs};

const AFTER_HELP: &str = "\
Examples:
  # What would happen to every VM and pod of node-1, changing nothing
  kubectl vm-drain-safe node-1 --dry-run

  # The same plan for scripts
  kubectl vm-drain-safe node-1 --dry-run -o json

  # Plan with non-migratable VMs stopped instead of blocking
  kubectl vm-drain-safe node-1 --dry-run --shutdown-non-migratable

Exit status:
  0  the plan is feasible
  1  the plan is blocked (the blockers are listed); nothing changed
  2  usage error or cluster error";

/// Drain a node that runs KubeVirt VMs, safely: a pre-flight plan first.
///
/// For every VMI on the node: its effective eviction strategy, whether it can live-migrate,
/// and a target node with room for it when all the node's VMs are placed together; for the
/// other pods, kubectl drain's rules and the PodDisruptionBudgets that allow no disruption.
#[derive(Parser, Debug)]
#[command(name = "kubectl-vm_drain_safe", bin_name = "kubectl vm-drain-safe", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The node to drain.
    #[arg(value_name = "NODE")]
    pub node: String,

    /// Print the plan and stop; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Stop VMs that cannot live-migrate instead of blocking on them.
    #[arg(long)]
    pub shutdown_non_migratable: bool,

    /// Evict pods that no controller manages (they are not recreated), as kubectl drain --force.
    #[arg(long)]
    pub force: bool,

    /// Evict pods that use emptyDir volumes (their data is lost), as kubectl drain does.
    #[arg(long)]
    pub delete_emptydir_data: bool,

    /// Output format of the plan.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,

    /// kubectl connection flags.
    #[command(flatten)]
    pub kube: KubeArgs,

    /// Log verbosity.
    #[command(flatten)]
    pub verbosity: VerbosityArgs,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One row per VM and pod, for people.
    Table,
    /// The table with eviction strategy, migratability and run strategy.
    Wide,
    /// The `vm-drain-safe/v1` DrainPlan.
    Json,
    /// The same plan as YAML.
    Yaml,
}

/// The clap command, for completions and help tests.
#[must_use]
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
