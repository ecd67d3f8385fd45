//! Shared command-line UX of the kubectl VM plugins: kubectl's flags, exit statuses, error
//! output with hints, colour and logging set-up. Only data goes to stdout; everything for the
//! person at the terminal goes to stderr.

pub mod args;
mod atomic;
pub mod completions;
pub mod exit;
pub mod generated;
pub mod manpage;
pub mod outcome;
pub mod progress;
pub mod report;
pub mod session;
pub mod structured;
pub mod style;
