//! Exit statuses, the same meaning in every plugin.

use std::process::ExitCode;

/// Why a plugin exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: done; nothing at or above the threshold; plan feasible.
    Success,
    /// 1: findings at or above `--fail-on`, or a plan that is blocked; nothing changed.
    Findings,
    /// 2: usage error, unreadable input, or a cluster error.
    Error,
    /// 3: stopped part-way (timeout, interrupt); the state was reported.
    Partial,
}

impl ExitStatus {
    /// The process exit code.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Findings => 1,
            Self::Error => 2,
            Self::Partial => 3,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        Self::from(status.code())
    }
}
