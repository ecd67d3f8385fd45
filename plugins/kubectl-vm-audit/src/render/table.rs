//! Findings for people: one block per object, worst first, and a summary line.

use std::io::Write;

use comfy_table::{Cell, Color, Table, presets::NOTHING};
use vm_core::audit::{AuditReport, Finding, Severity};

fn severity_cell(severity: Severity, color: bool) -> Cell {
    let cell = Cell::new(severity.as_str());
    if !color {
        return cell;
    }
    match severity {
        Severity::Error => cell.fg(Color::Red),
        Severity::Warning => cell.fg(Color::Yellow),
        Severity::Info => cell.fg(Color::Cyan),
    }
}

fn object_label(f: &Finding) -> String {
    f.object.words()
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

pub(super) fn write(
    report: &AuditReport,
    wide: bool,
    color: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let summary = report.summary();
    let mut rows: Vec<&Finding> = report.findings.iter().collect();
    if wide {
        rows.extend(&report.suppressed);
        rows.sort_by(|a, b| a.object.cmp(&b.object));
    }
    if !rows.is_empty() {
        let mut table = Table::new();
        let mut header = vec!["OBJECT", "SEVERITY", "RULE", "MESSAGE"];
        if wide {
            header.extend(["CATEGORY", "HINT"]);
        }
        table.load_style(NOTHING).set_header(header);
        if color {
            table.enforce_styling();
        } else {
            table.force_no_tty();
        }
        let mut previous = None;
        for f in rows {
            let label = object_label(f);
            let shown = if previous.as_ref() == Some(&label) {
                String::new()
            } else {
                label.clone()
            };
            previous = Some(label);
            let suppressed = report.suppressed.contains(f);
            let mut row = vec![
                Cell::new(shown),
                if suppressed {
                    Cell::new("suppressed")
                } else {
                    severity_cell(f.severity, color)
                },
                Cell::new(&f.rule),
                Cell::new(&f.message),
            ];
            if wide {
                row.extend([Cell::new(f.category.as_str()), Cell::new(&f.hint)]);
            }
            table.add_row(row);
        }
        writeln!(out, "{}", table.trim_fmt())?;
        writeln!(out)?;
    }
    let mut line = format!(
        "{} audited: {}, {}, {} info",
        plural(summary.objects, "object"),
        plural(summary.error, "error"),
        plural(summary.warning, "warning"),
        summary.info
    );
    if summary.suppressed > 0 {
        line.push_str(&format!(" ({} suppressed)", summary.suppressed));
    }
    writeln!(out, "{line}")?;
    if !wide && !report.findings.is_empty() {
        writeln!(
            out,
            "Fix hints: -o wide; details: kubectl vm-audit --explain RULE"
        )?;
    }
    Ok(())
}
