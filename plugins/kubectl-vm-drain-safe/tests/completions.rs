//! The shell completions in `completions/` and the manual page in `man/` are generated from
//! the clap definition; this test fails when they are stale. Regenerate with:
//! `UPDATE_COMPLETIONS=1 cargo test -p kubectl-vm-drain-safe --test completions`.

use std::path::Path;

const BIN: &str = "kubectl-vm_drain_safe";

#[test]
fn completions_and_manual_page_are_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let update = std::env::var_os("UPDATE_COMPLETIONS").is_some();
    let stale = vm_cli::generated::check(&vm_drain_safe::cli::command(), BIN, &root, update).unwrap();
    assert!(
        stale.is_empty(),
        "stale {stale:?}: run UPDATE_COMPLETIONS=1 cargo test -p kubectl-vm-drain-safe --test completions"
    );
}

#[test]
fn bash_completion_offers_the_flags() {
    // The checked-in script, loaded in a real bash, completing `BIN --`.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let offered =
        vm_cli::completions::bash_complete(&root.join(format!("completions/{BIN}.bash")), &[BIN, "--"])
            .unwrap();
    assert!(offered.iter().all(|f| f.starts_with("--")), "{offered:?}");
    for flag in [
        "--dry-run",
        "--uncordon",
        "--shutdown-non-migratable",
        "--timeout",
        "--kubeconfig",
        "--yes",
        "--as",
        "--as-group",
        "--server",
        "--request-timeout",
    ] {
        assert!(
            offered.iter().any(|f| f == flag),
            "{flag} missing from {offered:?}"
        );
    }
}

/// Runs the checked-in `kubectl_complete-vm_drain_safe` as kubectl would, with the words typed
/// after `kubectl vm-drain-safe`; no cluster is needed for flags and fixed values.
fn kubectl_complete(words: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new(root.join("completions/kubectl/kubectl_complete-vm_drain_safe"))
        .args(words)
        .env("KUBECONFIG", root.join("no-such-kubeconfig"))
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn kubectl_completion_offers_flags_and_output_formats() {
    assert_eq!(
        kubectl_complete(&["node-1", "--dr"]),
        ["--dry-run\tPrint the plan and stop; change nothing", ":4"]
    );
    assert_eq!(kubectl_complete(&["-o", "j"]), ["json", ":4"]);
    assert_eq!(kubectl_complete(&["--output=y"]), ["yaml", ":4"]);
    // --timeout takes a value: the word after it is not the NODE, nor a file name.
    assert_eq!(kubectl_complete(&["--timeout", ""]), [":4"]);
    // kubectl's global flags, in kubectl's words.
    assert_eq!(
        kubectl_complete(&["--as-g"]),
        [
            "--as-group\tGroup to impersonate for the operation, this flag can be repeated to specify multiple groups",
            ":4"
        ]
    );
    // No cluster: no node names, and no error either.
    assert_eq!(kubectl_complete(&[""]), [":4"]);
}
