//! The shell completions in `completions/` are generated from the clap definition; this test
//! fails when they are stale. Regenerate with:
//! `UPDATE_COMPLETIONS=1 cargo test -p kubectl-vm-audit --test completions`.

use std::path::Path;

use clap_complete::Shell;

const BIN: &str = "kubectl-vm_audit";

fn generate(shell: Shell) -> String {
    let mut cmd = vm_audit::cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN, &mut buf);
    String::from_utf8(buf).unwrap()
}

#[test]
fn completions_are_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../completions");
    let update = std::env::var_os("UPDATE_COMPLETIONS").is_some();
    let mut stale = Vec::new();
    for (shell, ext) in [
        (Shell::Bash, "bash"),
        (Shell::Zsh, "zsh"),
        (Shell::Fish, "fish"),
        (Shell::PowerShell, "ps1"),
    ] {
        let file = dir.join(format!("{BIN}.{ext}"));
        let fresh = generate(shell);
        if update {
            std::fs::write(&file, &fresh).unwrap();
        } else if std::fs::read_to_string(&file).ok().as_deref() != Some(fresh.as_str()) {
            stale.push(file.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale completions {stale:?}: run UPDATE_COMPLETIONS=1 cargo test -p kubectl-vm-audit --test completions"
    );
}

#[test]
fn bash_completion_offers_the_flags() {
    let script = generate(Shell::Bash);
    for flag in [
        "--filename",
        "--fail-on",
        "--explain",
        "--list-rules",
        "--kubeconfig",
        "--context",
    ] {
        assert!(script.contains(flag), "{flag} missing");
    }
}
