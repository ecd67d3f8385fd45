//! Starting and stopping the sandbox's processes.
//!
//! `vm-sandbox up` leaves its processes running in the background and records their PIDs;
//! `down` stops a recorded PID only if its command line still names the state directory,
//! so a PID reused by an unrelated process is never signalled. The test fixture keeps the
//! children and stops them on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{Error, Result};

/// A process the sandbox started.
#[derive(Debug)]
pub struct ManagedProcess {
    /// Short name (etcd, kube-apiserver, ...), also the PID and log file name.
    pub name: String,
    /// Its PID.
    pub pid: u32,
    /// Its log file.
    pub log: PathBuf,
    child: Option<Child>,
}

/// Starts `program` with `args`, stdout and stderr appended to `log_dir/NAME.log`, in its
/// own process group (a Ctrl-C in the terminal that ran `up` must not stop the sandbox).
pub fn spawn(name: &str, program: &Path, args: &[String], log_dir: &Path) -> Result<ManagedProcess> {
    use std::os::unix::process::CommandExt;
    let log = log_dir.join(format!("{name}.log"));
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| Error::io(format!("opening the log of {name}"), &log, e))
    };
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(open()?)
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Process {
            process: name.into(),
            message: format!("cannot start {}: {e}", program.display()),
        })?;
    Ok(ManagedProcess {
        name: name.into(),
        pid: child.id(),
        log,
        child: Some(child),
    })
}

impl ManagedProcess {
    /// Fails with the tail of the log if the process has already exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            return Err(Error::Process {
                process: self.name.clone(),
                message: format!(
                    "exited early ({status}); last log lines:\n{}",
                    log_tail(&self.log, 25)
                ),
            });
        }
        Ok(())
    }

    /// Lets the process outlive this handle (for `vm-sandbox up`).
    pub fn detach(mut self) -> u32 {
        self.child.take();
        self.pid
    }

    /// Stops the process: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => return,
                    Ok(None) if Instant::now() >= deadline => break,
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Writes `pids_dir/NAME.pid`.
pub fn write_pid(pids_dir: &Path, name: &str, pid: u32) -> Result<()> {
    let path = pids_dir.join(format!("{name}.pid"));
    std::fs::write(&path, format!("{pid}\n")).map_err(|e| Error::io("writing a PID file", &path, e))
}

/// Reads the recorded PIDs, as (name, pid).
pub fn read_pids(pids_dir: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(pids_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(stem) = name.strip_suffix(".pid")
                && let Ok(text) = std::fs::read_to_string(e.path())
                && let Ok(pid) = text.trim().parse()
            {
                out.push((stem.to_string(), pid));
            }
        }
    }
    out
}

/// Whether `pid` is a live (not zombie) process whose command line contains `marker`.
pub fn is_ours(pid: u32, marker: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state is the first field after the parenthesised command name.
    let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
    if matches!(state, None | Some('Z') | Some('X')) {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " ").contains(marker))
        .unwrap_or(false)
}

/// Stops a recorded process if it is still ours: SIGTERM, SIGKILL after `grace`.
/// Returns whether it was running.
pub fn stop_recorded(pid: u32, marker: &str, grace: Duration) -> bool {
    if !is_ours(pid, marker) {
        return false;
    }
    let target = Pid::from_raw(pid as i32);
    let _ = kill(target, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !is_ours(pid, marker) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if is_ours(pid, marker) {
        let _ = kill(target, Signal::SIGKILL);
    }
    true
}
