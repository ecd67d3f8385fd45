//! Running a rolling round (`--rolling` with `--exec` or `--pause`), resuming it (the same
//! command, or `--continue`), showing it (`--status`) and ending it (`--abort`). The work is
//! `vm_kube::rolling`'s; this module chooses what to do from the flags and the state recorded
//! in the cluster, asks for confirmation, and reports.

use std::collections::BTreeSet;
use std::io::Write;

use comfy_table::{Table, presets::NOTHING};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};
use tokio::sync::watch;
use vm_cli::exit::ExitStatus;
use vm_cli::report::{UserError, api_error};
use vm_cli::session;
use vm_kube::drain::Reporter;
use vm_kube::drain::lease::Lock;
use vm_kube::rolling::state::{self, Phase, RoundOptions, RoundState, RoundStatus, Stored};
use vm_kube::rolling::{RoundEnd, RoundReporter, RunConfig, abort::abort, words};

use crate::cli::{Cli, Format};
use crate::render::{structured, to_stdout};

const PROGRAM: &str = "kubectl vm-drain-safe";

fn configmaps(client: &Client, cli: &Cli) -> Api<ConfigMap> {
    Api::namespaced(client.clone(), &cli.lock_namespace)
}

async fn load(client: &Client, cli: &Cli) -> Result<Option<Stored>, UserError> {
    state::load(&configmaps(client, cli), &cli.lock_namespace)
        .await
        .map_err(session::node_op_error)
}

/// `--rolling` without `--dry-run`: starts the round the flags name, or resumes the one
/// recorded when it is the same round.
pub(crate) async fn start_or_resume(client: &Client, cli: &Cli) -> Result<ExitStatus, UserError> {
    // Read once: a new round replaces a finished one at the version read here, so that a round
    // someone else started meanwhile (while this one asked for confirmation) is never
    // overwritten; the write then fails with a conflict.
    let recorded = load(client, cli).await?;
    if let Some(stored) = recorded.clone().filter(|s| s.state.is_open()) {
        return resume(client, cli, stored).await;
    }
    if cli.exec.is_none() && !cli.pause {
        return Err(UserError::new("a rolling round needs its maintenance: --exec CMD, or --pause")
            .hint("--dry-run shows the plan alone; --exec 'CMD' runs CMD with NODE set after each drain; --pause stops after each drain until --continue"));
    }
    let plan = crate::rolling::compute(client, cli).await?;
    // -o json|yaml prints one document, the round's state at the end; the plan is in
    // `--dry-run -o json`.
    if matches!(cli.output, Format::Table | Format::Wide) {
        to_stdout(|out| crate::rolling::render(&plan, cli.output, out))?;
    }
    if !plan.feasible {
        eprintln!("{PROGRAM}: the round is blocked; nothing was changed");
        return Ok(ExitStatus::Findings);
    }
    let first = plan.nodes.first().cloned().unwrap_or_default();
    if !cli.yes {
        session::confirm_by_node_name(
            &format!(
                "Run this round of {} node(s), starting with {first}",
                plan.nodes.len()
            ),
            &first,
            UserError::new("not starting the round without confirmation; nothing was changed")
                .hint("review the plan (--dry-run), then pass --yes"),
        )?;
    }
    let options = RoundOptions {
        exec: cli.exec.clone(),
        pause: cli.pause,
        gate: cli.gate.clone(),
        shutdown_non_migratable: cli.shutdown_non_migratable,
        force: cli.force,
        delete_emptydir_data: cli.delete_emptydir_data,
        migration_timeout_seconds: cli.migration_timeout.map(|d| d.as_secs()),
        on_stuck_shutdown: cli.on_stuck == crate::cli::OnStuck::Shutdown,
        node_timeout_seconds: cli.node_timeout.as_secs(),
        maintenance_seconds: cli.maintenance_time.as_secs(),
        min_free_memory_bytes: cli.min_free_memory.map(|b| b as u64),
    };
    let run = format!("r{}", k8s_openapi::jiff::Timestamp::now().as_second());
    let started_by = session::holder_acting_as(client, &cli.kube).await;
    let fresh = RoundState::from_plan(&plan, run, started_by, options);
    let stored = state::save(
        &configmaps(client, cli),
        &cli.lock_namespace,
        recorded.as_ref(),
        &fresh,
    )
    .await
    .map_err(session::node_op_error)?;
    drive(client, cli, stored).await
}

/// The recorded round is still open: the same nodes resume it; others are refused.
async fn resume(client: &Client, cli: &Cli, stored: Stored) -> Result<ExitStatus, UserError> {
    let recorded: BTreeSet<String> = stored.state.nodes().into_iter().collect();
    let asked: BTreeSet<String> = crate::rolling::round_nodes_live(client, cli)
        .await?
        .into_iter()
        .collect();
    if recorded != asked {
        return Err(UserError::new(format!(
            "a rolling round over {} is {} (started by {}); one round at a time",
            stored.state.nodes().join(", "),
            status_word(&stored.state),
            stored.state.started_by
        ))
        .hint("`--rolling --status` shows it; the same nodes resume it; `--rolling --abort` ends it"));
    }
    if stored.state.status == RoundStatus::Paused {
        return Err(UserError::new(format!(
            "the round is paused: {}",
            stored.state.message.clone().unwrap_or_default()
        ))
        .hint("once that node's maintenance is done: `kubectl vm-drain-safe --rolling --continue`"));
    }
    eprintln!(
        "{PROGRAM}: resuming the round started by {} ({}; its own --exec/--pause/--gate and drain flags apply)",
        stored.state.started_by,
        status_word(&stored.state)
    );
    drive(client, cli, stored).await
}

/// `--continue`: the paused node's maintenance is done.
pub(crate) async fn continue_round(client: &Client, cli: &Cli) -> Result<ExitStatus, UserError> {
    let Some(stored) = load(client, cli).await?.filter(|s| s.state.is_open()) else {
        return Err(
            UserError::new("no rolling round is in progress: nothing to continue")
                .hint("`--rolling --status` shows the last one"),
        );
    };
    let mut st = stored.state.clone();
    if st.status == RoundStatus::Paused {
        if let Some(i) = st.current().filter(|&i| st.steps[i].phase == Phase::Maintaining) {
            st.steps[i].phase = Phase::Maintained;
            eprintln!(
                "{PROGRAM}: node {} maintained; continuing the round",
                st.steps[i].node
            );
        }
        st.status = RoundStatus::Running;
        st.message = None;
    }
    let stored = state::save(&configmaps(client, cli), &cli.lock_namespace, Some(&stored), &st)
        .await
        .map_err(session::node_op_error)?;
    drive(client, cli, stored).await
}

/// Runs the round from `stored` with progress on stderr, and reports how it ended.
async fn drive(client: &Client, cli: &Cli, stored: Stored) -> Result<ExitStatus, UserError> {
    let cfg = RunConfig {
        lock_namespace: cli.lock_namespace.clone(),
        holder: session::holder_acting_as(client, &cli.kube).await,
        max_attempts: cli.migration_attempts.max(1),
        pending_timeout: cli.pending_timeout,
    };
    let (tx, rx) = watch::channel(None);
    let timeout = cli.timeout;
    let stopper = tokio::spawn(async move {
        let why = session::stop_after(timeout).await;
        let _ = tx.send(Some(why));
    });
    let ended = vm_kube::rolling::run(client, stored, &cfg, &Lines, rx).await;
    stopper.abort();
    let ended = ended.map_err(session::node_op_error)?;
    let (st, status) = match &ended {
        RoundEnd::Done(st) | RoundEnd::Paused(st) => (st, ExitStatus::Success),
        RoundEnd::Stopped(st) => (st, ExitStatus::Partial),
    };
    if matches!(cli.output, Format::Json | Format::Yaml) {
        if let Some(m) = &st.message {
            eprintln!("{PROGRAM}: {m}");
        }
        to_stdout(|out| structured(st, cli.output, out).map(|_| ()))?;
        return Ok(status);
    }
    to_stdout(|out| status_table(st, None, out))?;
    match ended {
        RoundEnd::Done(st) => println!("Round done: {} node(s).", st.steps.len()),
        RoundEnd::Paused(st) | RoundEnd::Stopped(st) => {
            println!("{}", st.message.clone().unwrap_or_default());
        }
    }
    Ok(status)
}

/// Progress lines on stderr, and each drain's own progress.
struct Lines;

impl RoundReporter for Lines {
    fn line(&self, text: &str) {
        eprintln!("{PROGRAM}: {text}");
    }

    fn drain(&self, moving: u64) -> Box<dyn Reporter> {
        vm_cli::progress::reporter(moving)
    }
}

/// `--status`: the recorded round, from any terminal; changes nothing.
pub(crate) async fn status(client: &Client, cli: &Cli) -> Result<ExitStatus, UserError> {
    let Some(stored) = load(client, cli).await? else {
        let none = format!(
            "No rolling round is recorded in namespace {}.",
            cli.lock_namespace
        );
        // Scripts asking for a document get none, and the words go where kubectl puts its
        // "No resources found".
        if matches!(cli.output, Format::Json | Format::Yaml) {
            eprintln!("{PROGRAM}: {none}");
        } else {
            println!("{none}");
        }
        return Ok(ExitStatus::Success);
    };
    let st = stored.state;
    if matches!(cli.output, Format::Json | Format::Yaml) {
        to_stdout(|out| structured(&st, cli.output, out).map(|_| ()))?;
        return Ok(ExitStatus::Success);
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), &cli.lock_namespace);
    let lock = leases
        .get_opt(&Lock::round().lease)
        .await
        .map_err(|e| {
            api_error(vm_kube::error::ApiError::from_kube(
                e,
                "get",
                "leases.coordination.k8s.io",
                vm_kube::error::Scope::Namespace(cli.lock_namespace.clone()),
            ))
        })?
        .and_then(|l| l.spec);
    to_stdout(|out| status_table(&st, lock.as_ref(), out))?;
    if let Some(m) = &st.message {
        println!("{m}");
    }
    Ok(ExitStatus::Success)
}

fn status_word(st: &RoundState) -> String {
    let at = st
        .current()
        .map(|i| {
            format!(
                " at step {} ({}: {})",
                i + 1,
                st.steps[i].node,
                st.steps[i].phase.word()
            )
        })
        .unwrap_or_default();
    match st.status {
        RoundStatus::Running => format!("running{at}"),
        RoundStatus::Paused => format!("paused{at}"),
        RoundStatus::Stopped => format!("stopped{at}"),
        RoundStatus::Done => "done".into(),
        RoundStatus::Aborted => format!("aborted{at}"),
    }
}

/// The round, one row per node, then where it stands and the time left.
fn status_table(
    st: &RoundState,
    lock: Option<&k8s_openapi::api::coordination::v1::LeaseSpec>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let mut t = Table::new();
    t.load_style(NOTHING).force_no_tty();
    t.set_header(vec![
        "STEP",
        "NODE",
        "PHASE",
        "MIGRATIONS",
        "TOOK",
        "ESTIMATED",
        "NOTE",
    ]);
    for (i, s) in st.steps.iter().enumerate() {
        let took = match (s.started_at, s.finished_at) {
            (Some(a), Some(b)) => words(u64::try_from(b - a).unwrap_or(0)),
            (Some(a), None) if st.status == RoundStatus::Running => {
                format!("{} so far", words(u64::try_from(now - a).unwrap_or(0)))
            }
            _ => "-".into(),
        };
        t.add_row(vec![
            format!("{}", i + 1),
            s.node.clone(),
            s.phase.word().to_string(),
            format!("{} (plan {})", s.migrated.len(), s.planned_migrations),
            took,
            words(s.estimated_seconds),
            s.note.clone().unwrap_or_default(),
        ]);
    }
    writeln!(out, "{}", t.trim_fmt())?;
    writeln!(out)?;
    writeln!(
        out,
        "Round {} started by {}: {}.",
        st.run,
        st.started_by,
        status_word(st)
    )?;
    if let Some(spec) = lock {
        let age = spec
            .renew_time
            .as_ref()
            .map_or(i64::MAX, |r| now - r.0.as_second());
        let duration = i64::from(spec.lease_duration_seconds.unwrap_or(60));
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if age < duration {
            writeln!(out, "Worked on now by {holder} (lock renewed {age} s ago).")?;
        } else {
            writeln!(
                out,
                "Its lock, last held by {holder}, has expired: no run works on it."
            )?;
        }
    } else if st.is_open() {
        writeln!(out, "No run works on it now: the same command resumes it.")?;
    }
    writeln!(
        out,
        "Migrations: {}{} (plan: {}; a loop of `{PROGRAM} NODE` over the nodes in the order given: {}).",
        st.migrations(),
        if st.is_open() { " so far" } else { "" },
        st.planned_migrations,
        st.naive_words()
    )?;
    if st.is_open() {
        let left = st.time_left(now);
        writeln!(
            out,
            "Time left: about {} in this step, {} in the round{}.",
            words(left.step),
            words(left.round),
            if left.refitted_on > 0 {
                format!(" (estimates scaled on the {} node(s) done)", left.refitted_on)
            } else {
                String::new()
            }
        )?;
    }
    Ok(())
}

/// `--abort`.
pub(crate) async fn abort_round(client: &Client, cli: &Cli) -> Result<ExitStatus, UserError> {
    let done = abort(
        client,
        &cli.lock_namespace,
        &session::holder_acting_as(client, &cli.kube).await,
    )
    .await
    .map_err(session::node_op_error)?;
    for n in &done {
        println!(
            "node {} uncordoned (the round had left it {})",
            n.node,
            n.phase.word()
        );
        for vm in &n.uncordon.restarted {
            println!("  restarted {vm} (its runStrategy is restored)");
        }
        for vm in &n.uncordon.lost {
            println!("  {vm}: a standalone VMI the drain deleted; nothing can recreate it");
        }
        for vm in &n.uncordon.changed_by_others {
            println!("  {vm}");
        }
    }
    println!("Round aborted: steering labels removed, locks released.");
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use vm_kube::rolling::state::StepState;

    use super::*;

    fn round(status: RoundStatus, phase: Phase) -> RoundState {
        RoundState {
            api_version: "vm-drain-safe/v1".into(),
            kind: "RollingState".into(),
            run: "r1".into(),
            started_by: "ops@h:1 as alice".into(),
            started_at: 0,
            status,
            message: None,
            options: RoundOptions::default(),
            steps: vec![StepState {
                node: "a".into(),
                phase,
                estimated_seconds: 60,
                planned_migrations: 1,
                started_at: Some(0),
                finished_at: None,
                migrated: vec![],
                stopped: vec![],
                restarted: vec![],
                steered: true,
                note: None,
            }],
            planned_migrations: 1,
            naive_migrations: 1,
            naive_feasible: true,
        }
    }

    #[test]
    fn the_status_ends_each_line_with_a_newline() {
        for st in [
            round(RoundStatus::Running, Phase::Draining),
            round(RoundStatus::Done, Phase::Done),
        ] {
            let mut out = Vec::new();
            status_table(&st, None, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.ends_with(".\n"), "{text:?}");
        }
    }
}
