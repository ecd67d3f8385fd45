//! The command line of `kubectl vm-recover`.

use clap::{Parser, ValueEnum};
use vm_cli::args::{KubeArgs, VerbosityArgs};

const AFTER_HELP: &str = "\
Examples:
  # What would happen to the VMs of node-1, changing nothing
  kubectl vm-recover --from-node node-1 --dry-run

  # node-1 is down and you have checked that it is powered off: restart its VMs elsewhere
  kubectl vm-recover --from-node node-1 --confirm-fenced

  # The same, also starting the VMs with runStrategy Manual
  kubectl vm-recover --from-node node-1 --confirm-fenced --start-stopped

  # node-1 is Ready but failing: live-migrate its VMs away
  kubectl vm-recover --from-node node-1 --yes

  # node-1 is back and Ready: remove the out-of-service taint
  kubectl vm-recover --from-node node-1 --cleanup

Exit status:
  0  recovered (or a --dry-run in which every VM is recoverable; or --cleanup done)
  1  refused: not confirmed, the node may still run its VMs, or no room elsewhere;
     nothing was changed
  2  usage or cluster error
  3  part-way: some VMs were not running elsewhere by the timeout, or a VM is BLOCKED (its
     migration target pod stayed unschedulable for --pending-timeout); each VM's state is
     reported, with the scheduler's message";

/// Recover the VMs of a dead or failing node, without ever running two copies of one VM.
///
/// First an assessment, changing nothing: the node's Ready condition, heartbeat and Lease,
/// KubeVirt's schedulable label, and for each VM its run strategy, launcher pod, RWO volumes
/// and what recovery will do. A Ready node's VMs are live-migrated away. A node that is down
/// is recovered only once you confirm it is powered off: then it is tainted out-of-service,
/// its launcher pods are force-deleted, its volume attachments released, and each VM followed
/// until it runs elsewhere.
#[derive(Parser, Debug)]
#[command(name = "kubectl-vm_recover", bin_name = "kubectl vm-recover", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The node whose VMs to recover.
    #[arg(long, value_name = "NODE", value_parser = vm_cli::args::node_name)]
    pub from_node: String,

    /// Print the assessment and stop; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// I have made sure the node is powered off (fenced): its VMs may be started elsewhere.
    /// Without it, a terminal asks you to type the node name.
    #[arg(long, conflicts_with = "dry_run")]
    pub confirm_fenced: bool,

    /// With --confirm-fenced: recover even though the node still renews its Lease (its
    /// kubelet looks alive). Only when you know it is off despite that.
    #[arg(long, requires = "confirm_fenced")]
    pub force: bool,

    /// Also start elsewhere the VMs with runStrategy Manual (KubeVirt leaves them stopped).
    #[arg(long)]
    pub start_stopped: bool,

    /// Live-migrate a Ready node's VMs without asking (required when stdin is not a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Remove the out-of-service taint once the node is back and Ready.
    #[arg(long, conflicts_with_all = ["dry_run", "confirm_fenced", "start_stopped", "yes"])]
    pub cleanup: bool,

    /// Give up waiting after this long (e.g. 90s, 15m, 1h); what is where is reported.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = vm_cli::args::parse_duration)]
    pub timeout: std::time::Duration,

    /// How long a migration's target pod may stay Pending because no node can take it (e.g.
    /// 20s, 5m) before that VM is reported BLOCKED with the scheduler's message: its migration
    /// is cancelled and not retried, the others finish, the run stops (exit 3). Default:
    /// KubeVirt's own limit for an unschedulable target pod.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = vm_cli::args::parse_duration)]
    pub pending_timeout: std::time::Duration,

    /// Namespace of the per-node lock shared with vm-drain-safe (a Lease named vm-drain-safe-NODE).
    #[arg(long, value_name = "NAMESPACE", default_value = "kube-system")]
    pub lock_namespace: String,

    /// Output format of the assessment and the result.
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
    /// One row per VM, for people.
    Table,
    /// The table with launcher pods and volume attachments.
    Wide,
    /// The `vm-recover/v1` RecoveryPlan (and RecoveryResult).
    Json,
    /// The same as YAML.
    Yaml,
}

impl Format {
    /// The format for scripts this is (`None`: a table).
    #[must_use]
    pub fn structured(self) -> Option<vm_cli::structured::Structured> {
        match self {
            Self::Json => Some(vm_cli::structured::Structured::Json),
            Self::Yaml => Some(vm_cli::structured::Structured::Yaml),
            Self::Table | Self::Wide => None,
        }
    }
}

/// The clap command, for completions and help tests.
#[must_use]
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
