//! Recovery of a Ready node: its VMs leave by live migration, with the drain's executor
//! (lock, cordon, migrations within KubeVirt's limits, progress), and the other pods stay.

use kube::Client;
use vm_cli::exit::ExitStatus;
use vm_cli::outcome::RunResult;
use vm_cli::report::{UserError, api_error};
use vm_cli::session;
use vm_core::drain::{DrainPolicy, VmAction, plan_drain};
use vm_core::recover::RecoveryPlan;
use vm_kube::drain::{ExecOptions, Outcome};
use vm_kube::live::{LiveScope, snapshot};

use crate::cli::Cli;
use crate::render::{PROGRAM, is_structured, print, refuse_with_plan, structured};

pub(crate) async fn run(client: &Client, plan: &RecoveryPlan, cli: &Cli) -> Result<ExitStatus, UserError> {
    let node = &plan.node;
    if !cli.yes {
        let refusal = UserError::new(format!(
            "refused: not migrating the VMs of node {node} without confirmation; nothing was changed"
        ))
        .hint("review the assessment (--dry-run), then pass --yes");
        let question = format!("Node {node} is Ready: live-migrate its VMs away and cordon it");
        if let Err(e) = session::confirm_by_node_name(&question, node, refusal) {
            return refuse_with_plan(plan, cli, &e);
        }
    }
    // The drain's planner gives the executor its limits and migrations; the other pods are
    // not this tool's business, so they are left out.
    let scope = LiveScope {
        namespace: None,
        selector: None,
    };
    let snap = snapshot(client, &scope).await.map_err(api_error)?;
    let mut migration = plan_drain(&snap, node, &DrainPolicy::default()).map_err(UserError::from)?;
    migration.pods.clear();
    migration.blockers.retain(|b| b.starts_with("VM "));
    if migration.vms.iter().any(|v| v.action != VmAction::Migrate) {
        return refuse_with_plan(
            plan,
            cli,
            &UserError::new(format!(
                "refused: the VMs of node {node} changed since the assessment: {}; nothing was changed",
                migration.blockers.join("; ")
            )),
        );
    }
    let opts = ExecOptions {
        lock_namespace: cli.lock_namespace.clone(),
        holder: session::holder(),
        max_attempts: 3,
        eviction_retry: std::time::Duration::from_secs(5),
        pending_timeout: cli.pending_timeout,
        added_node_selector: None,
        migration_labels: std::collections::BTreeMap::new(),
        migration_timeout: None,
        on_stuck_shutdown: false,
        vms_only: true,
    };
    let outcome = session::execute_with_progress(client, &migration, &opts, cli.timeout).await?;
    if is_structured(cli.output) {
        // The `vm-recover/v1` MigrationResult: each VM's outcome, with the scheduler's message
        // when its target pod could not be placed.
        let (why, summary, status) = match &outcome {
            Outcome::Done(summary) => (None, summary, ExitStatus::Success),
            Outcome::Stopped(why, summary) => (Some(why.to_string()), summary, ExitStatus::Partial),
        };
        if let Some(why) = &why {
            eprintln!("{PROGRAM}: migrations from node {node} stopped: {why}");
        }
        let result = MigrationResult {
            result: RunResult::new("vm-recover/v1", "MigrationResult", node, why, summary),
            plan,
        };
        print(|out| structured(&result, cli.output, out).map(|_| ()))?;
        return Ok(status);
    }
    Ok(match outcome {
        Outcome::Done(summary) => {
            println!(
                "node {node}: {} VM(s) live-migrated away; it stays cordoned (`kubectl uncordon {node}` once it is healthy)",
                summary.migrated.len()
            );
            ExitStatus::Success
        }
        Outcome::Stopped(why, summary) => {
            println!("migrations from node {node} stopped: {why}");
            vm_cli::progress::print_stopped_summary(&summary);
            println!("the node stays cordoned; run the same command to resume.");
            ExitStatus::Partial
        }
    })
}

/// The `vm-recover/v1` MigrationResult with the assessment it acted on: `-o json|yaml` prints
/// this one document.
#[derive(serde::Serialize)]
struct MigrationResult<'a> {
    #[serde(flatten)]
    result: RunResult<'a>,
    plan: &'a RecoveryPlan,
}
