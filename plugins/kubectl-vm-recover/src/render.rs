//! The assessment and the result, for people (tables) and for scripts (JSON, YAML), and the
//! printing both recovery modes share: stdout, refusals, the plan held back for a result.

use std::io::{ErrorKind, Write};

use comfy_table::{Table, presets::NOTHING};
use serde::Serialize;
use vm_cli::exit::ExitStatus;
use vm_cli::report::UserError;
use vm_core::recover::{NodeAssessment, RecoveryPlan};

use crate::cli::{Cli, Format};

pub(crate) const PROGRAM: &str = "kubectl vm-recover";

/// Ends a run that refused to act: the reason on stderr, exit status 1.
pub(crate) fn refuse(err: &UserError) -> ExitStatus {
    err.print(PROGRAM);
    ExitStatus::Findings
}

/// Writes to stdout through `write`; a closed pipe (`| head`) is not an error.
pub(crate) fn print(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<(), UserError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(UserError::new(format!("cannot write output: {e}"))),
    }
}

/// Whether the output is for scripts (then progress stays on stderr and results are JSON/YAML).
pub(crate) fn is_structured(format: Format) -> bool {
    matches!(format, Format::Json | Format::Yaml)
}

/// Whether an executed run holds its plan back for its result: with `-o json|yaml` stdout
/// carries exactly one document, which scripts parse, so the plan goes inside the result.
pub(crate) fn defers_plan(cli: &Cli) -> bool {
    is_structured(cli.output) && !cli.dry_run
}

/// Refuses after the assessment: with the plan held back for a result that will not come, the
/// plan is the run's one document.
pub(crate) fn refuse_with_plan(
    plan: &RecoveryPlan,
    cli: &Cli,
    err: &UserError,
) -> Result<ExitStatus, UserError> {
    if defers_plan(cli) {
        print(|out| render(plan, cli.output, out))?;
    }
    Ok(refuse(err))
}

/// A serde enum's wire name (`restart-elsewhere`, `Terminating`).
pub(crate) fn word<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Writes `value` as JSON or YAML; `false` when `format` is a table format.
pub(crate) fn structured<T: Serialize>(
    value: &T,
    format: Format,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    vm_cli::structured::write_if(value, format.structured(), out)
}

pub(crate) fn render(plan: &RecoveryPlan, format: Format, out: &mut dyn Write) -> std::io::Result<()> {
    if structured(plan, format, out)? {
        return Ok(());
    }
    writeln!(out, "{}", node_line(&plan.node, &plan.node_assessment))?;
    if let Some(stuck) = &plan.node_assessment.stuck {
        writeln!(out, "stuck: {stuck}")?;
    }
    writeln!(out)?;
    if plan.vms.is_empty() {
        return writeln!(out, "No VMs on node {}.", plan.node);
    }
    let wide = format == Format::Wide;
    let mut t = Table::new();
    t.load_style(NOTHING).force_no_tty();
    let mut header = vec![
        "VM",
        "RUN STRATEGY",
        "PHASE",
        "LAUNCHER",
        "RWO VOLUMES",
        "ACTION",
        "TARGET",
        "REASON",
    ];
    if wide {
        header.extend(["LAUNCHER PODS", "VOLUME ATTACHMENTS"]);
    }
    t.set_header(header);
    for vm in &plan.vms {
        let mut row = vec![
            format!("{}/{}", vm.namespace, vm.name),
            vm.run_strategy.clone().unwrap_or_else(|| "- (no VM)".into()),
            vm.phase.clone().unwrap_or_else(|| "-".into()),
            word(&vm.launcher_pod),
            dash_if_empty(&vm.rwo_volumes),
            word(&vm.action),
            vm.target.clone().unwrap_or_else(|| "-".into()),
            vm.reasons.join("; "),
        ];
        if wide {
            row.extend([
                dash_if_empty(&vm.launcher_pods),
                dash_if_empty(&vm.volume_attachments),
            ]);
        }
        t.add_row(row);
    }
    writeln!(out, "{}", t.trim_fmt())?;
    if !plan.blockers.is_empty() {
        writeln!(out)?;
        writeln!(out, "Blocked:")?;
        for b in &plan.blockers {
            writeln!(out, "  {b}")?;
        }
    }
    Ok(())
}

fn dash_if_empty(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}

fn age(seconds: Option<u64>) -> String {
    match seconds {
        None => "never".into(),
        Some(s) if s < 120 => format!("{s}s ago"),
        Some(s) if s < 7200 => format!("{}m{}s ago", s / 60, s % 60),
        Some(s) => format!("{}h{}m ago", s / 3600, (s % 3600) / 60),
    }
}

/// One line of evidence about the node, in the order an operator checks it.
fn node_line(node: &str, a: &NodeAssessment) -> String {
    format!(
        "Node {node}: {}{}; last heartbeat {}; Lease renewed {} ({}); KubeVirt heartbeat {}; kubevirt.io/schedulable={}; {}",
        word(&a.state),
        if a.cordoned { ", cordoned" } else { "" },
        age(a.last_heartbeat_seconds),
        age(a.lease_renewed_seconds),
        if a.lease_renewing {
            "still renewing"
        } else {
            "expired"
        },
        age(a.kubevirt_heartbeat_seconds),
        a.schedulable.as_deref().unwrap_or("unset"),
        if a.out_of_service {
            "fenced (out-of-service taint)"
        } else {
            "not fenced"
        },
    )
}
