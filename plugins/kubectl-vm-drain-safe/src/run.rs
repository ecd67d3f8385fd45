//! The flow of one run: flags → live snapshot → plan → (dry run: stop) → confirm → execute.

use vm_cli::exit::ExitStatus;
use vm_cli::report::UserError;
use vm_cli::session;
use vm_cli::structured::Structured;
use vm_core::drain::{DrainPlan, DrainPolicy, PlanError, plan_drain};
use vm_kube::drain::{ExecOptions, Outcome, Stopped, uncordon};
use vm_kube::live::{LiveScope, snapshot};

use vm_cli::outcome::RunResult;

use crate::cli::{Cli, Format};
use crate::needs;
use crate::render::{render, to_stdout};

const PROGRAM: &str = "kubectl vm-drain-safe";

/// Runs `kubectl vm-drain-safe` with the process's arguments and returns its exit status.
#[must_use]
pub fn main() -> ExitStatus {
    let cli: Cli = match vm_cli::args::parse() {
        Ok(cli) => cli,
        Err(status) => return status,
    };
    cli.verbosity.init_logging();
    session::block_on(PROGRAM, run(&cli))
}

async fn run(cli: &Cli) -> Result<ExitStatus, UserError> {
    if !cli.rolling && cli.nodes.len() != 1 {
        return Err(UserError::new(format!(
            "give one NODE to drain, not {}: {}",
            cli.nodes.len(),
            cli.nodes.join(" ")
        ))
        .hint("several nodes in turn: --rolling NODE... (--dry-run plans the round)"));
    }
    let client = session::client(&cli.kube).await?;
    let needed = if cli.uncordon {
        needs::uncordon(&cli.lock_namespace)
    } else if cli.rolling && cli.status {
        needs::status(&cli.lock_namespace)
    } else if cli.dry_run {
        needs::plan()
    } else if cli.rolling {
        needs::round(&cli.lock_namespace)
    } else {
        needs::drain(&cli.lock_namespace)
    };
    session::check_access(&client, &cli.kube, &needed, needs::ROLE).await?;
    if cli.rolling {
        return if cli.status {
            crate::round::status(&client, cli).await
        } else if cli.abort {
            crate::round::abort_round(&client, cli).await
        } else if cli.continue_ {
            crate::round::continue_round(&client, cli).await
        } else if cli.dry_run {
            crate::rolling::plan(&client, cli).await
        } else {
            crate::round::start_or_resume(&client, cli).await
        };
    }
    if cli.uncordon {
        let report = uncordon(&client, cli.node(), &cli.lock_namespace, &session::holder())
            .await
            .map_err(session::node_op_error)?;
        println!("node {} uncordoned", cli.node());
        for vm in &report.restarted {
            println!("restarted {vm} (its runStrategy is restored)");
        }
        for vm in &report.already_running {
            println!("{vm}: runStrategy Always already restarted it elsewhere");
        }
        for vm in &report.lost {
            println!("{vm}: a standalone VMI the drain deleted; nothing can recreate it");
        }
        for vm in &report.changed_by_others {
            println!("{vm}");
        }
        return Ok(ExitStatus::Success);
    }
    // The plan needs every VMI, pod and node: the whole cluster, whatever -n says.
    let snap = snapshot(
        &client,
        &LiveScope {
            namespace: None,
            selector: None,
        },
    )
    .await
    .map_err(vm_cli::report::api_error)?;
    let policy = DrainPolicy {
        shutdown_non_migratable: cli.shutdown_non_migratable,
        force: cli.force,
        delete_emptydir_data: cli.delete_emptydir_data,
        migration_bytes_per_second: DrainPolicy::DEFAULT_MIGRATION_BYTES_PER_SECOND,
    };
    let plan = plan_drain(&snap, cli.node(), &policy).map_err(|e| match e {
        PlanError::NoSuchNode(_) => UserError::from(e).hint("list the nodes with `kubectl get nodes`"),
    })?;
    print_plan(&plan, cli)?;
    if !plan.feasible {
        eprintln!("{PROGRAM}: the drain is blocked; nothing was changed");
        return Ok(ExitStatus::Findings);
    }
    if cli.dry_run {
        return Ok(ExitStatus::Success);
    }
    confirm(cli)?;
    let opts = ExecOptions {
        lock_namespace: cli.lock_namespace.clone(),
        holder: session::holder(),
        max_attempts: cli.migration_attempts.max(1),
        eviction_retry: std::time::Duration::from_secs(5),
        pending_timeout: cli.pending_timeout,
        added_node_selector: None,
        migration_labels: std::collections::BTreeMap::new(),
        migration_timeout: cli.migration_timeout,
        on_stuck_shutdown: cli.on_stuck == crate::cli::OnStuck::Shutdown,
        vms_only: false,
    };
    let outcome = session::execute_with_progress(&client, &plan, &opts, cli.timeout).await?;
    if matches!(cli.output, Format::Json | Format::Yaml) {
        return print_result(cli, &outcome);
    }
    Ok(match outcome {
        Outcome::Done(summary) => {
            println!(
                "node {} drained: {} VM(s) migrated, {} stopped, {} pod(s) evicted; it stays cordoned until `{PROGRAM} {} --uncordon`",
                cli.node(),
                summary.migrated.len(),
                summary.stopped.len(),
                summary.evicted.len(),
                cli.node()
            );
            for vm in &summary.already_gone {
                println!("  already gone before its turn, nothing done: {vm}");
            }
            ExitStatus::Success
        }
        Outcome::Stopped(why, summary) => {
            let node_deleted = why == Stopped::NodeDeleted;
            let why = stopped_because(cli, &why);
            println!("drain of node {} stopped: {why}", cli.node());
            vm_cli::progress::print_stopped_summary(&summary);
            if node_deleted {
                println!(
                    "migrations that had not started were cancelled; with the node gone there is nothing to resume. Check where the VMs listed above run now: `kubectl get vmi -A -o wide`."
                );
            } else {
                println!(
                    "the node stays cordoned; migrations that had not started were cancelled. Run the same command to resume, or `{PROGRAM} {} --uncordon`.",
                    cli.node()
                );
            }
            ExitStatus::Partial
        }
    })
}

/// `-o json|yaml`: after the plan, the `vm-drain-safe/v1` DrainResult on stdout (each VM's
/// outcome, with the scheduler's message when its target pod could not be placed); why a run
/// stopped also goes to stderr.
fn print_result(cli: &Cli, outcome: &Outcome) -> Result<ExitStatus, UserError> {
    let (why, summary, status) = match outcome {
        Outcome::Done(summary) => (None, summary, ExitStatus::Success),
        Outcome::Stopped(why, summary) => (Some(stopped_because(cli, why)), summary, ExitStatus::Partial),
    };
    if let Some(why) = &why {
        eprintln!("{PROGRAM}: drain of node {} stopped: {why}", cli.node());
    }
    let result = RunResult::new("vm-drain-safe/v1", "DrainResult", cli.node(), why, summary);
    // The second document on stdout, after the plan.
    let format = cli.output.structured().unwrap_or(Structured::Json);
    to_stdout(|out| vm_cli::structured::write_following(&result, format, out))?;
    Ok(status)
}

fn stopped_because(cli: &Cli, why: &Stopped) -> String {
    match why {
        Stopped::Timeout => format!("the timeout ({} s) elapsed", cli.timeout.as_secs()),
        other => other.to_string(),
    }
}

fn print_plan(plan: &DrainPlan, cli: &Cli) -> Result<(), UserError> {
    to_stdout(|out| render(plan, cli.output, out))
}

/// Asks on a terminal; elsewhere `--yes` is required, so that a pipe never drains by accident.
fn confirm(cli: &Cli) -> Result<(), UserError> {
    if cli.yes {
        return Ok(());
    }
    session::confirm_by_node_name(
        &format!("Drain node {} as planned above", cli.node()),
        cli.node(),
        UserError::new("not draining without confirmation; nothing was changed")
            .hint("review the plan (--dry-run), then pass --yes"),
    )
}
