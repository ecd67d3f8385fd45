//! The operator's commands: `--exec` (the maintenance of a node) and `--gate` (a health check
//! after it), run by `sh -c` with `NODE` set, their output passed through to this terminal.

use std::process::Stdio;

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandEnd {
    /// Exit status 0.
    Succeeded,
    /// Another status, or killed by a signal (`None`).
    Failed(Option<i32>),
}

impl CommandEnd {
    /// How a failed command ended, in words: `exited with 3`, `was killed by a signal`.
    #[must_use]
    pub fn failure_words(&self) -> Option<String> {
        match self {
            CommandEnd::Succeeded => None,
            CommandEnd::Failed(Some(code)) => Some(format!("exited with {code}")),
            CommandEnd::Failed(None) => Some("was killed by a signal".into()),
        }
    }
}

/// Runs `command` with `NODE=node` until it ends. Its stdout goes to this process's stderr,
/// so that the plugin's own stdout stays a clean report (and `-o json` one document).
///
/// # Errors
/// The shell cannot be started.
pub async fn run(command: &str, node: &str) -> Result<CommandEnd, String> {
    // The command writes to this process's stderr (a duplicate of its descriptor).
    let stderr = Stdio::from(std::io::stderr());
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("NODE", node)
        .stdin(Stdio::null())
        .stdout(stderr)
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| format!("cannot run `{command}` with sh: {e}"))?;
    Ok(if status.success() {
        CommandEnd::Succeeded
    } else {
        CommandEnd::Failed(status.code())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_sees_its_node_and_its_status_decides() {
        assert_eq!(run("test \"$NODE\" = n1", "n1").await, Ok(CommandEnd::Succeeded));
        assert_eq!(
            run("test \"$NODE\" = n1", "n2").await,
            Ok(CommandEnd::Failed(Some(1)))
        );
        assert_eq!(run("exit 7", "n1").await, Ok(CommandEnd::Failed(Some(7))));
    }
}
