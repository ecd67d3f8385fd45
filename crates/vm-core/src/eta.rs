//! How long one live migration takes: `setup + seconds_per_gib × guest memory in GiB`, fitted on
//! the cluster's own finished migrations, with a documented prior where there is no history.
//!
//! The drain and rolling planners schedule these durations over KubeVirt's parallel limits
//! (see [`crate::drain`]); this module only says how long each migration holds its slot.
//!
//! **Which time is a migration's.** A migration holds one of KubeVirt's parallel slots from the
//! moment its target pod is created (KubeVirt counts a migration as running from `Scheduling`,
//! or from `Pending` once its target pod exists) until it is `Succeeded`. Before that it waits
//! in `Pending` for a free slot, and that wait is what the planners' lane schedule already
//! models; counting it again would make the estimate grow with how busy the cluster was when
//! the history was made. So a migration's time is the span of its `phaseTransitionTimestamps`
//! from `Scheduling` to `Succeeded`: target pod scheduling and start-up, the memory copy, and
//! the hand-over, all of which a drain waits for. When `Scheduling` was not recorded, the
//! earliest recorded phase stands in for it. Only when there are no usable phase timestamps is
//! `migrationState.startTimestamp → endTimestamp` taken: that is the copy alone, a lower bound,
//! better than no sample because its slope is right.

#[cfg(test)]
mod tests;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use crate::kubevirt::VirtualMachineInstanceMigration;
use crate::snapshot::ClusterSnapshot;

/// Bytes in a GiB.
pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The prior's migration throughput when none is given, in bytes per second: 1 GiB/s, a 10 GbE
/// migration network, most of it used by one migration. The planners' policies default to it.
pub const DEFAULT_MIGRATION_BYTES_PER_SECOND: f64 = 1024.0 * 1024.0 * 1024.0;

/// Where the model's numbers come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelSource {
    /// The documented prior: too few finished migrations to fit.
    Prior,
    /// Fitted on the snapshot's finished migrations.
    History,
}

/// The duration of one migration as a line in its guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationModel {
    /// Seconds every migration takes whatever its size: target pod scheduling and start-up,
    /// the hand-over.
    pub setup_seconds: f64,
    /// Seconds per GiB of guest memory copied.
    pub seconds_per_gib: f64,
    /// How many finished migrations the fit used (0 for the prior).
    pub samples: usize,
    /// Prior or history.
    pub source: ModelSource,
}

/// One finished migration: its guest memory and how long it held its slot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Guest memory of the VMI, in bytes.
    pub memory_bytes: f64,
    /// Seconds from its first slot-holding phase to `Succeeded` (see the module comment).
    pub seconds: f64,
}

impl MigrationModel {
    /// Where the estimate comes from, for a plan's text: `None` for the prior, else
    /// `fitted on N finished migrations: S s + P s per GiB`.
    #[must_use]
    pub fn describe(&self) -> Option<String> {
        match self.source {
            ModelSource::Prior => None,
            ModelSource::History => Some(format!(
                "fitted on {} finished migrations: {:.0} s + {:.1} s per GiB",
                self.samples, self.setup_seconds, self.seconds_per_gib
            )),
        }
    }

    /// The prior's set-up time: target pod scheduled and started, domain prepared, hand-over.
    pub const PRIOR_SETUP_SECONDS: f64 = 10.0;
    /// Fewer finished migrations than this, and the prior is kept: two points always fit a line
    /// exactly, whatever the noise.
    pub const MIN_SAMPLES: usize = 3;
    /// The largest set-up a fit may claim. A working migration's target pod is up within
    /// minutes; a history that says more is dominated by a stuck pod, not by set-up.
    pub const MAX_SETUP_SECONDS: f64 = 600.0;
    /// The largest slope a fit may claim: KubeVirt aborts a copy that runs longer than
    /// `completionTimeoutPerGiB` per GiB (150 s by default since v1.4, 800 before), so no
    /// successful migration of default configuration is slower.
    pub const MAX_SECONDS_PER_GIB: f64 = 800.0;
    /// Sizes closer than this (1 MiB) count as one size: their spread cannot carry a slope.
    const MIN_SIZE_SPREAD_GIB: f64 = 1.0 / 1024.0;

    /// The documented prior, which is what the planners assumed before they had history: a fixed
    /// 10 s set-up plus the memory over `bytes_per_second` (1 GiB/s,
    /// [`DEFAULT_MIGRATION_BYTES_PER_SECOND`], when it is not a positive number). Estimates
    /// without history therefore do not change.
    #[must_use]
    pub fn prior(bytes_per_second: f64) -> Self {
        let rate = if bytes_per_second.is_finite() && bytes_per_second > 0.0 {
            bytes_per_second
        } else {
            DEFAULT_MIGRATION_BYTES_PER_SECOND
        };
        Self {
            setup_seconds: Self::PRIOR_SETUP_SECONDS,
            seconds_per_gib: GIB / rate,
            samples: 0,
            source: ModelSource::Prior,
        }
    }

    /// The model fitted on the finished migrations of `snapshot` (see [`samples`]), or `prior`
    /// when there are too few.
    #[must_use]
    pub fn fit(snapshot: &ClusterSnapshot, prior: Self) -> Self {
        Self::fit_samples(&samples(snapshot), prior)
    }

    /// The least-squares line through `samples` (seconds against GiB), within the bounds above.
    ///
    /// - Fewer than [`Self::MIN_SAMPLES`]: `prior`.
    /// - All of one size: no slope can be read, so the prior's slope stays and the set-up is the
    ///   mean of what it leaves unexplained.
    /// - A slope out of bounds (noise can make it negative) is clamped, and the set-up is then
    ///   refitted as the mean residual under the clamped slope, so the line still goes through
    ///   the samples' average.
    #[must_use]
    pub fn fit_samples(samples: &[Sample], prior: Self) -> Self {
        if samples.len() < Self::MIN_SAMPLES {
            return prior;
        }
        let points: Vec<(f64, f64)> = samples
            .iter()
            .map(|s| (s.memory_bytes / GIB, s.seconds))
            .collect();
        let slope = least_squares_slope(&points)
            .map_or(prior.seconds_per_gib, |m| m.clamp(0.0, Self::MAX_SECONDS_PER_GIB));
        Self {
            setup_seconds: mean_residual(&points, slope).clamp(0.0, Self::MAX_SETUP_SECONDS),
            seconds_per_gib: slope,
            samples: samples.len(),
            source: ModelSource::History,
        }
    }

    /// Seconds one migration of a guest with `memory_bytes` of memory holds its slot.
    #[must_use]
    pub fn seconds(&self, memory_bytes: f64) -> f64 {
        self.setup_seconds + memory_bytes / GIB * self.seconds_per_gib
    }
}

/// The slope of the least-squares line through `points`, or `None` when their `x` do not
/// spread over at least two sizes.
fn least_squares_slope(points: &[(f64, f64)]) -> Option<f64> {
    let (min, max) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(x, _)| {
            (lo.min(x), hi.max(x))
        });
    if max - min < MigrationModel::MIN_SIZE_SPREAD_GIB {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|&(x, y)| (x - mean_x) * (y - mean_y)).sum();
    let sxx: f64 = points.iter().map(|&(x, _)| (x - mean_x).powi(2)).sum();
    Some(sxy / sxx)
}

/// The mean of `y - slope × x`: the intercept that puts the line through the points' average.
fn mean_residual(points: &[(f64, f64)], slope: f64) -> f64 {
    points.iter().map(|&(x, y)| y - slope * x).sum::<f64>() / points.len() as f64
}

/// Every `Succeeded` migration of `snapshot` whose duration can be read and whose VMI (same
/// namespace, `spec.vmiName`) is still there with a known guest memory. Anything else is
/// skipped, not guessed: unparsable or missing timestamps, a duration that is not positive,
/// a VMI that is gone.
#[must_use]
pub fn samples(snapshot: &ClusterSnapshot) -> Vec<Sample> {
    snapshot
        .migrations
        .iter()
        .filter_map(|m| {
            Some(Sample {
                memory_bytes: vmi_memory(snapshot, m)?,
                seconds: succeeded_seconds(m)?,
            })
        })
        .collect()
}

/// The guest memory of the VMI that `migration` moved, if the VMI is still in the snapshot.
fn vmi_memory(snapshot: &ClusterSnapshot, migration: &VirtualMachineInstanceMigration) -> Option<f64> {
    let namespace = migration.metadata.namespace.as_deref().unwrap_or("default");
    snapshot
        .vmis
        .iter()
        .find(|v| {
            v.metadata.name.as_deref() == Some(migration.spec.vmi_name.as_str())
                && v.metadata.namespace.as_deref().unwrap_or("default") == namespace
        })
        .and_then(|v| crate::resources::guest_size(&v.spec, None).memory)
        .filter(|m| m.is_finite() && *m > 0.0)
}

/// How long a `Succeeded` migration held its slot, in seconds; `None` for any other phase or
/// when no positive duration can be read.
#[must_use]
pub fn succeeded_seconds(migration: &VirtualMachineInstanceMigration) -> Option<f64> {
    let status = migration.status.as_ref()?;
    if status.phase.as_deref() != Some("Succeeded") {
        return None;
    }
    phase_span(&status.phase_transition_timestamps).or_else(|| copy_span(status.migration_state.as_ref()?))
}

/// `Scheduling` (else the earliest recorded phase) to `Succeeded`, from the phase transitions.
fn phase_span(transitions: &[Value]) -> Option<f64> {
    let parsed: Vec<(&str, Timestamp)> = transitions
        .iter()
        .filter_map(|t| {
            let phase = t.get("phase")?.as_str()?;
            let at = t.get("phaseTransitionTimestamp")?.as_str()?.parse().ok()?;
            Some((phase, at))
        })
        .collect();
    let at = |phase: &str| parsed.iter().find(|(p, _)| *p == phase).map(|(_, t)| *t);
    let end = at("Succeeded")?;
    let start = at("Scheduling").or_else(|| {
        parsed
            .iter()
            .filter(|(p, _)| *p != "Succeeded")
            .map(|(_, t)| *t)
            .min()
    })?;
    positive_seconds(start, end)
}

/// `startTimestamp` to `endTimestamp` of a `migrationState` that completed without failing.
fn copy_span(state: &Value) -> Option<f64> {
    if state.get("completed").and_then(Value::as_bool) != Some(true)
        || state.get("failed").and_then(Value::as_bool) == Some(true)
    {
        return None;
    }
    let time = |key: &str| state.get(key)?.as_str()?.parse::<Timestamp>().ok();
    positive_seconds(time("startTimestamp")?, time("endTimestamp")?)
}

/// Seconds from `start` to `end`, when `end` is after `start`.
fn positive_seconds(start: Timestamp, end: Timestamp) -> Option<f64> {
    let seconds = end.duration_since(start).as_secs_f64();
    (seconds > 0.0).then_some(seconds)
}
