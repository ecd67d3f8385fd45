//! Findings and the report: the JSON shape here is a stable contract (`vm-audit/v1`).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

// Kept beside the snapshot, which records every object's origin under it.
pub use crate::snapshot::ObjectRef;

/// How bad a finding is. Ordered: `Info < Warning < Error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing breaks.
    Info,
    /// A practice is not followed; failures or maintenance will hurt.
    Warning,
    /// KubeVirt rejects it, or it blocks maintenance outright.
    Error,
}

impl Severity {
    /// The lowercase name used in flags and output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The practice a rule belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)] // Names are the categories of the seed's practices.
pub enum Category {
    RunStrategy,
    Resources,
    EvictionStrategy,
    LiveMigration,
    NodePlacement,
    Capacity,
    Probes,
    Configuration,
}

impl Category {
    /// The kebab-case name used in output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunStrategy => "run-strategy",
            Self::Resources => "resources",
            Self::EvictionStrategy => "eviction-strategy",
            Self::LiveMigration => "live-migration",
            Self::NodePlacement => "node-placement",
            Self::Capacity => "capacity",
            Self::Probes => "probes",
            Self::Configuration => "configuration",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule that one object breaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The object.
    #[serde(flatten)]
    pub object: ObjectRef,
    /// Rule id.
    pub rule: String,
    /// Rule category.
    pub category: Category,
    /// Severity.
    pub severity: Severity,
    /// What is wrong, naming the field and its value.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

/// Counts per severity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Objects audited, with or without findings.
    pub objects: usize,
    /// Findings of severity info.
    pub info: usize,
    /// Findings of severity warning.
    pub warning: usize,
    /// Findings of severity error.
    pub error: usize,
    /// Findings silenced by a suppression annotation (not in `findings`).
    pub suppressed: usize,
}

/// The result of an audit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Every object audited, with or without findings.
    pub audited: Vec<ObjectRef>,
    /// Findings, sorted by object then severity (worst first) then rule.
    pub findings: Vec<Finding>,
    /// Findings silenced by annotations, kept for `-o wide` and the summary.
    pub suppressed: Vec<Finding>,
}

impl AuditReport {
    /// Counts per severity.
    #[must_use]
    pub fn summary(&self) -> Summary {
        let count = |s| self.findings.iter().filter(|f| f.severity == s).count();
        Summary {
            objects: self.audited.len(),
            info: count(Severity::Info),
            warning: count(Severity::Warning),
            error: count(Severity::Error),
            suppressed: self.suppressed.len(),
        }
    }

    /// Whether any finding is at or above `threshold`.
    #[must_use]
    pub fn fails_at(&self, threshold: Severity) -> bool {
        self.findings.iter().any(|f| f.severity >= threshold)
    }

    /// Marks what concerns the objects of `sources` (by kind, namespace and name) with the
    /// `file:line` of the copy audited, for `--audit-duplicates`; with `only`, drops the rest.
    pub fn mark_copies(&mut self, sources: &BTreeMap<ObjectRef, String>, only: bool) {
        let mark = |object: &mut ObjectRef| {
            let source = sources.get(object).cloned();
            let known = source.is_some();
            if known {
                object.source = source;
            }
            known || !only
        };
        self.audited.retain_mut(|o| mark(o));
        self.findings.retain_mut(|f| mark(&mut f.object));
        self.suppressed.retain_mut(|f| mark(&mut f.object));
    }

    /// Adds the entries of `other` (another copy's audit), keeping the order.
    pub fn merge(&mut self, other: AuditReport) {
        self.audited.extend(other.audited);
        self.findings.extend(other.findings);
        self.suppressed.extend(other.suppressed);
        self.sort();
    }

    pub(crate) fn sort(&mut self) {
        let key = |f: &Finding| (f.object.clone(), std::cmp::Reverse(f.severity), f.rule.clone());
        self.findings.sort_by_key(key);
        self.suppressed.sort_by_key(key);
        self.audited.sort();
    }
}
