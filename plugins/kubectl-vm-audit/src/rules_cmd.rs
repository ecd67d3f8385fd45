//! `--list-rules` and `--explain`.

use std::io::Write;

use comfy_table::{Table, presets::NOTHING};
use vm_cli::structured::Structured;
use vm_core::audit::{RULES, rule};

use crate::cli::Format;

/// Prints the catalogue: a table, or JSON/YAML for scripts.
pub(crate) fn list(format: Format, out: &mut dyn Write) -> std::io::Result<()> {
    let rows: Vec<serde_json::Value> = RULES
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id, "category": r.category, "severity": r.severity, "summary": r.summary,
            })
        })
        .collect();
    match format {
        Format::Json | Format::Sarif | Format::Junit => {
            vm_cli::structured::write(&rows, Structured::Json, out)
        }
        Format::Yaml => vm_cli::structured::write(&rows, Structured::Yaml, out),
        Format::Table | Format::Wide => {
            let mut table = Table::new();
            table
                .load_style(NOTHING)
                .set_header(["ID", "SEVERITY", "CATEGORY", "SUMMARY"]);
            for r in RULES {
                table.add_row([r.id, r.severity.as_str(), r.category.as_str(), r.summary]);
            }
            writeln!(out, "{}", table.trim_fmt())
        }
    }
}

/// Prints one rule's explanation; `Err` with suggestions when the id is unknown.
pub(crate) fn explain(id: &str, out: &mut dyn Write) -> Result<std::io::Result<()>, String> {
    let Some(r) = rule(id) else {
        let close: Vec<&str> = RULES
            .iter()
            .map(|r| r.id)
            .filter(|candidate| {
                id.split('-')
                    .any(|word| word.len() > 3 && candidate.contains(word))
            })
            .collect();
        return Err(if close.is_empty() {
            format!("no rule `{id}`; `kubectl vm-audit --list-rules` lists them")
        } else {
            format!("no rule `{id}`; did you mean {}?", close.join(", "))
        });
    };
    Ok(writeln!(
        out,
        "{id}  ({severity}, {category})\n\n{summary}.\n\n{explanation}",
        id = r.id,
        severity = r.severity,
        category = r.category,
        summary = r.summary,
        explanation = r.explanation
    ))
}
