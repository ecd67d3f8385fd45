//! kubectl's flags, shared by every plugin.

use std::path::PathBuf;

use clap::Args;

/// How to reach the cluster, spelled as kubectl spells it; every plugin takes these. The help
/// texts are kubectl's own.
#[derive(Args, Clone, Debug, Default)]
pub struct KubeArgs {
    /// Path to the kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "FILE", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, value_name = "NAME", global = true)]
    pub context: Option<String>,
    /// The name of the kubeconfig cluster to use.
    #[arg(long, value_name = "NAME", global = true)]
    pub cluster: Option<String>,
    /// The name of the kubeconfig user to use.
    #[arg(long, value_name = "NAME", global = true)]
    pub user: Option<String>,
    /// The address and port of the Kubernetes API server.
    #[arg(short = 's', long, value_name = "URL", global = true)]
    pub server: Option<String>,
    /// Bearer token for authentication to the API server.
    #[arg(long, value_name = "TOKEN", global = true)]
    pub token: Option<String>,
    /// Path to a cert file for the certificate authority.
    #[arg(long, value_name = "FILE", global = true, value_hint = clap::ValueHint::FilePath)]
    pub certificate_authority: Option<PathBuf>,
    /// Server name to use for server certificate validation. If it is not provided, the
    /// hostname used to contact the server is used.
    #[arg(long, value_name = "NAME", global = true)]
    pub tls_server_name: Option<String>,
    /// If true, the server's certificate will not be checked for validity. This will make your
    /// HTTPS connections insecure.
    #[arg(
        long,
        value_name = "BOOL",
        global = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub insecure_skip_tls_verify: Option<bool>,
    /// Username to impersonate for the operation. User could be a regular user or a service
    /// account in a namespace.
    #[arg(long = "as", value_name = "USER", global = true)]
    pub as_user: Option<String>,
    /// Group to impersonate for the operation, this flag can be repeated to specify multiple
    /// groups.
    #[arg(long = "as-group", value_name = "GROUP", global = true, requires = "as_user")]
    pub as_group: Vec<String>,
    /// The length of time to wait before giving up on a single server request. Non-zero
    /// values should contain a corresponding time unit (e.g. 1s, 2m, 3h). A value of zero
    /// means don't timeout requests.
    #[arg(long, value_name = "DURATION", global = true, value_parser = parse_request_timeout)]
    pub request_timeout: Option<std::time::Duration>,
}

impl KubeArgs {
    /// The connection these flags ask for.
    #[must_use]
    pub fn connect_options(&self) -> vm_kube::client::ConnectOptions {
        vm_kube::client::ConnectOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            cluster: self.cluster.clone(),
            user: self.user.clone(),
            server: self.server.clone(),
            token: self.token.clone(),
            certificate_authority: self.certificate_authority.clone(),
            tls_server_name: self.tls_server_name.clone(),
            insecure_skip_tls_verify: self.insecure_skip_tls_verify == Some(true),
            impersonate: self.as_user.clone(),
            impersonate_groups: self.as_group.clone(),
            request_timeout: self.request_timeout.filter(|t| !t.is_zero()),
        }
    }
}

/// Parses `--request-timeout` as kubectl does: `0` (no timeout), a number of seconds, or a
/// number with a unit (`30s`, `2m`, `1h`, and Go's `ms` and compound `1m30s`).
///
/// # Errors
/// kubectl's message for a value it refuses.
pub fn parse_request_timeout(text: &str) -> Result<std::time::Duration, String> {
    let refuse = || {
        format!(
            "`{text}` is not a timeout: a single integer in seconds, or an integer followed by a time unit (e.g. 1s, 2m, 3h); 0 means no timeout"
        )
    };
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(seconds));
    }
    if text.is_empty() {
        return Err(refuse());
    }
    let mut total = std::time::Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(refuse)?;
        let number: u64 = rest[..digits].parse().map_err(|_| refuse())?;
        let after = &rest[digits..];
        let unit_len = after.find(|c: char| c.is_ascii_digit()).unwrap_or(after.len());
        let part = match &after[..unit_len] {
            "ms" => std::time::Duration::from_millis(number),
            "s" => std::time::Duration::from_secs(number),
            "m" => std::time::Duration::from_secs(number.checked_mul(60).ok_or_else(refuse)?),
            "h" => std::time::Duration::from_secs(number.checked_mul(3600).ok_or_else(refuse)?),
            _ => return Err(refuse()),
        };
        total = total.checked_add(part).ok_or_else(refuse)?;
        rest = &after[unit_len..];
    }
    Ok(total)
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

/// Parses an amount of memory as Kubernetes writes it (`64Gi`, `512Mi`, bytes) into bytes.
///
/// # Errors
/// A message naming the text, when it is not a quantity or is negative.
pub fn parse_memory(text: &str) -> Result<f64, String> {
    let bytes = vm_core::quantity::parse(text).map_err(|e| e.to_string())?;
    if bytes.is_finite() && bytes >= 0.0 {
        Ok(bytes)
    } else {
        Err(format!(
            "`{text}` is not an amount of memory such as 64Gi or 512Mi"
        ))
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

/// `-v=N` as kubectl spells it (`-v=4`, `-v 4`, `--v=4`), and the short forms `-v`, `-vv`,
/// `-vvv`. Levels map onto `tracing`: 0 and 1 warn, 2 and 3 info, 4 and 5 debug, 6 and more
/// trace; `-v` is 2, `-vv` 4, `-vvv` 6.
#[derive(Args, Clone, Debug, Default)]
pub struct VerbosityArgs {
    /// Number for the log level verbosity, as kubectl's -v=N: 2 info, 4 debug, 6 trace (-v,
    /// -vv, -vvv for short); logs go to stderr.
    #[arg(
        short = 'v',
        long = "v",
        alias = "verbose",
        value_name = "LEVEL",
        num_args = 0..=1,
        default_missing_value = "",
        action = clap::ArgAction::Append,
        value_parser = parse_level,
        global = true
    )]
    pub levels: Vec<u8>,
}

/// A `-v` value: a number (kubectl's levels), or the letters after the first `v` of `-vv` and
/// `-vvv` (clap reads them as the value), each `v` of the flag worth two levels.
///
/// # Errors
/// A message showing the spellings that are accepted.
pub fn parse_level(text: &str) -> Result<u8, String> {
    let text = text.trim_start_matches('=');
    if text.chars().all(|c| c == 'v') {
        // `-v` alone arrives as "", `-vv` as "v" and `-vvv` as "vv": two levels a letter.
        let letters = u8::try_from(text.len()).unwrap_or(u8::MAX).saturating_add(1);
        return Ok(letters.saturating_mul(2));
    }
    text.parse::<u8>().map_err(|_| {
        format!("`{text}` is not a log level: use a number as kubectl does (-v=4), or -v, -vv, -vvv")
    })
}

impl VerbosityArgs {
    /// The level asked for: the highest one given, 0 when none.
    #[must_use]
    pub fn level(&self) -> u8 {
        self.levels.iter().copied().max().unwrap_or(0)
    }

    /// The `tracing` filter for the level (`RUST_LOG` overrides it).
    #[must_use]
    pub fn filter(&self) -> &'static str {
        // kube-client logs every failed request at ERROR; at the default level the plugin's own
        // error message says the same thing once, with context.
        match self.level() {
            0 | 1 => "warn,kube_client=off",
            2 | 3 => "info",
            4 | 5 => "debug",
            _ => "trace",
        }
    }

    /// Starts `tracing` on stderr at the chosen level (`RUST_LOG` overrides it).
    pub fn init_logging(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(self.filter()));
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

    /// A command like the plugins': the flags, and a positional NODE.
    #[derive(clap::Parser, Debug)]
    struct Sample {
        node: Option<String>,
        #[command(flatten)]
        kube: KubeArgs,
        #[command(flatten)]
        verbosity: VerbosityArgs,
    }

    fn parse(args: &[&str]) -> Result<Sample, String> {
        use clap::Parser as _;
        Sample::try_parse_from(std::iter::once("kubectl-vm_sample").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn v_takes_kubectls_spellings_and_the_short_ones() {
        for (args, level) in [
            (&[][..], 0),
            (&["-v=4"][..], 4),
            (&["-v", "4"], 4),
            (&["--v=6"], 6),
            (&["--v", "3"], 3),
            (&["-v4"], 4),
            (&["-v"], 2),
            (&["-vv"], 4),
            (&["-vvv"], 6),
            (&["node-1", "-v"], 2),
            (&["-v=0"], 0),
            (&["-v=1", "-v=5"], 5),
            (&["--verbose"], 2),
        ] {
            let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(cli.verbosity.level(), level, "{args:?}");
        }
        let filters: Vec<&str> = [0, 1, 2, 3, 4, 5, 6, 9]
            .into_iter()
            .map(|n| VerbosityArgs { levels: vec![n] }.filter())
            .collect();
        assert_eq!(
            filters,
            [
                "warn,kube_client=off",
                "warn,kube_client=off",
                "info",
                "info",
                "debug",
                "debug",
                "trace",
                "trace"
            ]
        );
        let err = parse(&["-v", "node-1"]).unwrap_err();
        assert!(err.contains("`node-1` is not a log level"), "{err}");
    }

    #[test]
    fn kubectls_global_flags_become_connect_options() {
        let cli = parse(&[
            "node-1",
            "--cluster",
            "c2",
            "--user=bob",
            "-s",
            "https://10.0.0.1:6443",
            "--token",
            "t0k3n",
            "--certificate-authority",
            "ca.pem",
            "--tls-server-name",
            "kube.internal",
            "--as",
            "jane",
            "--as-group",
            "ops",
            "--as-group=break-glass",
            "--request-timeout",
            "30s",
        ])
        .unwrap();
        let opts = cli.kube.connect_options();
        assert_eq!(cli.node.as_deref(), Some("node-1"));
        assert_eq!(opts.cluster.as_deref(), Some("c2"));
        assert_eq!(opts.user.as_deref(), Some("bob"));
        assert_eq!(opts.server.as_deref(), Some("https://10.0.0.1:6443"));
        assert_eq!(opts.token.as_deref(), Some("t0k3n"));
        assert_eq!(opts.certificate_authority, Some(PathBuf::from("ca.pem")));
        assert_eq!(opts.tls_server_name.as_deref(), Some("kube.internal"));
        assert!(!opts.insecure_skip_tls_verify);
        assert_eq!(opts.impersonate.as_deref(), Some("jane"));
        assert_eq!(opts.impersonate_groups, ["ops", "break-glass"]);
        assert_eq!(opts.request_timeout, Some(std::time::Duration::from_secs(30)));
    }

    #[test]
    fn insecure_skip_tls_verify_is_off_unless_given() {
        let insecure = |args: &[&str]| {
            parse(args)
                .unwrap()
                .kube
                .connect_options()
                .insecure_skip_tls_verify
        };
        assert!(!insecure(&[]));
        assert!(insecure(&["--insecure-skip-tls-verify"]));
        assert!(insecure(&["--insecure-skip-tls-verify=true"]));
        assert!(!insecure(&["--insecure-skip-tls-verify=false"]));
        // The flag takes no separate value: the next word is the NODE.
        let cli = parse(&["--insecure-skip-tls-verify", "node-1"]).unwrap();
        assert_eq!(cli.node.as_deref(), Some("node-1"));
    }

    #[test]
    fn as_group_requires_as() {
        let err = parse(&["--as-group", "ops"]).unwrap_err();
        assert!(err.contains("--as <USER>"), "{err}");
    }

    #[test]
    fn request_timeout_reads_as_kubectl_reads_it() {
        let secs = std::time::Duration::from_secs;
        for (text, timeout) in [
            ("0", secs(0)),
            ("30", secs(30)),
            ("30s", secs(30)),
            ("2m", secs(120)),
            ("1h", secs(3600)),
            ("1m30s", secs(90)),
            ("500ms", std::time::Duration::from_millis(500)),
        ] {
            assert_eq!(parse_request_timeout(text), Ok(timeout), "{text}");
        }
        for bad in ["", "s", "5x", "-1", "1.5s", "m5"] {
            assert!(parse_request_timeout(bad).is_err(), "{bad}");
        }
        let none = parse(&["--request-timeout", "0"]).unwrap().kube.connect_options();
        assert_eq!(none.request_timeout, None, "0 means no timeout");
    }
}
