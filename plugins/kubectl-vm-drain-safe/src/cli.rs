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

  # Drain: lock, cordon, migrate every VM, evict the other pods
  kubectl vm-drain-safe node-1 --yes --timeout 30m

  # After maintenance: uncordon, restart the VMs the drain stopped
  kubectl vm-drain-safe node-1 --uncordon

  # The plan of a rolling maintenance round over a pool: order, moves, time, room
  kubectl vm-drain-safe --rolling -l pool=workers --dry-run
  kubectl vm-drain-safe --rolling node-1 node-2 node-3 --dry-run -o json

  # Run the round: each node drained, rebooted by a command of yours, back, uncordoned
  kubectl vm-drain-safe --rolling -l pool=workers --exec 'ssh $NODE sudo reboot' --yes

  # Or stop after each drain; do the maintenance by hand, then go on
  kubectl vm-drain-safe --rolling -l pool=workers --pause --yes
  kubectl vm-drain-safe --rolling --continue

  # Where the round is, from any terminal; end it cleanly
  kubectl vm-drain-safe --rolling --status
  kubectl vm-drain-safe --rolling --abort

Exit status:
  0  done (or a feasible --dry-run)
  1  blocked at pre-flight (the blockers are listed); nothing changed
  2  usage or cluster error
  3  stopped part-way (timeout, Ctrl-C, a migration that kept failing, a VM BLOCKED because
     its migration target pod stayed unschedulable for --pending-timeout, a migration STUCK
     past --migration-timeout; with --rolling also
     a step no longer feasible, a failed --exec or --gate, a node not back in time); the node
     stays cordoned, the state is reported (with the scheduler's message), and the same
     command resumes
A round paused by --pause exits 0 and says so.";

/// Drain a node that runs KubeVirt VMs, safely: a pre-flight plan first.
///
/// For every VMI on the node: its effective eviction strategy, whether it can live-migrate,
/// and a target node with room for it when all the node's VMs are placed together; for the
/// other pods, kubectl drain's rules and the PodDisruptionBudgets that allow no disruption.
#[derive(Parser, Debug)]
#[command(name = "kubectl-vm_drain_safe", bin_name = "kubectl vm-drain-safe", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The node to drain; with --rolling, the nodes of the round.
    #[arg(value_name = "NODE", value_parser = vm_cli::args::node_name, required_unless_present_any = ["selector", "status", "abort", "continue_"])]
    pub nodes: Vec<String>,

    /// A rolling maintenance round over many nodes: the plan first (the order in which each
    /// can be drained, maintained and uncordoned, where each VM goes, once where the cluster
    /// has room, the time it takes and the room left), then node by node: drain, maintenance
    /// (--exec or --pause), wait until Ready, uncordon, health gate. Its state is kept in the
    /// cluster: --status shows it, the same command resumes it, --abort ends it.
    #[arg(long, conflicts_with = "uncordon")]
    pub rolling: bool,

    /// With --rolling: the maintenance of each node once drained, run by `sh -c` with NODE
    /// set to the node's name; a non-zero exit stops the round (resumable).
    #[arg(long, value_name = "CMD", requires = "rolling", conflicts_with_all = ["pause", "dry_run"])]
    pub exec: Option<String>,

    /// With --rolling: stop after each node's drain, the node cordoned, until
    /// `--rolling --continue` says its maintenance is done.
    #[arg(long, requires = "rolling", conflicts_with = "dry_run")]
    pub pause: bool,

    /// With --rolling: the paused node's maintenance is done; go on with the round.
    #[arg(long = "continue", requires = "rolling", conflicts_with_all = ["dry_run", "nodes", "selector", "exec", "pause", "status", "abort"])]
    pub continue_: bool,

    /// With --rolling: show the round recorded in the cluster (any terminal), changing nothing.
    #[arg(long, requires = "rolling", conflicts_with_all = ["dry_run", "nodes", "selector", "exec", "pause", "abort"])]
    pub status: bool,

    /// With --rolling: end the round: uncordon the nodes it cordoned, restart the VMs its
    /// drains stopped, remove its node labels and release its locks.
    #[arg(long, requires = "rolling", conflicts_with_all = ["dry_run", "nodes", "selector", "exec", "pause"])]
    pub abort: bool,

    /// With --rolling: the operator's check after each node, run by `sh -c` with NODE set
    /// once that node's VMs are Running and Ready (an application's quorum, say); a non-zero
    /// exit stops the round before the next node.
    #[arg(long, value_name = "CMD", requires = "rolling", conflicts_with = "dry_run")]
    pub gate: Option<String>,

    /// With --rolling: how long a maintained node may take to be Ready and schedulable again,
    /// and its VMs to be healthy, before the round stops.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = vm_cli::args::parse_duration)]
    pub node_timeout: std::time::Duration,

    /// With --rolling: the nodes of the round by label (e.g. pool=workers), instead of names.
    #[arg(
        short = 'l',
        long,
        value_name = "SELECTOR",
        requires = "rolling",
        conflicts_with = "nodes"
    )]
    pub selector: Option<String>,

    /// With --rolling: how long the maintenance of one node takes once drained (reboot,
    /// upgrade), for the time estimate.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = vm_cli::args::parse_duration)]
    pub maintenance_time: std::time::Duration,

    /// With --rolling: the memory that the nodes able to take a pod must keep free during every
    /// step (e.g. 64Gi), as headroom for a node failing while another is in maintenance. A step
    /// that would leave less is not feasible: the plan names it, and a running round stops
    /// before that node's drain.
    #[arg(long, value_name = "QUANTITY", requires = "rolling", value_parser = vm_cli::args::parse_memory)]
    pub min_free_memory: Option<f64>,

    /// Print the plan and stop; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Uncordon the node after maintenance, restart the VMs this drain stopped, release the lock.
    #[arg(long, conflicts_with_all = ["dry_run", "shutdown_non_migratable", "force", "delete_emptydir_data"])]
    pub uncordon: bool,

    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Give up after this long (e.g. 90s, 15m, 1h); migrations not started are cancelled and
    /// the node stays cordoned.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = vm_cli::args::parse_duration)]
    pub timeout: std::time::Duration,

    /// How long a migration's target pod may stay Pending because no node can take it (e.g.
    /// 20s, 5m) before that VM is reported BLOCKED with the scheduler's message: its migration
    /// is cancelled and not retried, the others finish, the run stops (exit 3). Default:
    /// KubeVirt's own limit for an unschedulable target pod.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = vm_cli::args::parse_duration)]
    pub pending_timeout: std::time::Duration,

    /// How long one migration may run before it is cancelled as stuck (e.g. 10m); the drain
    /// then stops (exit 3, resumable) unless --on-stuck shutdown. Default: each VM's KubeVirt
    /// completion timeout (completionTimeoutPerGiB, 150 s unless a MigrationPolicy or the
    /// KubeVirt CR says otherwise, times its memory in GB).
    #[arg(long, value_name = "DURATION", value_parser = vm_cli::args::parse_duration)]
    pub migration_timeout: Option<std::time::Duration>,

    /// What to do with a VM whose migration ran past --migration-timeout: `block` stops the
    /// drain (the node stays cordoned; the same command resumes), `shutdown` stops that VM as
    /// --shutdown-non-migratable does, records it for restart, and goes on.
    #[arg(long, value_enum, value_name = "WHAT", default_value_t = OnStuck::Block)]
    pub on_stuck: OnStuck,

    /// Tries per VM before a failing migration stops the drain.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub migration_attempts: u32,

    /// Namespace of the per-node lock (a Lease named vm-drain-safe-NODE).
    #[arg(long, value_name = "NAMESPACE", default_value = "kube-system")]
    pub lock_namespace: String,

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

/// `--on-stuck`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnStuck {
    /// Cancel the migration and stop the drain.
    Block,
    /// Cancel the migration and stop the VM (restarted at `--uncordon`).
    Shutdown,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One row per VM and pod, for people.
    Table,
    /// The table with eviction strategy, migratability and run strategy.
    Wide,
    /// The `vm-drain-safe/v1` DrainPlan (RollingPlan with --rolling).
    Json,
    /// The same plan as YAML.
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

impl Cli {
    /// The node of a one-node run (`run` checks that exactly one was given without --rolling).
    #[must_use]
    pub fn node(&self) -> &str {
        self.nodes.first().map_or("", String::as_str)
    }
}

/// The clap command, for completions and help tests.
#[must_use]
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
