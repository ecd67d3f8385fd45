//! Other settings that defeat the practices: a zero grace period, PDBs that block every drain,
//! and suppressions that cannot be honoured.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::context::AuditContext;
use super::super::finding::{Category, Finding, ObjectRef, Severity};
use super::super::rule::Rule;
use super::super::subject::{Subject, subjects};
use super::Out;
use crate::labels::selector_matches;

static EMPTY: BTreeMap<String, String> = BTreeMap::new();

pub(crate) static GRACE_PERIOD_ZERO: Rule = Rule {
    id: "configuration-grace-period-zero",
    category: Category::Configuration,
    severity: Severity::Warning,
    summary: "terminationGracePeriodSeconds: 0 kills the guest without a clean shutdown",
    explanation: "With a grace period of 0 the guest gets no ACPI shutdown when its VMI is stopped \
or evicted: it is destroyed, like pulling the power cord, and file systems may be left \
inconsistent.\n\nFix: remove terminationGracePeriodSeconds (default 30) or set enough time for \
the guest to shut down.",
};

pub(crate) static PDB_BLOCKS_DRAIN: Rule = Rule {
    id: "configuration-pdb-blocks-drain",
    category: Category::Configuration,
    severity: Severity::Error,
    summary: "a PodDisruptionBudget on launcher pods uses maxUnavailable or a percentage",
    explanation: "For a PDB with maxUnavailable or a percentage, the disruption controller looks \
up the /scale of the pods' owner, a VMI, which has none. The PDB then reports \
disruptionsAllowed: 0 and blocks every drain (KubeVirt issue 18063).\n\nFix: use an integer \
minAvailable in PDBs that select virt-launcher pods.",
};

pub(crate) static SUPPRESSION_MISSING_REASON: Rule = Rule {
    id: "configuration-suppression-missing-reason",
    category: Category::Configuration,
    severity: Severity::Warning,
    summary: "a vm-audit/suppress annotation without vm-audit/suppress-reason",
    explanation: "Suppressions must say why, so that the next reader can judge them. Without \
vm-audit/suppress-reason nothing is suppressed.\n\nFix: add the annotation \
vm-audit/suppress-reason.",
};

pub(crate) static SUPPRESSION_UNKNOWN_RULE: Rule = Rule {
    id: "configuration-suppression-unknown-rule",
    category: Category::Configuration,
    severity: Severity::Warning,
    summary: "a vm-audit/suppress annotation names a rule that does not exist",
    explanation: "A misspelt rule id suppresses nothing. `kubectl vm-audit --list-rules` lists \
the valid ids.",
};

pub(crate) fn check(_ctx: &AuditContext<'_>, subject: &Subject<'_>, out: &mut Out<'_>) {
    if subject.template_spec().termination_grace_period_seconds == Some(0) {
        out.emit(
            &GRACE_PERIOD_ZERO,
            "terminationGracePeriodSeconds is 0: the guest is destroyed without a shutdown",
            "remove terminationGracePeriodSeconds or give the guest time to shut down",
        );
    }
}

/// PDBs that select launcher pods in their namespace.
pub(crate) fn check_pdbs<'a>(
    ctx: &AuditContext<'a>,
) -> Vec<(ObjectRef, &'a BTreeMap<String, String>, Vec<Finding>)> {
    let vm_subjects = subjects(ctx.snapshot);
    let mut audited = Vec::new();
    for pdb in &ctx.snapshot.pdbs {
        let namespace = pdb.metadata.namespace.as_deref().unwrap_or("default");
        let Some(spec) = &pdb.spec else { continue };
        let selects_launchers = vm_subjects
            .iter()
            .filter(|s| s.namespace() == namespace)
            .any(|s| {
                let mut labels = s
                    .template
                    .and_then(|t| t.metadata.as_ref())
                    .or_else(|| s.vmi.map(|v| &v.metadata))
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                labels.insert("kubevirt.io".into(), "virt-launcher".into());
                spec.selector
                    .as_ref()
                    .is_some_and(|sel| selector_matches(sel, &labels))
            });
        if !selects_launchers {
            continue;
        }
        let object = ObjectRef {
            kind: "PodDisruptionBudget".into(),
            namespace: Some(namespace.to_string()),
            name: pdb.metadata.name.clone().unwrap_or_default(),
            source: None,
        };
        let mut findings = Vec::new();
        let mut out = Out::new(&object, &mut findings);
        let how = match (&spec.max_unavailable, &spec.min_available) {
            (Some(v), _) => Some(format!("maxUnavailable: {}", show(v))),
            (None, Some(IntOrString::String(p))) => Some(format!("minAvailable: {p}")),
            _ => None,
        };
        if let Some(how) = how {
            out.emit(
                &PDB_BLOCKS_DRAIN,
                format!(
                    "selects virt-launcher pods with {how}: disruptionsAllowed stays 0 and every drain blocks"
                ),
                "use an integer minAvailable instead",
            );
        }
        audited.push((
            object,
            pdb.metadata.annotations.as_ref().unwrap_or(&EMPTY),
            findings,
        ));
    }
    audited
}

fn show(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}
