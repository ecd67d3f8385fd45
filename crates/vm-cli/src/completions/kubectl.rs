//! `kubectl_complete-PLUGIN`: the executable through which kubectl (1.26 and newer) completes
//! the arguments of a plugin, generated from the plugin's clap definition.
//!
//! kubectl looks the executable up on `PATH` when it completes `kubectl PLUGIN ...`, runs it
//! with the words typed after the plugin name (the last one is the word being completed, `""`
//! for a new word) and reads the candidates from its stdout, one a line, optionally followed by
//! a Cobra directive line such as `:4` (`ShellCompDirectiveNoFileComp`). The generated script
//! completes flags, the fixed values of a flag (`-o`), node and namespace names read from the
//! cluster through kubectl (with the `--kubeconfig` and `--context` typed on the line), context
//! names, and leaves file arguments to the shell.

use std::fmt::Write as _;

use clap::ValueHint;

/// Cobra's `ShellCompDirectiveDefault`: the shell may offer file names.
const FILES: &str = ":0";
/// Cobra's `ShellCompDirectiveNoFileComp`: only the printed candidates.
const NO_FILES: &str = ":4";
/// kubectl's flags that say which cluster to read and as whom: the script passes them on to
/// the kubectl that lists node and namespace names.
const CONNECTION_FLAGS: &str = "--kubeconfig|--context|--cluster|--user|--server|--token|--certificate-authority|--tls-server-name|--as|--as-group";

/// What a flag's value or a positional argument completes to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Values {
    /// Names of the cluster's objects of a resource (`nodes`, `namespaces`), read through kubectl.
    Cluster(&'static str),
    /// The contexts of the kubeconfig.
    Contexts,
    /// The cluster entries of the kubeconfig.
    Clusters,
    /// The user entries of the kubeconfig.
    Users,
    /// File names, which the shell completes itself.
    Files,
    /// A fixed list: clap's possible values.
    Fixed(Vec<String>),
    /// Nothing to offer (a number, a duration, free text).
    Free,
}

fn values_of(arg: &clap::Arg) -> Values {
    let fixed: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect();
    if !fixed.is_empty() {
        return Values::Fixed(fixed);
    }
    let value_name = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map(clap::builder::Str::as_str);
    match (arg.get_id().as_str(), value_name) {
        (_, Some("NODE")) => Values::Cluster("nodes"),
        (_, Some("NAMESPACE")) => Values::Cluster("namespaces"),
        ("context", _) => Values::Contexts,
        ("cluster", _) => Values::Clusters,
        ("user", _) => Values::Users,
        _ if value_name.is_some_and(|n| n.starts_with("FILE"))
            || matches!(
                arg.get_value_hint(),
                ValueHint::AnyPath | ValueHint::FilePath | ValueHint::DirPath
            ) =>
        {
            Values::Files
        }
        _ => Values::Free,
    }
}

/// The shell command that prints the candidates of `values` starting with `$2`.
fn action(values: &Values) -> String {
    match values {
        Values::Cluster(resource) => format!("names {resource} \"$2\""),
        Values::Contexts => "entries contexts \"$2\"".to_string(),
        Values::Clusters => "entries clusters \"$2\"".to_string(),
        Values::Users => "entries users \"$2\"".to_string(),
        Values::Files => format!("echo {FILES}"),
        Values::Fixed(list) => format!("fixed \"$2\" {}", list.join(" ")),
        Values::Free => format!("echo {NO_FILES}"),
    }
}

/// The spellings of an option: `--long`, its visible aliases, `-s` and its visible short aliases.
fn spellings(arg: &clap::Arg) -> Vec<String> {
    let mut names: Vec<String> = arg
        .get_long_and_visible_aliases()
        .unwrap_or_default()
        .iter()
        .map(|l| format!("--{l}"))
        .collect();
    names.extend(
        arg.get_short_and_visible_aliases()
            .unwrap_or_default()
            .iter()
            .map(|s| format!("-{s}")),
    );
    names
}

/// The first line of an argument's help, fit for a completion description (no tab, no final dot).
fn description(arg: &clap::Arg) -> String {
    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    let first = help.lines().next().unwrap_or_default().replace('\t', " ");
    first.trim_end_matches('.').to_string()
}

/// The name of the completion executable for the plugin executable `bin`
/// (`kubectl-vm_drain_safe` → `kubectl_complete-vm_drain_safe`).
#[must_use]
pub fn executable_name(bin: &str) -> String {
    format!("kubectl_complete-{}", bin.strip_prefix("kubectl-").unwrap_or(bin))
}

/// The `kubectl_complete-PLUGIN` script (POSIX sh) of `command`, the clap definition of the
/// plugin executable `bin`.
#[must_use]
pub fn generate(mut command: clap::Command, bin: &str) -> String {
    command.build();
    let exe = executable_name(bin);
    let typed = format!(
        "kubectl {}",
        bin.strip_prefix("kubectl-").unwrap_or(bin).replace('_', "-")
    );
    let mut flag_lines = String::new();
    let mut value_arms = String::new();
    let mut takes_value = Vec::new();
    let mut positional = 0;
    for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
        if arg.is_positional() {
            positional += 1;
            let _ = writeln!(value_arms, "        {positional}) {} ;;", action(&values_of(arg)));
            continue;
        }
        let names = spellings(arg);
        let about = description(arg);
        for name in &names {
            let _ = writeln!(flag_lines, "{name}\t{about}");
        }
        if arg.get_action().takes_values() && !names.is_empty() {
            let pattern = names.join("|");
            let _ = writeln!(value_arms, "        {pattern}) {} ;;", action(&values_of(arg)));
            // A flag whose value is optional (`-v`, `--insecure-skip-tls-verify`) takes it
            // only after `=`: the next word is not its value.
            if arg.get_num_args().is_none_or(|n| n.min_values() > 0) {
                takes_value.push(pattern);
            }
        }
    }
    let takes_value = if takes_value.is_empty() {
        "--) return 1".to_string()
    } else {
        format!("{}) return 0", takes_value.join("|"))
    };
    let connection_flags_eq = CONNECTION_FLAGS.replace('|', "=*|") + "=*";
    format!(
        r#"#!/bin/sh
# {exe}: completes the arguments of `{typed}` (kubectl 1.26 and newer).
# Generated from the command line of {bin}; do not edit.
#
# kubectl runs this executable when it is on PATH, with the words typed after `{typed}`,
# the last one being the word to complete ("" for a new word). It prints the candidates, one a
# line (a tab before a description), then a Cobra directive: {NO_FILES} offer nothing else,
# {FILES} let the shell offer file names. Node and namespace names come from the cluster,
# through kubectl with the connection flags typed on the line (--kubeconfig, --context, --as...).
set -f
newline='
'

# Cluster objects of kind $1 whose names start with $2.
names() {{
    found=$(IFS=$newline; kubectl get "$1" --request-timeout=5s \
        -o 'jsonpath={{.items[*].metadata.name}}' $connection 2>/dev/null)
    for name in $found; do
        case $name in "$2"*) printf '%s\n' "$name" ;; esac
    done
    echo {NO_FILES}
}}

# Entries of kind $1 (contexts, clusters, users) of the kubeconfig whose names start with $2.
entries() {{
    case $1 in contexts) only_names='-o name' ;; *) only_names= ;; esac
    kubectl config "get-$1" $only_names ${{kubeconfig:+"--kubeconfig=$kubeconfig"}} 2>/dev/null |
        while IFS= read -r name; do
            case $1:$name in contexts:*) ;; *:NAME) continue ;; esac
            case $name in "$2"*) printf '%s\n' "$name" ;; esac
        done
    echo {NO_FILES}
}}

# The values after $1 that start with $1.
fixed() {{
    prefix=$1
    shift
    for value in "$@"; do
        case $value in "$prefix"*) printf '%s\n' "$value" ;; esac
    done
    echo {NO_FILES}
}}

# The flags that start with $1, each with its description.
flags() {{
    while IFS= read -r line; do
        case $line in "$1"*) printf '%s\n' "$line" ;; esac
    done <<'EOF'
{flag_lines}EOF
    echo {NO_FILES}
}}

# Whether the flag $1 takes a value (in the next word when not written --flag=value).
takes_value() {{
    case $1 in
        {takes_value} ;;
    esac
    return 1
}}

# The candidates for the value of flag $1, or of positional argument number $1, starting with $2.
value() {{
    case $1 in
{value_arms}        *) echo {NO_FILES} ;;
    esac
}}

kubeconfig=
connection=
value_of=
rest=
position=0
# Keeps the connection flag $1 (--flag=value) for the kubectl that reads the cluster.
keep() {{
    case $1 in
        --kubeconfig="~/"*) path=${{1#*=}}; set -- "--kubeconfig=$HOME/${{path#??}}" ;;
    esac
    case $1 in --kubeconfig=*) kubeconfig=${{1#*=}} ;; esac
    connection=$connection$newline$1
}}
while [ $# -gt 1 ]; do
    word=$1
    shift
    if [ -n "$value_of" ]; then
        case $value_of in
            {CONNECTION_FLAGS}) keep "$value_of=$word" ;;
            -s) keep "--server=$word" ;;
        esac
        value_of=
    elif [ -n "$rest" ]; then
        position=$((position + 1))
    else
        case $word in
            --) rest=1 ;;
            {connection_flags_eq}|--insecure-skip-tls-verify|--insecure-skip-tls-verify=*) keep "$word" ;;
            -s=*) keep "--server=${{word#*=}}" ;;
            --*=*) ;;
            -?*) if takes_value "$word"; then value_of=$word; fi ;;
            *) position=$((position + 1)) ;;
        esac
    fi
done
cur=${{1-}}

if [ -n "$value_of" ]; then
    value "$value_of" "$cur"
elif [ -n "$rest" ]; then
    value "$((position + 1))" "$cur"
else
    case $cur in
        --*=*) value "${{cur%%=*}}" "${{cur#*=}}" ;;
        -*) flags "$cur" ;;
        *) value "$((position + 1))" "$cur" ;;
    esac
fi
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn sample() -> Command {
        Command::new("kubectl-vm_sample")
            .arg(Arg::new("node").value_name("NODE").required(true))
            .arg(
                Arg::new("dry_run")
                    .long("dry-run")
                    .action(ArgAction::SetTrue)
                    .help("Change nothing."),
            )
            .arg(
                Arg::new("output")
                    .short('o')
                    .long("output")
                    .value_parser(["table", "json"]),
            )
            .arg(Arg::new("ns").long("lock-namespace").value_name("NAMESPACE"))
            .arg(Arg::new("context").long("context").value_name("NAME"))
            .arg(Arg::new("kubeconfig").long("kubeconfig").value_name("FILE"))
            .arg(Arg::new("cluster").long("cluster").value_name("NAME"))
            .arg(Arg::new("user").long("user").value_name("NAME"))
            .arg(Arg::new("v").short('v').long("v").num_args(0..=1))
            .arg(Arg::new("secret").long("secret").hide(true))
    }

    #[test]
    fn names_the_executable_after_the_plugin() {
        assert_eq!(
            executable_name("kubectl-vm_drain_safe"),
            "kubectl_complete-vm_drain_safe"
        );
    }

    #[test]
    fn each_argument_completes_to_its_kind_of_value() {
        let script = generate(sample(), "kubectl-vm_sample");
        assert!(script.contains("        1) names nodes \"$2\" ;;"), "{script}");
        assert!(
            script.contains("        --output|-o) fixed \"$2\" table json ;;"),
            "{script}"
        );
        assert!(script.contains("        --lock-namespace) names namespaces \"$2\" ;;"));
        assert!(script.contains("        --context) entries contexts \"$2\" ;;"));
        assert!(script.contains("        --cluster) entries clusters \"$2\" ;;"));
        assert!(script.contains("        --user) entries users \"$2\" ;;"));
        assert!(
            script.contains("        --v|-v) echo :4 ;;") && !script.contains("--v|-v) return 0"),
            "-v takes its value after = only: {script}"
        );
        assert!(script.contains("        --kubeconfig) echo :0 ;;"));
        assert!(script.contains("--dry-run\tChange nothing\n"));
        assert!(!script.contains("--secret"), "hidden flags are not offered");
        assert!(script.contains("--help\t"), "clap's own flags are offered");
    }
}
