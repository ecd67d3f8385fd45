//! Shell completions generated from a plugin's clap definition, and the check that keeps the
//! checked-in files in `completions/` fresh.

use std::path::Path;

use clap_complete::Shell;

use crate::atomic::write_atomically;

pub mod kubectl;

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
            write_atomically(&file, &fresh, None)?;
        } else if std::fs::read_to_string(&file).ok().as_deref() != Some(fresh.as_str()) {
            stale.push(file.display().to_string());
        }
    }
    Ok(stale)
}

/// Compares (or, with `update`, rewrites) the executable `dir/kubectl_complete-PLUGIN`; returns
/// it when it is stale or not executable.
///
/// # Errors
/// Writing the file or setting its mode failed.
pub fn check_kubectl(
    command: &clap::Command,
    bin: &str,
    dir: &Path,
    update: bool,
) -> std::io::Result<Option<String>> {
    use std::os::unix::fs::PermissionsExt as _;
    let file = dir.join(kubectl::executable_name(bin));
    let fresh = kubectl::generate(command.clone(), bin);
    if update {
        std::fs::create_dir_all(dir)?;
        write_atomically(&file, &fresh, Some(0o755))?;
        return Ok(None);
    }
    let current = std::fs::read_to_string(&file).ok();
    let executable = std::fs::metadata(&file).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
    Ok((current.as_deref() != Some(fresh.as_str()) || !executable).then(|| file.display().to_string()))
}

/// What bash offers for `words` (the last one being completed) with the completion script
/// `script` loaded: it sources the script in a real `bash`, looks up the function it registered
/// for `words[0]` (`complete -p`) and calls it as bash's programmable completion would.
///
/// # Errors
/// bash cannot be run, or the script does not load or register a function for `words[0]`.
pub fn bash_complete(script: &Path, words: &[&str]) -> std::io::Result<Vec<String>> {
    const DRIVER: &str = r#"
        script=$1
        shift
        source "$script" || exit 1
        spec=$(complete -p "$1") || exit 1
        function=${spec#*-F }
        function=${function%% *}
        COMP_WORDS=("$@")
        COMP_CWORD=$(($# - 1))
        COMP_LINE="$*"
        COMP_POINT=${#COMP_LINE}
        previous=$1
        [ $# -ge 2 ] && previous=${COMP_WORDS[COMP_CWORD - 1]}
        "$function" "$1" "${COMP_WORDS[COMP_CWORD]}" "$previous"
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let out = std::process::Command::new("bash")
        .args(["--norc", "--noprofile", "-c", DRIVER, "bash"])
        .arg(script)
        .args(words)
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "bash could not complete with {}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}
