//! The description of one rule: what `--list-rules` and `--explain` print.

use super::finding::{Category, Severity};

/// A best-practice rule.
#[derive(Debug)]
pub struct Rule {
    /// Stable id, kebab-case; scripts and suppressions refer to it.
    pub id: &'static str,
    /// The practice it belongs to.
    pub category: Category,
    /// How bad a finding is.
    pub severity: Severity,
    /// One line: what it flags.
    pub summary: &'static str,
    /// Why it matters and how to fix it, for `--explain`.
    pub explanation: &'static str,
}
