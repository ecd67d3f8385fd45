//! Renders an [`AuditReport`] in the chosen format. Each format is a module; all write to any
//! `Write`, so tests render into a buffer.

mod json;
mod junit;
mod sarif;
mod table;

use std::io::Write;

use vm_cli::structured::Structured;
use vm_core::audit::{AuditReport, Severity};
use vm_core::snapshot::ClusterSnapshot;

use crate::cli::Format;

pub use json::{API_VERSION, KIND};

/// How to render.
pub struct RenderOptions {
    /// The format.
    pub format: Format,
    /// The `--fail-on` threshold (JUnit marks failures by it).
    pub fail_on: Severity,
    /// Colour severities (tables only).
    pub color: bool,
}

/// Writes `report` to `out`; `snapshot` supplies where each object was read from.
///
/// # Errors
/// Only I/O errors of `out`.
pub fn render(
    report: &AuditReport,
    snapshot: &ClusterSnapshot,
    options: &RenderOptions,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match options.format {
        Format::Table => table::write(report, false, options.color, out),
        Format::Wide => table::write(report, true, options.color, out),
        Format::Json => json::write(report, Structured::Json, out),
        Format::Yaml => json::write(report, Structured::Yaml, out),
        Format::Sarif => sarif::write(report, snapshot, out),
        Format::Junit => junit::write(report, options.fail_on, out),
    }
}
