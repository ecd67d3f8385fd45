//! The `vm-audit/v1` AuditReport: a stable contract for scripts (JSON and YAML).

use std::io::Write;

use serde::Serialize;
use vm_core::audit::{AuditReport, Finding, Summary};

/// `apiVersion` of the report.
pub const API_VERSION: &str = "vm-audit/v1";
/// `kind` of the report.
pub const KIND: &str = "AuditReport";

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    summary: Summary,
    findings: &'a [Finding],
    suppressed: &'a [Finding],
}

fn document(report: &AuditReport) -> Document<'_> {
    Document {
        api_version: API_VERSION,
        kind: KIND,
        summary: report.summary(),
        findings: &report.findings,
        suppressed: &report.suppressed,
    }
}

pub(super) fn write_json(report: &AuditReport, out: &mut dyn Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &document(report))?;
    writeln!(out)
}

pub(super) fn write_yaml(report: &AuditReport, out: &mut dyn Write) -> std::io::Result<()> {
    let text = serde_yaml::to_string(&document(report)).map_err(std::io::Error::other)?;
    out.write_all(text.as_bytes())
}
