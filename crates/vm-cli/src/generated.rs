//! The files generated from a plugin's command line and checked in (completions, the kubectl
//! completion helper, the manual page): the one check that keeps all of them fresh.

use std::path::Path;

use crate::{completions, manpage};

/// Everything generated from a plugin's command line and checked in: `completions/BIN.*`,
/// `completions/kubectl/kubectl_complete-PLUGIN` and `man/BIN.1` under `root`. Returns the
/// stale files (none after an `update`).
///
/// # Errors
/// Rendering or writing failed.
pub fn check(command: &clap::Command, bin: &str, root: &Path, update: bool) -> std::io::Result<Vec<String>> {
    let mut stale = completions::check(command, bin, &root.join("completions"), update)?;
    stale.extend(completions::check_kubectl(
        command,
        bin,
        &root.join("completions/kubectl"),
        update,
    )?);
    stale.extend(manpage::check(command, bin, &root.join("man"), update)?);
    Ok(stale)
}
