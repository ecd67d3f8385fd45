//! Whether to colour output: only on a terminal, and never when `NO_COLOR` is set.

use std::io::IsTerminal;

fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Colour for stdout.
#[must_use]
pub fn color_enabled_stdout() -> bool {
    !no_color() && std::io::stdout().is_terminal()
}

/// Colour for stderr.
#[must_use]
pub fn color_enabled_stderr() -> bool {
    !no_color() && std::io::stderr().is_terminal()
}
