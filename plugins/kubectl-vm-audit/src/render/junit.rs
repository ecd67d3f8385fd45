//! JUnit XML: one test case per audited object; findings at or above `--fail-on` are failures.

use std::io::Write;

use vm_core::audit::{AuditReport, Finding, ObjectRef, Severity};

/// Escapes text for XML attributes and content.
fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => s.push(' '),
            c => s.push(c),
        }
    }
    s
}

/// The findings about `object`.
fn findings_of<'a>(report: &'a AuditReport, object: &'a ObjectRef) -> impl Iterator<Item = &'a Finding> + 'a {
    report.findings.iter().filter(move |f| &f.object == object)
}

pub(super) fn write(report: &AuditReport, fail_on: Severity, out: &mut dyn Write) -> std::io::Result<()> {
    let failing = report
        .audited
        .iter()
        .filter(|o| findings_of(report, o).any(|f| f.severity >= fail_on))
        .count();
    let tests = report.audited.len();
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuites name="vm-audit" tests="{tests}" failures="{failing}" errors="0">"#
    )?;
    writeln!(
        out,
        r#"  <testsuite name="vm-audit" tests="{tests}" failures="{failing}" errors="0" skipped="0">"#
    )?;
    for object in &report.audited {
        let class = match &object.namespace {
            Some(ns) => format!("{}.{ns}", object.kind),
            None => object.kind.clone(),
        };
        writeln!(
            out,
            r#"    <testcase classname="{}" name="{}">"#,
            escape(&class),
            escape(&format!("{}{}", object.name, object.copy_suffix()))
        )?;
        let mut below = Vec::new();
        for f in findings_of(report, object) {
            if f.severity >= fail_on {
                writeln!(
                    out,
                    r#"      <failure type="{}" message="{}">{}: {}&#10;hint: {}</failure>"#,
                    escape(&f.rule),
                    escape(&f.message),
                    f.severity,
                    escape(&f.message),
                    escape(&f.hint)
                )?;
            } else {
                below.push(format!("{} {}: {}", f.severity, f.rule, f.message));
            }
        }
        if !below.is_empty() {
            writeln!(
                out,
                "      <system-out>{}</system-out>",
                escape(&below.join("\n"))
            )?;
        }
        writeln!(out, "    </testcase>")?;
    }
    writeln!(out, "  </testsuite>")?;
    writeln!(out, "</testsuites>")
}
