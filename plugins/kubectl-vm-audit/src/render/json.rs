//! The `vm-audit/v1` AuditReport: a stable contract for scripts (JSON and YAML).

use std::io::Write;

use serde::Serialize;
use vm_cli::structured::Structured;
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

/// Writes the report as JSON or YAML, with the plugins' one writer for scripts.
pub(super) fn write(report: &AuditReport, format: Structured, out: &mut dyn Write) -> std::io::Result<()> {
    vm_cli::structured::write(&document(report), format, out)
}
