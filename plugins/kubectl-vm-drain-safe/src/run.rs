//! The flow of one run: flags → live snapshot → plan → output → exit status.

use std::io::{ErrorKind, Write};

use clap::Parser;
use vm_cli::exit::ExitStatus;
use vm_cli::report::UserError;
use vm_core::drain::{DrainPolicy, PlanError, plan_drain};
use vm_kube::client::{ConnectOptions, connect};
use vm_kube::live::{LiveScope, snapshot};

use crate::cli::Cli;
use crate::render::render;

const PROGRAM: &str = "kubectl vm-drain-safe";

/// Runs `kubectl vm-drain-safe` with the process's arguments and returns its exit status.
#[must_use]
pub fn main() -> ExitStatus {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitStatus::Error
            } else {
                ExitStatus::Success
            };
        }
    };
    cli.verbosity.init_logging();
    match run(&cli) {
        Ok(status) => status,
        Err(err) => {
            err.print(PROGRAM);
            ExitStatus::Error
        }
    }
}

fn run(cli: &Cli) -> Result<ExitStatus, UserError> {
    if !cli.dry_run {
        return Err(
            UserError::new("executing a drain is not implemented yet; nothing was changed").hint(format!(
                "run `kubectl vm-drain-safe {} --dry-run` for the pre-flight plan",
                cli.node
            )),
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| UserError::new(format!("cannot start the async runtime: {e}")))?;
    let snap = runtime.block_on(async {
        let options = ConnectOptions {
            kubeconfig: cli.kube.kubeconfig.clone(),
            context: cli.kube.context.clone(),
        };
        let connection = connect(&options)
            .await
            .map_err(|e| UserError::from(e).hint("check --kubeconfig and --context"))?;
        // The plan needs every VMI, pod and node: the whole cluster, whatever -n says.
        let scope = LiveScope {
            namespace: None,
            selector: None,
        };
        snapshot(&connection.client, &scope).await.map_err(|e| {
            let hint = e.can_i_hint();
            let mut err = UserError::from(e);
            if let Some(hint) = hint {
                err = err.hint(format!("check the permission with `{hint}`"));
            }
            err
        })
    })?;
    let policy = DrainPolicy {
        shutdown_non_migratable: cli.shutdown_non_migratable,
        force: cli.force,
        delete_emptydir_data: cli.delete_emptydir_data,
        migration_bytes_per_second: DrainPolicy::DEFAULT_MIGRATION_BYTES_PER_SECOND,
    };
    let plan = plan_drain(&snap, &cli.node, &policy).map_err(|e| match e {
        PlanError::NoSuchNode(_) => UserError::from(e).hint("list the nodes with `kubectl get nodes`"),
    })?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match render(&plan, cli.output, &mut out).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => {}
        Err(e) => return Err(UserError::new(format!("cannot write output: {e}"))),
    }
    Ok(if plan.feasible {
        ExitStatus::Success
    } else {
        ExitStatus::Findings
    })
}
