//! Shell completions generated from a plugin's clap definition, and the check that keeps the
//! checked-in files in `completions/` fresh.

use std::path::Path;

use clap_complete::Shell;

/// The shells completions are generated for, with their file extensions.
pub const SHELLS: [(Shell, &str); 4] = [
    (Shell::Bash, "bash"),
    (Shell::Zsh, "zsh"),
    (Shell::Fish, "fish"),
    (Shell::PowerShell, "ps1"),
];

/// The completion script of `command` for `shell`, for the executable `bin`.
#[must_use]
pub fn generate(mut command: clap::Command, bin: &str, shell: Shell) -> String {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut command, bin, &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Compares (or, with `update`, rewrites) `dir/BIN.EXT` for every shell; returns the stale files.
///
/// # Errors
/// Writing a file failed.
pub fn check(command: &clap::Command, bin: &str, dir: &Path, update: bool) -> std::io::Result<Vec<String>> {
    let mut stale = Vec::new();
    for (shell, ext) in SHELLS {
        let file = dir.join(format!("{bin}.{ext}"));
        let fresh = generate(command.clone(), bin, shell);
        if update {
            std::fs::write(&file, &fresh)?;
        } else if std::fs::read_to_string(&file).ok().as_deref() != Some(fresh.as_str()) {
            stale.push(file.display().to_string());
        }
    }
    Ok(stale)
}

/// Everything generated from a plugin's command line and checked in: `completions/BIN.*` and
/// `man/BIN.1` under `root`. Returns the stale files (none after an `update`).
///
/// # Errors
/// Rendering or writing failed.
pub fn check_generated(
    command: &clap::Command,
    bin: &str,
    root: &Path,
    update: bool,
) -> std::io::Result<Vec<String>> {
    let mut stale = check(command, bin, &root.join("completions"), update)?;
    stale.extend(crate::manpage::check(command, bin, &root.join("man"), update)?);
    Ok(stale)
}
