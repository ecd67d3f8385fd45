//! `--migration-timeout`: a migration that has not succeeded within its VM's time is stuck.
//! It is cancelled (its VirtualMachineInstanceMigration deleted: KubeVirt aborts it, and the VM
//! keeps running on its node) and reported with its last phase and what the scheduler said of
//! its target pod. Then either the drain stops, resumable, or (`--on-stuck shutdown`) the VM
//! is stopped as `--shutdown-non-migratable` stops a VM, and recorded for restart.
//!
//! The default time of each VM is KubeVirt's own completion timeout for it (see
//! `vm_core::drain::VmPlan::migration_timeout_seconds`), counted from when this run started or
//! adopted the migration.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A migration cancelled for taking too long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StuckVm {
    /// `ns/name`.
    pub vm: String,
    /// The migration's last phase.
    pub phase: String,
    /// Seconds it ran before it was cancelled.
    pub waited_seconds: u64,
    /// The scheduler's last words about its target pod, if it said any.
    pub scheduler: Option<String>,
    /// Whether the VM was then stopped (`--on-stuck shutdown`).
    pub stopped: bool,
}

impl std::fmt::Display for StuckVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is STUCK: its migration was still {} after {} s (--migration-timeout) and was cancelled",
            self.vm,
            if self.phase.is_empty() {
                "unstarted"
            } else {
                &self.phase
            },
            self.waited_seconds
        )?;
        if let Some(s) = &self.scheduler {
            write!(f, "; the scheduler said of its target pod: {s}")?;
        }
        if self.stopped {
            f.write_str("; the VM was stopped (--on-stuck shutdown), `--uncordon` restarts it")?;
        }
        Ok(())
    }
}

/// When each migration in flight must have succeeded.
#[derive(Debug, Default)]
pub struct Deadlines {
    at: BTreeMap<String, (Instant, Instant)>,
}

impl Deadlines {
    /// The migration of `vm` started (or was adopted) at `now` and may take `timeout`.
    pub fn start(&mut self, vm: &str, now: Instant, timeout: Option<Duration>) {
        match timeout {
            Some(t) => {
                self.at.insert(vm.to_string(), (now, now + t));
            }
            None => {
                self.at.remove(vm);
            }
        }
    }

    /// The migration of `vm` ended (succeeded, failed, cancelled).
    pub fn end(&mut self, vm: &str) {
        self.at.remove(vm);
    }

    /// The earliest deadline.
    #[must_use]
    pub fn next(&self) -> Option<Instant> {
        self.at.values().map(|(_, d)| *d).min()
    }

    /// The VMs past their deadline at `now`, with how long their migration ran; they are
    /// forgotten.
    pub fn expired(&mut self, now: Instant) -> Vec<(String, Duration)> {
        let gone: Vec<(String, Duration)> = self
            .at
            .iter()
            .filter(|(_, (_, d))| *d <= now)
            .map(|(vm, (start, _))| (vm.clone(), now.duration_since(*start)))
            .collect();
        for (vm, _) in &gone {
            self.at.remove(vm);
        }
        gone
    }
}

/// The time a VM's migration may take: `--migration-timeout` if given, else KubeVirt's
/// completion timeout for it, else none.
#[must_use]
pub fn timeout_for(explicit: Option<Duration>, kubevirt_seconds: Option<u64>) -> Option<Duration> {
    explicit.or_else(|| kubevirt_seconds.map(Duration::from_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_migration_past_its_time_expires_once_and_an_ended_one_never() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.start("ns/a", t0, Some(Duration::from_secs(10)));
        d.start("ns/b", t0, Some(Duration::from_secs(5)));
        d.start("ns/c", t0, None);
        assert_eq!(d.next(), Some(t0 + Duration::from_secs(5)));
        d.end("ns/b");
        assert_eq!(d.next(), Some(t0 + Duration::from_secs(10)));
        assert!(d.expired(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(
            d.expired(t0 + Duration::from_secs(12)),
            [("ns/a".to_string(), Duration::from_secs(12))]
        );
        assert!(d.expired(t0 + Duration::from_secs(60)).is_empty());
        assert_eq!(d.next(), None);
    }

    #[test]
    fn the_explicit_timeout_wins_over_kubevirts() {
        assert_eq!(
            timeout_for(Some(Duration::from_secs(30)), Some(300)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(timeout_for(None, Some(300)), Some(Duration::from_secs(300)));
        assert_eq!(timeout_for(None, None), None);
    }

    #[test]
    fn a_stuck_vm_is_reported_with_its_phase_and_the_schedulers_words() {
        let s = StuckVm {
            vm: "ns/a".into(),
            phase: "Scheduling".into(),
            waited_seconds: 30,
            scheduler: Some("0/3 nodes are available".into()),
            stopped: false,
        };
        let text = s.to_string();
        assert!(
            text.contains("ns/a is STUCK") && text.contains("still Scheduling after 30 s"),
            "{text}"
        );
        assert!(text.contains("0/3 nodes are available"), "{text}");
    }
}
