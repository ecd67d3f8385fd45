//! The migration model on real-shaped migrations: the prior, a fit that recovers a known line,
//! the fallbacks, the garbage it must not learn from, and the planners that use it.

use k8s_openapi::jiff::SignedDuration;

use super::*;
use crate::drain::{DrainPolicy, plan_drain};
use crate::manifest::load_into;
use crate::rolling::{RollingPolicy, plan_rolling};

const T0: &str = "2025-06-01T12:00:00Z";

/// RFC 3339 for `seconds` after [`T0`].
fn at(seconds: i64) -> String {
    (T0.parse::<Timestamp>().unwrap() + SignedDuration::from_secs(seconds)).to_string()
}

fn node(name: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{kubernetes.io/hostname: {name}, kubevirt.io/schedulable: 'true'}}}}\n\
status: {{allocatable: {{cpu: '32', memory: 256Gi, pods: '110'}}, conditions: [{{type: Ready, status: 'True'}}]}}\n"
    )
}

fn vmi(name: &str, on: &str, gib: u32) -> String {
    format!(
        "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: {name}, namespace: prod, uid: uid-{name}}}\n\
spec: {{evictionStrategy: LiveMigrate, domain: {{resources: {{requests: {{memory: {gib}Gi}}}}}}}}\n\
status: {{phase: Running, nodeName: {on}, conditions: [{{type: LiveMigratable, status: 'True'}}]}}\n"
    )
}

/// A migration of VMI `vmi` in `phase`, with `(phase, seconds after T0)` transitions and a raw
/// `migrationState` (YAML flow, or empty for none).
fn migration(name: &str, vmi: &str, phase: &str, transitions: &[(&str, i64)], state: &str) -> String {
    let transitions: Vec<String> = transitions
        .iter()
        .map(|(p, s)| format!("{{phase: {p}, phaseTransitionTimestamp: '{}'}}", at(*s)))
        .collect();
    let state = if state.is_empty() {
        String::new()
    } else {
        format!(", migrationState: {state}")
    };
    format!(
        "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstanceMigration\nmetadata: {{name: {name}, namespace: prod}}\n\
spec: {{vmiName: {vmi}}}\nstatus: {{phase: {phase}, phaseTransitionTimestamps: [{}]{state}}}\n",
        transitions.join(", ")
    )
}

/// A Succeeded migration that waited `queued` seconds in Pending, then held its slot for
/// `seconds` from Scheduling to Succeeded.
fn succeeded(name: &str, vmi: &str, queued: i64, seconds: i64) -> String {
    migration(
        name,
        vmi,
        "Succeeded",
        &[
            ("Pending", 0),
            ("Scheduling", queued),
            ("Scheduled", queued + 2),
            ("Running", queued + 4),
            ("Succeeded", queued + seconds),
        ],
        "",
    )
}

fn snapshot(docs: &[String]) -> ClusterSnapshot {
    let mut s = ClusterSnapshot::default();
    load_into(&mut s, "test", &docs.concat()).unwrap();
    s
}

fn default_prior() -> MigrationModel {
    MigrationModel::prior(0.0)
}

/// VMIs of 1, 2, 4, 8 and 8 GiB on `on`, each migrated once in `5 + 3 × GiB` seconds.
fn history_5_plus_3_per_gib(on: &str) -> Vec<String> {
    let mut docs = Vec::new();
    for (i, gib) in [1, 2, 4, 8, 8].into_iter().enumerate() {
        let name = format!("h{i}");
        docs.push(vmi(&name, on, gib));
        docs.push(succeeded(
            &format!("mig-{name}"),
            &name,
            7,
            5 + 3 * i64::from(gib),
        ));
    }
    docs
}

fn assert_near(actual: f64, expected: f64) {
    assert!((actual - expected).abs() < 0.01, "{actual} is not {expected}");
}

#[test]
fn without_history_the_prior_gives_the_old_estimate() {
    let model = MigrationModel::fit(&snapshot(&[vmi("web", "node-1", 4)]), default_prior());
    assert_eq!(model.source, ModelSource::Prior);
    assert_eq!(model.samples, 0);
    assert_eq!((model.setup_seconds, model.seconds_per_gib), (10.0, 1.0));
    // The old estimate: 10 s + 4 GiB at 1 GiB/s.
    assert_eq!(model.seconds(4.0 * GIB), 14.0);
    // A throughput that is not a positive number falls back to 1 GiB/s, as before.
    assert_eq!(MigrationModel::prior(-5.0), default_prior());
    assert_eq!(
        MigrationModel::prior(DrainPolicy::DEFAULT_MIGRATION_BYTES_PER_SECOND),
        default_prior()
    );
    // 512 MiB/s: 2 s per GiB.
    assert_eq!(MigrationModel::prior(GIB / 2.0).seconds(4.0 * GIB), 18.0);
}

#[test]
fn a_drain_without_history_keeps_the_old_estimate() {
    let docs = [node("node-1"), node("node-2"), vmi("web", "node-1", 4)];
    let p = plan_drain(&snapshot(&docs), "node-1", &DrainPolicy::default()).unwrap();
    assert_eq!(p.estimated_seconds, 14);
    assert_eq!(p.migration_model, default_prior());
}

#[test]
fn five_migrations_on_a_known_line_recover_it() {
    let model = MigrationModel::fit(&snapshot(&history_5_plus_3_per_gib("node-2")), default_prior());
    assert_eq!(model.source, ModelSource::History);
    assert_eq!(model.samples, 5);
    assert_near(model.setup_seconds, 5.0);
    assert_near(model.seconds_per_gib, 3.0);
    assert_near(model.seconds(16.0 * GIB), 53.0);
}

#[test]
fn the_clock_starts_when_the_migration_gets_its_slot_not_while_it_queues() {
    // Queued 100 s in Pending behind other migrations, then 30 s from Scheduling to Succeeded.
    let m = snapshot(&[succeeded("m", "x", 100, 30)]);
    assert_eq!(succeeded_seconds(&m.migrations[0]), Some(30.0));
}

#[test]
fn without_scheduling_the_earliest_recorded_phase_starts_the_clock() {
    let m = snapshot(&[migration(
        "m",
        "x",
        "Succeeded",
        &[("Running", 12), ("Pending", 3), ("Succeeded", 40)],
        "",
    )]);
    assert_eq!(succeeded_seconds(&m.migrations[0]), Some(37.0));
}

#[test]
fn without_phase_timestamps_the_copy_time_is_taken() {
    let state = format!(
        "{{completed: true, startTimestamp: '{}', endTimestamp: '{}'}}",
        at(10),
        at(34)
    );
    let m = snapshot(&[migration("m", "x", "Succeeded", &[], &state)]);
    assert_eq!(succeeded_seconds(&m.migrations[0]), Some(24.0));
}

#[test]
fn samples_all_of_one_size_keep_the_prior_slope() {
    let mut docs = Vec::new();
    for (i, seconds) in [20, 22, 24].into_iter().enumerate() {
        let name = format!("v{i}");
        docs.push(vmi(&name, "node-2", 4));
        docs.push(succeeded(&format!("mig-{name}"), &name, 0, seconds));
    }
    let model = MigrationModel::fit(&snapshot(&docs), default_prior());
    assert_eq!(model.source, ModelSource::History);
    assert_eq!(model.samples, 3);
    assert_eq!(model.seconds_per_gib, 1.0, "the prior's 1 GiB/s");
    // Mean of 20, 22, 24 less 4 GiB at the prior's slope.
    assert_near(model.setup_seconds, 18.0);
}

#[test]
fn fewer_than_three_samples_keep_the_prior() {
    let docs = &history_5_plus_3_per_gib("node-2")[..4];
    let model = MigrationModel::fit(&snapshot(docs), default_prior());
    assert_eq!(model, default_prior());
}

#[test]
fn a_slope_that_noise_makes_negative_is_clamped_and_the_setup_refitted() {
    let points = [(1.0, 30.0), (2.0, 20.0), (3.0, 10.0)];
    let samples: Vec<Sample> = points
        .iter()
        .map(|&(gib, seconds)| Sample {
            memory_bytes: gib * GIB,
            seconds,
        })
        .collect();
    let model = MigrationModel::fit_samples(&samples, default_prior());
    assert_eq!(model.seconds_per_gib, 0.0);
    assert_near(model.setup_seconds, 20.0);
}

#[test]
fn absurd_histories_are_held_to_the_bounds() {
    let samples: Vec<Sample> = [(1.0, 5_000.0), (2.0, 10_000.0), (3.0, 15_000.0)]
        .iter()
        .map(|&(gib, seconds)| Sample {
            memory_bytes: gib * GIB,
            seconds,
        })
        .collect();
    let model = MigrationModel::fit_samples(&samples, default_prior());
    assert_eq!(model.seconds_per_gib, MigrationModel::MAX_SECONDS_PER_GIB);
    assert_eq!(model.setup_seconds, MigrationModel::MAX_SETUP_SECONDS);
}

#[test]
fn failed_timeless_orphaned_and_backwards_migrations_are_ignored() {
    // Three good samples on the line 5 + 3 × GiB.
    let mut docs = Vec::new();
    for (name, gib) in [("a", 1), ("b", 2), ("c", 4)] {
        docs.push(vmi(name, "node-2", gib));
        docs.push(succeeded(&format!("mig-{name}"), name, 0, 5 + 3 * i64::from(gib)));
    }
    // Each of these would pull the line far off if it were read.
    docs.push(vmi("f", "node-2", 2));
    // Failed, though its copy says it completed: the phase decides.
    let copied = format!(
        "{{completed: true, startTimestamp: '{}', endTimestamp: '{}'}}",
        at(0),
        at(900)
    );
    docs.push(migration(
        "mig-failed",
        "f",
        "Failed",
        &[("Scheduling", 0), ("Failed", 900)],
        &copied,
    ));
    docs.push(migration("mig-timeless", "f", "Succeeded", &[], ""));
    docs.push(migration(
        "mig-garbled",
        "f",
        "Succeeded",
        &[("Scheduling", 0)],
        "{completed: true, startTimestamp: 'yesterday', endTimestamp: 'today'}",
    ));
    docs.push(succeeded("mig-orphan", "gone", 0, 900));
    docs.push(migration(
        "mig-backwards",
        "f",
        "Succeeded",
        &[("Scheduling", 900), ("Succeeded", 0)],
        "",
    ));
    let state = format!(
        "{{completed: true, failed: true, startTimestamp: '{}', endTimestamp: '{}'}}",
        at(0),
        at(900)
    );
    docs.push(migration("mig-copy-failed", "f", "Succeeded", &[], &state));
    let s = snapshot(&docs);
    assert_eq!(s.migrations.len(), 9);
    let samples = samples(&s);
    assert_eq!(
        samples.iter().map(|x| x.seconds).collect::<Vec<_>>(),
        [8.0, 11.0, 17.0]
    );
    let model = MigrationModel::fit(&s, default_prior());
    assert_eq!(model.samples, 3);
    assert_near(model.setup_seconds, 5.0);
    assert_near(model.seconds_per_gib, 3.0);
}

#[test]
fn a_drain_plan_estimates_with_the_fitted_model_and_shows_it() {
    let mut docs = vec![node("node-1"), node("node-2"), node("node-3")];
    docs.extend(history_5_plus_3_per_gib("node-3"));
    docs.push(vmi("big-1", "node-1", 8));
    docs.push(vmi("big-2", "node-1", 8));
    docs.push(vmi("small", "node-1", 2));
    let p = plan_drain(&snapshot(&docs), "node-1", &DrainPolicy::default()).unwrap();
    assert!(p.feasible, "{:?}", p.blockers);
    // 5 + 3 × 8 = 29 s for each big one, 5 + 3 × 2 = 11 s for the small one. Two lanes (two
    // outbound migrations per node): the big ones take one each, the small one follows:
    // 29 + 11 = 40 s. The prior would say 18 + 12 = 30 s.
    assert_eq!(p.estimated_seconds, 40);
    let json = serde_json::to_value(&p).unwrap();
    let model = &json["migrationModel"];
    assert_eq!(model["source"], "history");
    assert_eq!(model["samples"], 5);
    assert_near(model["setupSeconds"].as_f64().unwrap(), 5.0);
    assert_near(model["secondsPerGib"].as_f64().unwrap(), 3.0);
    assert_eq!(json["estimatedSeconds"], 40);
}

#[test]
fn a_rolling_round_estimates_every_step_with_the_model_fitted_once() {
    let mut docs = vec![node("r1"), node("r2"), node("spare")];
    docs.extend(history_5_plus_3_per_gib("spare"));
    docs.push(vmi("a", "r1", 8));
    docs.push(vmi("b", "r2", 4));
    let round = ["r1".to_string(), "r2".to_string()];
    let p = plan_rolling(&snapshot(&docs), &round, &RollingPolicy::default()).unwrap();
    assert!(p.feasible, "{:#?}", p.failing_step);
    assert_eq!(p.migration_model.source, ModelSource::History);
    let seconds: Vec<(String, u64)> = p
        .steps
        .iter()
        .map(|s| (s.node.clone(), s.migration_seconds))
        .collect();
    // r2's 4 GiB VM first (least memory): 5 + 12 = 17 s; then r1's 8 GiB: 5 + 24 = 29 s.
    assert_eq!(seconds, [("r2".to_string(), 17), ("r1".to_string(), 29)]);
    assert_eq!(p.estimated_seconds, 17 + 29 + 2 * 300);
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["migrationModel"]["source"], "history");
}
