//! kubectl's flags, shared by every plugin.

use std::path::PathBuf;

use clap::Args;

/// How to reach the cluster, spelled as kubectl spells it; every plugin takes these.
#[derive(Args, Clone, Debug, Default)]
pub struct KubeArgs {
    /// Path to the kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "FILE", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, value_name = "NAME", global = true)]
    pub context: Option<String>,
}

/// `-n` and `-A`, for the plugins that look at a set of VMs. The node plugins do not take
/// them: a drain or a recovery moves every VM of the node, whatever its namespace.
#[derive(Args, Clone, Debug, Default)]
pub struct NamespaceArgs {
    /// Namespace to look in (default: the context's namespace).
    #[arg(
        short = 'n',
        long,
        value_name = "NAMESPACE",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: Option<String>,
    /// Look in every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

impl NamespaceArgs {
    /// The namespace to read: `None` for all namespaces, else `-n` or the context's default.
    #[must_use]
    pub fn namespace_or(&self, context_default: &str) -> Option<String> {
        if self.all_namespaces {
            None
        } else {
            Some(
                self.namespace
                    .clone()
                    .unwrap_or_else(|| context_default.to_string()),
            )
        }
    }
}

/// Checks a node name (for `NODE` and `--from-node`): a Kubernetes node name is a DNS
/// subdomain (RFC 1123: lowercase letters, digits, `-` and `.`, at most 253 characters,
/// starting and ending with a letter or digit). Anything else cannot name a node, and is refused
/// before the cluster is asked.
///
/// # Errors
/// A message saying what a node name may contain.
pub fn node_name(text: &str) -> Result<String, String> {
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid = !text.is_empty()
        && text.len() <= 253
        && text.chars().all(valid_char)
        && text
            .split('.')
            .all(|label| !label.is_empty() && alnum(label.chars().next()) && alnum(label.chars().last()));
    if valid {
        Ok(text.to_string())
    } else {
        Err("not a node name: node names are lowercase letters, digits, '-' and '.' (as `kubectl get nodes` shows them)".into())
    }
}

/// Parses `90`, `90s`, `15m`, `1h` (for `--timeout`).
///
/// # Errors
/// A message naming the text and the units that are accepted.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 90s, 15m or 1h"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (use s, m or h)")),
    };
    let seconds = n
        .checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too long"))?;
    Ok(std::time::Duration::from_secs(seconds))
}

/// `-v`, repeatable: warn, info, debug, trace.
#[derive(Args, Clone, Debug, Default)]
pub struct VerbosityArgs {
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

impl VerbosityArgs {
    /// Starts `tracing` on stderr at the chosen level (`RUST_LOG` overrides it).
    pub fn init_logging(&self) {
        // kube-client logs every failed request at ERROR; at the default level the plugin's own
        // error message says the same thing once, with context.
        let level = match self.verbose {
            0 => "warn,kube_client=off",
            1 => "info",
            2 => "debug",
            _ => "trace",
        };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(crate::style::color_enabled_stderr())
            .try_init();
    }
}

/// Parses the process's arguments; on `--help`/`--version` or a usage error, prints clap's
/// text and returns the exit status to end with (0 for help, 2 for a usage error).
///
/// # Errors
/// The status to exit with when there is nothing to run.
pub fn parse<T: clap::Parser>() -> Result<T, crate::exit::ExitStatus> {
    T::try_parse().map_err(|err| {
        let _ = err.print();
        if err.use_stderr() {
            crate::exit::ExitStatus::Error
        } else {
            crate::exit::ExitStatus::Success
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_follow_rfc_1123() {
        for ok in ["node-1", "worker.example.com", "a", "10.0.0.1", &"n".repeat(253)] {
            assert_eq!(node_name(ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in [
            "",
            "Node-1",
            "-node",
            "node-",
            "a..b",
            "../nodes",
            "a/b",
            "node 1",
            "nöde",
            &"n".repeat(254),
        ] {
            assert!(node_name(bad).is_err(), "{bad:?}");
        }
    }
}
