//! The shell completions in `completions/` and the manual page in `man/` are generated from
//! the clap definition; this test fails when they are stale. Regenerate with:
//! `UPDATE_COMPLETIONS=1 cargo test -p kubectl-vm-drain-safe --test completions`.

use std::path::Path;

const BIN: &str = "kubectl-vm_drain_safe";

#[test]
fn completions_and_manual_page_are_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let update = std::env::var_os("UPDATE_COMPLETIONS").is_some();
    let stale =
        vm_cli::completions::check_generated(&vm_drain_safe::cli::command(), BIN, &root, update).unwrap();
    assert!(
        stale.is_empty(),
        "stale {stale:?}: run UPDATE_COMPLETIONS=1 cargo test -p kubectl-vm-drain-safe --test completions"
    );
}

#[test]
fn bash_completion_offers_the_flags() {
    let script =
        vm_cli::completions::generate(vm_drain_safe::cli::command(), BIN, clap_complete::Shell::Bash);
    for flag in [
        "--dry-run",
        "--uncordon",
        "--shutdown-non-migratable",
        "--timeout",
        "--kubeconfig",
        "--yes",
    ] {
        assert!(script.contains(flag), "{flag} missing");
    }
}
