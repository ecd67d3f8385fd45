//! The flow of one run: flags → live snapshot and node evidence → assessment → (dry run:
//! stop) → live migration for a Ready node, or fencing for one that is down.

use kube::Client;
use vm_cli::exit::ExitStatus;
use vm_cli::report::{UserError, api_error};
use vm_cli::session;
use vm_core::recover::{NodeState, RecoveryMode, RecoveryPlan, RecoveryPolicy, Timestamp, assess};
use vm_kube::live::{LiveScope, add_recovery_evidence, snapshot};
use vm_kube::recover::remove_out_of_service_taint;

use crate::cli::{Cli, Format};
use crate::needs;
use crate::render::{PROGRAM, defers_plan, print, refuse, render};

/// Runs `kubectl vm-recover` with the process's arguments and returns its exit status.
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
    let client = session::client(&cli.kube).await?;
    let reads = if cli.cleanup {
        needs::cleanup()
    } else {
        needs::assess()
    };
    session::check_access(&client, &cli.kube, &reads, needs::ROLE).await?;
    let plan = assessment(&client, cli).await?;
    if cli.cleanup {
        return cleanup(&client, &plan).await;
    }
    // An executed run with -o json|yaml prints one document, its result with the plan inside
    // (see `defers_plan`); every other run prints the plan here.
    let executes = plan.recoverable && !plan.vms.is_empty() && !cli.dry_run;
    if executes && defers_plan(cli) {
        // The person who may have to confirm reads the plan on stderr.
        let mut err = std::io::stderr();
        render(&plan, Format::Table, &mut err)
            .map_err(|e| UserError::new(format!("cannot write output: {e}")))?;
    } else {
        print(|out| render(&plan, cli.output, out))?;
    }
    if !plan.recoverable {
        return Ok(refuse(&UserError::new(
            "refused: some VMs have nowhere to go (see Blocked); nothing was changed",
        )));
    }
    if cli.dry_run {
        return Ok(ExitStatus::Success);
    }
    if plan.vms.is_empty() {
        eprintln!("{PROGRAM}: no VMs on node {}; nothing to do", plan.node);
        return Ok(ExitStatus::Success);
    }
    // Before the confirmation: a user who may not finish the recovery is told before starting it.
    let needed = match plan.mode() {
        RecoveryMode::LiveMigration => needs::live_migration(&cli.lock_namespace),
        RecoveryMode::Fencing { .. } => needs::fencing(&cli.lock_namespace, cli.start_stopped),
    };
    session::check_access(&client, &cli.kube, &needed, needs::ROLE).await?;
    match plan.mode() {
        RecoveryMode::LiveMigration => crate::migrate::run(&client, &plan, cli).await,
        RecoveryMode::Fencing { lease_renewing } => {
            crate::fence::run(&client, &plan, lease_renewing, cli).await
        }
    }
}

/// Lists the cluster and the node's Lease and VolumeAttachments, and assesses the node.
async fn assessment(client: &Client, cli: &Cli) -> Result<RecoveryPlan, UserError> {
    // Placement needs every node and pod: the whole cluster.
    let scope = LiveScope {
        namespace: None,
        selector: None,
    };
    let mut snap = snapshot(client, &scope).await.map_err(api_error)?;
    add_recovery_evidence(client, &cli.from_node, &mut snap)
        .await
        .map_err(api_error)?;
    let policy = RecoveryPolicy {
        start_stopped: cli.start_stopped,
    };
    assess(&snap, &cli.from_node, Timestamp::now(), &policy)
        .map_err(|e| UserError::from(e).hint("list the nodes with `kubectl get nodes`"))
}

/// `--cleanup`: the out-of-service taint comes off only once the node is Ready again.
async fn cleanup(client: &Client, plan: &RecoveryPlan) -> Result<ExitStatus, UserError> {
    if plan.node_state != NodeState::Ready {
        return Ok(refuse(
            &UserError::new(format!(
                "node {} is not Ready yet; the out-of-service taint stays",
                plan.node
            ))
            .hint("run --cleanup again once `kubectl get node` shows it Ready"),
        ));
    }
    let nodes = kube::Api::all(client.clone());
    let removed = remove_out_of_service_taint(&nodes, &plan.node)
        .await
        .map_err(session::node_op_error)?;
    if removed {
        println!(
            "node {}: removed the taint {}",
            plan.node,
            vm_kube::recover::TAINT_TEXT
        );
    } else {
        println!("node {}: no out-of-service taint; nothing to do", plan.node);
    }
    Ok(ExitStatus::Success)
}
