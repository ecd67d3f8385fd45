//! The shell completions in `completions/` and the manual page in `man/` are generated from
//! the clap definition; this test fails when they are stale. Regenerate with:
//! `UPDATE_COMPLETIONS=1 cargo test -p kubectl-vm-audit --test completions`.

use std::path::Path;

const BIN: &str = "kubectl-vm_audit";

#[test]
fn completions_and_manual_page_are_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let update = std::env::var_os("UPDATE_COMPLETIONS").is_some();
    let stale = vm_cli::generated::check(&vm_audit::cli::command(), BIN, &root, update).unwrap();
    assert!(
        stale.is_empty(),
        "stale {stale:?}: run UPDATE_COMPLETIONS=1 cargo test -p kubectl-vm-audit --test completions"
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
        "--filename",
        "--fail-on",
        "--explain",
        "--list-rules",
        "--kubeconfig",
        "--context",
    ] {
        assert!(
            offered.iter().any(|f| f == flag),
            "{flag} missing from {offered:?}"
        );
    }
}
