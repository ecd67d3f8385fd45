//! The assessment and the result, for people (tables) and for scripts (JSON, YAML).

use std::io::Write;

use comfy_table::{Table, presets::NOTHING};
use serde::Serialize;
use vm_core::recover::{NodeAssessment, RecoveryPlan};

use crate::cli::Format;

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
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, value)?;
            writeln!(out)?;
            Ok(true)
        }
        Format::Yaml => {
            out.write_all(
                serde_yaml::to_string(value)
                    .map_err(std::io::Error::other)?
                    .as_bytes(),
            )?;
            Ok(true)
        }
        Format::Table | Format::Wide => Ok(false),
    }
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
