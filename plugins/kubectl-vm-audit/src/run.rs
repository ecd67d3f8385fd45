//! The flow of one run: flags → snapshot → audit → output → exit status.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Write};

use vm_cli::exit::ExitStatus;
use vm_cli::report::UserError;
use vm_core::audit::{AuditOptions, AuditReport, ObjectRef, Severity, audit_with};
use vm_core::labels::LabelQuery;
use vm_core::manifest::Duplicates;
use vm_core::snapshot::ClusterSnapshot;
use vm_kube::live::{LiveScope, snapshot};

use crate::cli::{Cli, Format};
use crate::render::{self, RenderOptions};
use crate::rules_cmd;

const PROGRAM: &str = "kubectl vm-audit";

/// Runs `kubectl vm-audit` with the process's arguments and returns its exit status.
#[must_use]
pub fn main() -> ExitStatus {
    let cli: Cli = match vm_cli::args::parse() {
        Ok(cli) => cli,
        Err(status) => return status,
    };
    cli.verbosity.init_logging();
    match run(&cli) {
        Ok(status) => status,
        Err(Failure::User(err)) => {
            err.print(PROGRAM);
            ExitStatus::Error
        }
        // `kubectl vm-audit | head` closes the pipe early; that is not an error.
        Err(Failure::Io(err)) if err.kind() == ErrorKind::BrokenPipe => ExitStatus::Success,
        Err(Failure::Io(err)) => {
            UserError::new(format!("cannot write output: {err}")).print(PROGRAM);
            ExitStatus::Error
        }
    }
}

enum Failure {
    User(UserError),
    Io(std::io::Error),
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        Self::Io(err)
    }
}

impl From<UserError> for Failure {
    fn from(err: UserError) -> Self {
        Self::User(err)
    }
}

fn run(cli: &Cli) -> Result<ExitStatus, Failure> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if cli.list_rules {
        rules_cmd::list(cli.output, &mut out)?;
        return Ok(ExitStatus::Success);
    }
    if let Some(id) = &cli.explain {
        rules_cmd::explain(id, &mut out).map_err(UserError::new)??;
        return Ok(ExitStatus::Success);
    }
    let options = AuditOptions {
        max_migration_seconds: cli.max_migration_time.map(|d| d.as_secs()),
    };
    let (snapshot, report) = if cli.files.is_empty() {
        let snapshot = load_live(cli)?;
        let report = audit_with(&snapshot, &options);
        (snapshot, report)
    } else {
        audit_files(cli, &options)?
    };
    let fail_on: Severity = cli.fail_on.into();
    let options = RenderOptions {
        format: cli.output,
        fail_on,
        color: cli.output == Format::Table && vm_cli::style::color_enabled_stdout()
            || cli.output == Format::Wide && vm_cli::style::color_enabled_stdout(),
    };
    render::render(&report, &snapshot, &options, &mut out)?;
    out.flush()?;
    Ok(if report.fails_at(fail_on) {
        ExitStatus::Findings
    } else {
        ExitStatus::Success
    })
}

/// File mode: the inputs read once, then audited; with `--audit-duplicates`, once per layer
/// of copies (see [`Duplicates::Layer`]), each copy's entries marked with its file and line.
fn audit_files(cli: &Cli, options: &AuditOptions) -> Result<(ClusterSnapshot, AuditReport), UserError> {
    let inputs = vm_kube::files::read(&cli.files, &mut std::io::stdin().lock())?;
    if !cli.audit_duplicates {
        let snapshot = load_layer(cli, &inputs, &Duplicates::Refuse, true)?;
        let report = audit_with(&snapshot, options);
        return Ok((snapshot, report));
    }
    let first = Duplicates::Layer {
        layer: 1,
        deep: BTreeSet::new(),
    };
    let mut snapshot = load_layer(cli, &inputs, &first, true)?;
    // Only the layers need the copies; the rendering does not.
    let copies = std::mem::take(&mut snapshot.copies);
    let source_of = |layer: usize| -> BTreeMap<ObjectRef, String> {
        copies
            .iter()
            .filter(|(_, origins)| origins.len() > 1 && origins.len() >= layer)
            .map(|(object, origins)| {
                let o = &origins[layer - 1];
                (object.clone(), format!("{}:{}", o.source, o.line))
            })
            .collect()
    };
    let mut report = audit_with(&snapshot, options);
    report.mark_copies(&source_of(1), false);
    let most = copies.values().map(Vec::len).max().unwrap_or(1);
    for layer in 2..=most {
        let sources = source_of(layer);
        let deep = sources.keys().cloned().collect();
        let copy = load_layer(cli, &inputs, &Duplicates::Layer { layer, deep }, false)?;
        let mut more = audit_with(&copy, options);
        more.mark_copies(&sources, true);
        report.merge(more);
    }
    Ok((snapshot, report))
}

/// The inputs loaded with `duplicates`, then narrowed to `-n`/`-l`; notes printed if `notes`
/// (once, not for every layer).
fn load_layer(
    cli: &Cli,
    inputs: &[vm_kube::files::Input],
    duplicates: &Duplicates,
    notes: bool,
) -> Result<ClusterSnapshot, UserError> {
    let (mut snapshot, found) = vm_kube::files::load_inputs(inputs, duplicates).map_err(|e| {
        let duplicate = matches!(&e, vm_kube::files::FileError::Manifest(m) if m.is_duplicate());
        let err = UserError::from(e);
        if duplicate {
            err.hint("keep one copy, or pass --audit-duplicates to audit each copy apart")
        } else {
            err
        }
    })?;
    for note in found.iter().filter(|_| notes) {
        eprintln!("note: {}: {}", note.location, note.message);
    }
    let query = match &cli.selector {
        Some(sel) => Some(LabelQuery::parse(sel).map_err(|e| UserError::new(format!("-l {sel}: {e}")))?),
        None => None,
    };
    let namespace = if cli.scope.all_namespaces {
        None
    } else {
        cli.scope.namespace.as_deref()
    };
    snapshot.retain_workloads(|meta| {
        let ns_ok = namespace.is_none_or(|ns| meta.namespace.as_deref().unwrap_or("default") == ns);
        let labels = meta.labels.clone().unwrap_or_default();
        ns_ok && query.as_ref().is_none_or(|q| q.matches(&labels))
    });
    Ok(snapshot)
}

fn load_live(cli: &Cli) -> Result<ClusterSnapshot, UserError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| UserError::new(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let connection = vm_cli::session::connection(
            &cli.kube,
            "check --kubeconfig and --context, or use -f FILE to audit manifests",
        )
        .await?;
        let scope = LiveScope {
            namespace: cli.scope.namespace_or(&connection.default_namespace),
            selector: cli.selector.clone(),
        };
        let needed = crate::needs::audit(scope.namespace.as_deref());
        vm_cli::session::check_access(&connection.client, &cli.kube, &needed, crate::needs::ROLE).await?;
        snapshot(&connection.client, &scope)
            .await
            .map_err(vm_cli::report::api_error)
    })
}
