//! The plan for people (a table per part) and for scripts (JSON, YAML).

use std::io::Write;

use comfy_table::{Table, presets::NOTHING};
use vm_core::drain::DrainPlan;
use vm_core::quantity::format_bytes;

use vm_cli::report::UserError;

use crate::cli::Format;

/// Writes to stdout through `write`; a closed pipe (`| head`) is not an error.
pub(crate) fn to_stdout(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<(), UserError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(UserError::new(format!("cannot write output: {e}"))),
    }
}

pub(crate) fn render(plan: &DrainPlan, format: Format, out: &mut dyn Write) -> std::io::Result<()> {
    if structured(plan, format, out)? {
        return Ok(());
    }
    table(plan, format == Format::Wide, out)
}

/// Writes `value` as JSON or YAML; `false` (nothing written) for the table formats.
pub(crate) fn structured<T: serde::Serialize>(
    value: &T,
    format: Format,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    vm_cli::structured::write_if(value, format.structured(), out)
}

fn table(plan: &DrainPlan, wide: bool, out: &mut dyn Write) -> std::io::Result<()> {
    if plan.vms.is_empty() {
        writeln!(out, "No VMs on node {}.", plan.node)?;
    } else {
        let mut t = Table::new();
        t.load_style(NOTHING).force_no_tty();
        let mut header = vec!["VM", "ACTION", "TARGET", "REASON"];
        if wide {
            header.extend(["EVICTION", "MIGRATABLE", "RUN STRATEGY", "MEMORY"]);
        }
        t.set_header(header);
        for vm in &plan.vms {
            let mut row = vec![
                format!("{}/{}", vm.namespace, vm.name),
                serde_json::to_value(vm.action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                vm.target.clone().unwrap_or_else(|| "-".into()),
                vm.reasons.join("; "),
            ];
            if wide {
                row.extend([
                    vm.eviction_strategy.clone(),
                    vm.live_migratable.to_string(),
                    vm.run_strategy.clone().unwrap_or_else(|| "-".into()),
                    format_bytes(vm.memory_bytes),
                ]);
            }
            t.add_row(row);
        }
        writeln!(out, "{}", t.trim_fmt())?;
    }
    if !plan.pods.is_empty() {
        let mut t = Table::new();
        t.load_style(NOTHING)
            .force_no_tty()
            .set_header(["POD", "ACTION", "REASON"]);
        for pod in &plan.pods {
            t.add_row([
                format!("{}/{}", pod.namespace, pod.name),
                serde_json::to_value(pod.action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                pod.reasons.join("; "),
            ]);
        }
        writeln!(out)?;
        writeln!(out, "{}", t.trim_fmt())?;
    }
    writeln!(out)?;
    let migrating = plan
        .vms
        .iter()
        .filter(|v| v.action == vm_core::drain::VmAction::Migrate)
        .count();
    writeln!(
        out,
        "Migration limits: {} per cluster, {} outbound per node; {migrating} migrations, estimated {} s{}.",
        plan.limits.parallel_migrations_per_cluster,
        plan.limits.parallel_outbound_migrations_per_node,
        plan.estimated_seconds,
        plan.migration_model
            .describe()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default()
    )?;
    if plan.feasible {
        writeln!(out, "Plan for node {}: feasible.", plan.node)
    } else {
        writeln!(
            out,
            "Plan for node {}: BLOCKED by {} blocker(s):",
            plan.node,
            plan.blockers.len()
        )?;
        for b in &plan.blockers {
            writeln!(out, "  - {b}")?;
        }
        Ok(())
    }
}
