//! SARIF 2.1.0, so that code-scanning tools can show findings on the manifests.

use std::io::Write;

use serde_json::{Value, json};
use vm_core::audit::{AuditReport, RULES, Severity};
use vm_core::snapshot::ClusterSnapshot;

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

pub(super) fn write(
    report: &AuditReport,
    snapshot: &ClusterSnapshot,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "shortDescription": {"text": r.summary},
                "fullDescription": {"text": r.explanation},
                "help": {"text": r.explanation},
                "defaultConfiguration": {"level": level(r.severity)},
                "properties": {"category": r.category},
            })
        })
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let mut location = json!({
                "logicalLocations": [{"fullyQualifiedName": f.object.to_string(), "kind": "resource"}]
            });
            // A copy audited on its own (--audit-duplicates) carries its own place.
            let place = match f.object.source.as_deref().and_then(|s| s.rsplit_once(':')) {
                Some((uri, line)) => line.parse::<usize>().ok().map(|line| (uri.to_string(), line)),
                None => snapshot
                    .origins
                    .get(&f.object)
                    .map(|o| (o.source.clone(), o.line)),
            };
            if let Some((uri, line)) = place {
                location["physicalLocation"] = json!({
                    "artifactLocation": {"uri": uri},
                    "region": {"startLine": line},
                });
            }
            json!({
                "ruleId": f.rule,
                "ruleIndex": RULES.iter().position(|r| r.id == f.rule),
                "level": level(f.severity),
                "message": {"text": format!("{}: {} (fix: {})", f.object, f.message, f.hint)},
                "locations": [location],
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "kubectl-vm-audit",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": env!("CARGO_PKG_REPOSITORY"),
                "rules": rules,
            }},
            "results": results,
        }],
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}
