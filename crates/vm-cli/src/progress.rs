//! Progress of a drain on stderr: a bar per migration and one overall when stderr is a
//! terminal, plain timestamped lines otherwise (logs, CI).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use vm_kube::drain::{Event, Reporter};

/// The words for an event, one line.
#[must_use]
pub fn describe(event: &Event) -> String {
    match event {
        Event::Locked { lease } => format!("lock taken ({lease})"),
        Event::Cordoned => "node cordoned".into(),
        Event::Stopping { vm, how } => format!("stopping {vm}: {how}"),
        Event::MigrationStarted {
            vm,
            migration,
            attempt,
        } => {
            format!("migrating {vm} ({migration}, try {attempt})")
        }
        Event::MigrationPhase { vm, phase } => format!("{vm}: migration {phase}"),
        Event::Migrated { vm, node } => format!("{vm} now runs on {node}"),
        Event::AlreadyGone { vm, why } => format!("{vm} already left the node ({why}): skipped"),
        Event::TargetPending { vm, message } => {
            format!("{vm}: migration target pod Pending, the scheduler says: {message}")
        }
        Event::MigrationBlocked {
            vm,
            message,
            waited_seconds,
        } => format!(
            "{vm}: BLOCKED, the migration target pod stayed Pending for {waited_seconds} s; migration cancelled, not retried. The scheduler says: {message}"
        ),
        Event::MigrationStuck { what } => what.to_string(),
        Event::MigrationFailed { vm, attempt, reason } => {
            format!("{vm}: migration try {attempt} failed: {reason}")
        }
        Event::EvictionRetry { pod, message } => {
            format!("eviction of {pod} refused for now, retrying: {message}")
        }
        Event::Evicted { pod } => format!("evicted {pod}"),
        Event::Waiting { what } => format!("waiting: {what}"),
    }
}

/// Plain lines: `[  12.3s] migrating ns/vm …`.
pub struct LineReporter {
    start: Instant,
}

impl Default for LineReporter {
    fn default() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Reporter for LineReporter {
    fn event(&self, event: &Event) {
        let _ = writeln!(
            std::io::stderr(),
            "[{:>7.1}s] {}",
            self.start.elapsed().as_secs_f64(),
            describe(event)
        );
    }
}

/// indicatif bars: one overall (VMs moved of VMs to move) and a spinner per migration.
pub struct BarReporter {
    multi: MultiProgress,
    overall: ProgressBar,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl BarReporter {
    /// Bars for `total` VMs to move.
    #[must_use]
    pub fn new(total: u64) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(total));
        overall.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} VMs off the node  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Self {
            multi,
            overall,
            bars: Mutex::new(BTreeMap::new()),
        }
    }

    fn bar(&self, vm: &str) -> ProgressBar {
        let mut bars = self
            .bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        bars.entry(vm.to_string())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix}: {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(vm.to_string());
                bar.enable_steady_tick(std::time::Duration::from_millis(200));
                bar
            })
            .clone()
    }
}

impl Reporter for BarReporter {
    fn event(&self, event: &Event) {
        match event {
            Event::MigrationStarted { vm, .. }
            | Event::MigrationPhase { vm, .. }
            | Event::TargetPending { vm, .. }
            | Event::MigrationFailed { vm, .. } => {
                self.bar(vm).set_message(describe(event));
            }
            Event::MigrationBlocked { vm, .. } => {
                self.bar(vm).abandon_with_message(describe(event));
            }
            Event::Migrated { vm, node } => {
                self.bar(vm).finish_with_message(format!("on {node}"));
                self.overall.inc(1);
            }
            Event::Stopping { vm, .. } | Event::AlreadyGone { vm, .. } => {
                self.bar(vm).finish_with_message(describe(event));
                self.overall.inc(1);
            }
            other => {
                let _ = self.multi.println(describe(other));
            }
        }
    }
}

impl Drop for BarReporter {
    fn drop(&mut self) {
        self.overall.finish();
    }
}

/// Bars on a terminal, lines otherwise.
#[must_use]
pub fn reporter(total_vms: u64) -> Box<dyn Reporter> {
    if std::io::stderr().is_terminal() {
        Box::new(BarReporter::new(total_vms))
    } else {
        Box::new(LineReporter::default())
    }
}

/// Prints, on stdout, what a run that stopped part-way did and what is still on the node, so
/// that the operator can decide to re-run (which resumes) or to undo.
pub fn print_stopped_summary(summary: &vm_kube::drain::Summary) {
    let list = |items: &[String]| {
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    println!("  migrated away:      {}", list(&summary.migrated));
    println!("  already gone:       {}", list(&summary.already_gone));
    println!("  stopped:            {}", list(&summary.stopped));
    println!("  evicted:            {}", list(&summary.evicted));
    println!("  cancelled:          {}", list(&summary.cancelled));
    let blocked: Vec<String> = summary
        .blocked
        .iter()
        .map(|b| {
            format!(
                "{} (target pod Pending for {} s; the scheduler says: {})",
                b.vm, b.waited_seconds, b.message
            )
        })
        .collect();
    println!("  blocked:            {}", list(&blocked));
    let stuck: Vec<String> = summary.stuck.iter().map(ToString::to_string).collect();
    println!("  stuck:              {}", list(&stuck));
    println!("  still on the node:  {}", list(&summary.left_on_node));
}
