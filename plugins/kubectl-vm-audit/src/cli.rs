//! The command line of `kubectl vm-audit`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use vm_cli::args::{KubeArgs, NamespaceArgs, VerbosityArgs};
use vm_core::audit::Severity;

const AFTER_HELP: &str = "\
Examples:
  # Audit the VMs of the current namespace
  kubectl vm-audit

  # Audit every namespace, failing on warnings too
  kubectl vm-audit -A --fail-on warning

  # Audit manifests without a cluster (files, directories, or - for stdin)
  kubectl vm-audit -f examples/ -o json
  kubectl get vm,vmi -A -o yaml | kubectl vm-audit -f -

  # What a rule checks and how to fix it
  kubectl vm-audit --list-rules
  kubectl vm-audit --explain live-migrate-not-migratable

Input limits (-f): at most 32 MiB per file or stdin, 128 levels of nesting,
and 4,194,304 values once YAML aliases are expanded; more is refused (exit 2).

Suppress a rule on one object with two annotations:
  vm-audit/suppress: probes-readiness-missing,probes-liveness-missing
  vm-audit/suppress-reason: batch worker, nothing to probe

Exit status:
  0  no finding at or above --fail-on
  1  findings at or above --fail-on
  2  usage error, unreadable input, or a cluster error";

/// Check KubeVirt VMs against the best practices, live or from manifests.
///
/// Every VM, VM pool, VMI ReplicaSet and standalone VMI is checked for its run strategy,
/// resources or instancetype, eviction strategy, live-migratability, node placement, capacity
/// and probes, using the values KubeVirt would really apply.
#[derive(Parser, Debug)]
#[command(name = "kubectl-vm_audit", bin_name = "kubectl vm-audit", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Read manifests instead of the cluster: a file, a directory (recursively), or - for stdin.
    /// Repeatable. YAML or JSON, multi-document, `kind: List`.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
    pub files: Vec<PathBuf>,

    /// With -f: an object given more than once (same kind, namespace and name, in two files
    /// say) is audited once per copy, each shown with its file and line, instead of being an
    /// input error. Each copy is audited beside the same-numbered copy of every other object
    /// given as often (the first copy of the rest).
    #[arg(long, requires = "files")]
    pub audit_duplicates: bool,

    /// kubectl connection flags (live mode).
    #[command(flatten)]
    pub kube: KubeArgs,

    /// Which namespace's VMs to audit (live and file mode).
    #[command(flatten)]
    pub scope: NamespaceArgs,

    /// Only audit VMs, VMIs, replica sets and pools with these labels (e.g. app=web,tier!=dev).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,

    /// Exit 1 when a finding is at least this severe.
    #[arg(long, value_enum, default_value_t = FailOn::Error, value_name = "SEVERITY")]
    pub fail_on: FailOn,

    /// Flag VMs whose migration KubeVirt lets run longer than this (e.g. 30m, 1h): their
    /// memory times completionTimeoutPerGiB, from the KubeVirt CR or the MigrationPolicy that
    /// selects them (rule migration-timeout-exceeds-limit). Off by default.
    #[arg(long, value_name = "DURATION", value_parser = vm_cli::args::parse_duration)]
    pub max_migration_time: Option<std::time::Duration>,

    /// Explain one rule: what it checks, why it matters, how to fix it.
    #[arg(long, value_name = "RULE")]
    pub explain: Option<String>,

    /// List every rule with its id, severity and category.
    #[arg(long, conflicts_with = "explain")]
    pub list_rules: bool,

    /// Log verbosity.
    #[command(flatten)]
    pub verbosity: VerbosityArgs,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Findings grouped by object, for people.
    Table,
    /// The table with category and fix hint columns, and suppressed findings.
    Wide,
    /// The `vm-audit/v1` AuditReport, for scripts.
    Json,
    /// The same report as YAML.
    Yaml,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
    /// JUnit XML, one test case per object, for CI dashboards.
    Junit,
}

impl Format {
    /// The format for scripts this is (`None`: a table, or SARIF and JUnit, which have writers of their own).
    #[must_use]
    pub fn structured(self) -> Option<vm_cli::structured::Structured> {
        match self {
            Self::Json => Some(vm_cli::structured::Structured::Json),
            Self::Yaml => Some(vm_cli::structured::Structured::Yaml),
            Self::Table | Self::Wide | Self::Sarif | Self::Junit => None,
        }
    }
}

/// `--fail-on` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[allow(missing_docs)] // The severities.
pub enum FailOn {
    Info,
    Warning,
    Error,
}

impl From<FailOn> for Severity {
    fn from(value: FailOn) -> Self {
        match value {
            FailOn::Info => Self::Info,
            FailOn::Warning => Self::Warning,
            FailOn::Error => Self::Error,
        }
    }
}

/// The clap command, for completions and help tests.
#[must_use]
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
