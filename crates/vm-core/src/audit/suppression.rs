//! Suppression by annotation: an object lists the rule ids to skip, and must say why.
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     vm-audit/suppress: probe-readiness-missing,probe-liveness-missing
//!     vm-audit/suppress-reason: batch worker with no service to probe
//! ```
//! A suppression without a reason is not honoured, and is itself a finding; so is a rule id
//! that does not exist (a typo would otherwise silence nothing, silently).

use std::collections::BTreeMap;

use super::finding::{AuditReport, Category, Finding, ObjectRef, Severity};
use super::rules::configuration::{SUPPRESSION_MISSING_REASON, SUPPRESSION_UNKNOWN_RULE};

/// Annotation listing the rule ids to skip, comma-separated.
pub const SUPPRESS_ANNOTATION: &str = "vm-audit/suppress";
/// Annotation giving the reason; required for the suppression to apply.
pub const SUPPRESS_REASON_ANNOTATION: &str = "vm-audit/suppress-reason";

/// Files `found` into `report`: suppressed findings aside, the rest as findings, plus findings
/// about the suppression annotation itself.
pub(crate) fn apply(
    object: &ObjectRef,
    annotations: &BTreeMap<String, String>,
    found: Vec<Finding>,
    report: &mut AuditReport,
) {
    let Some(list) = annotations.get(SUPPRESS_ANNOTATION) else {
        report.findings.extend(found);
        return;
    };
    let ids: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let make = |rule: &super::Rule, message: String, hint: &str| Finding {
        object: object.clone(),
        rule: rule.id.to_string(),
        category: Category::Configuration,
        severity: Severity::Warning,
        message,
        hint: hint.to_string(),
    };
    for id in &ids {
        if super::rule(id).is_none() {
            report.findings.push(make(
                &SUPPRESSION_UNKNOWN_RULE,
                format!("annotation {SUPPRESS_ANNOTATION} names rule `{id}`, which does not exist"),
                "list valid ids (kubectl vm-audit --list-rules)",
            ));
        }
    }
    let reason = annotations
        .get(SUPPRESS_REASON_ANNOTATION)
        .map(|r| r.trim())
        .unwrap_or_default();
    if reason.is_empty() {
        report.findings.push(make(
            &SUPPRESSION_MISSING_REASON,
            format!("annotation {SUPPRESS_ANNOTATION}={list} has no {SUPPRESS_REASON_ANNOTATION}; nothing is suppressed"),
            "add the annotation vm-audit/suppress-reason saying why these rules do not apply",
        ));
        report.findings.extend(found);
        return;
    }
    for finding in found {
        if ids.contains(&finding.rule.as_str()) {
            report.suppressed.push(finding);
        } else {
            report.findings.push(finding);
        }
    }
}
