//! Writing a generated file in one rename, so that no reader sees it half-written.

use std::path::Path;

/// Replaces `file` with `text` (and `mode`) in one rename, so that a test reading it while
/// another test regenerates it never sees it half-written.
///
/// # Errors
/// Writing, setting the mode or renaming failed.
pub(crate) fn write_atomically(file: &Path, text: &str, mode: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    if let Some(mode) = mode {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    }
    std::fs::rename(&tmp, file)
}
