//! Manual pages (roff) generated from a plugin's clap definition, and the check that keeps the
//! checked-in files in `man/` fresh: the release archive ships them, so `man kubectl-vm_audit`
//! says what `--help` says.

use std::path::Path;

/// The manual page of `command` (section 1); the plugins name their commands after their
/// executables (`kubectl-vm_audit`), which is the page's name.
///
/// # Errors
/// Rendering failed (clap_mangen writes to memory, so only on a malformed command).
pub fn generate(command: clap::Command) -> std::io::Result<String> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(command).render(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Compares (or, with `update`, rewrites) `dir/BIN.1`; returns it when it is stale.
///
/// # Errors
/// Rendering or writing failed.
pub fn check(
    command: &clap::Command,
    bin: &str,
    dir: &Path,
    update: bool,
) -> std::io::Result<Option<String>> {
    let file = dir.join(format!("{bin}.1"));
    let fresh = generate(command.clone())?;
    if update {
        std::fs::create_dir_all(dir)?;
        crate::atomic::write_atomically(&file, &fresh, None)?;
        return Ok(None);
    }
    let current = std::fs::read_to_string(&file).ok();
    Ok((current.as_deref() != Some(fresh.as_str())).then(|| file.display().to_string()))
}
