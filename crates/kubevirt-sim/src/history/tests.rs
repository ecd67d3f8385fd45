//! Unit tests of the record of launcher runs (`history.rs`).

use super::*;

/// A run of `vmi` (object `vmi_uid`) from `start` to `stop` seconds after a base time.
fn run(vmi: &str, vmi_uid: &str, start: i64, stop: Option<i64>, job: Option<&str>) -> Run {
    let base: jiff::Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
    let at = |s: i64| base + jiff::SignedDuration::from_secs(s);
    Run {
        namespace: "default".into(),
        vmi: vmi.into(),
        vmi_uid: vmi_uid.into(),
        pod: format!("virt-launcher-{vmi}-{start}"),
        pod_uid: format!("uid-{vmi}-{start}"),
        node: "node-1".into(),
        migration_job_uid: job.map(String::from),
        started: at(start),
        stopped: stop.map(at),
        stop_reason: None,
    }
}

#[test]
fn two_copies_of_one_vmi_running_at_once_are_reported() {
    let first = run("db", "u1", 0, Some(60), None);
    let second = run("db", "u2", 30, None, None);
    let pairs = overlapping_runs(&[second.clone(), first.clone()]);
    assert_eq!(pairs, vec![(first, second)]);
}

#[test]
fn runs_one_after_the_other_or_of_other_vmis_are_not() {
    let first = run("db", "u1", 0, Some(60), None);
    let after = run("db", "u2", 60, None, None);
    let other = run("web", "u3", 10, None, None);
    assert!(overlapping_runs(&[first, after, other]).is_empty());
}

#[test]
fn a_live_migration_overlap_is_not_a_split_brain_but_a_restart_is() {
    let source = run("db", "u1", 0, Some(60), None);
    let target = run("db", "u1", 50, None, Some("job-1"));
    assert!(overlapping_runs(&[source.clone(), target]).is_empty());
    // A migration target of another VMI object of the same name is a second copy.
    let foreign = run("db", "u2", 50, None, Some("job-2"));
    assert_eq!(overlapping_runs(&[source, foreign]).len(), 1);
}

/// The launcher pod `virt-launcher-db-x` (UID p1) of the VMI `db` (UID u1).
fn launcher_pod() -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "virt-launcher-db-x", "namespace": "default", "uid": "p1",
            "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": "u1"},
            "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "name": "db", "uid": "u1"}]},
    }))
    .unwrap()
}

#[test]
fn events_pair_into_runs_and_round_trip_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let pod = launcher_pod();
    let mut rec = Recorder::open(Some(path(dir.path())));
    let t0: jiff::Timestamp = "2025-01-01T00:00:00.123Z".parse().unwrap();
    rec.started(&pod, "node-1", t0);
    rec.started(&pod, "node-1", t0); // once only
    rec.observe(
        &[std::sync::Arc::new(pod.clone())],
        &HashSet::from(["node-1".to_string()]),
        &HashSet::new(),
    );
    assert!(rec.powered_off("p1"));
    let events = read_events(dir.path());
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].at, "2025-01-01T00:00:00.123Z");
    assert_eq!(events[1].reason, Some(StopReason::NodeDown));
    let runs = read(dir.path());
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].vmi.as_str(), runs[0].node.as_str()), ("db", "node-1"));
    assert!(runs[0].stopped.is_some());
    // A restarted recorder remembers the powered-off pod.
    assert!(Recorder::open(Some(path(dir.path()))).powered_off("p1"));
}

#[test]
fn a_partitioned_node_keeps_its_guests_running_until_it_heals() {
    let dir = tempfile::tempdir().unwrap();
    let pod = launcher_pod();
    let none = HashSet::new();
    let node_1 = HashSet::from(["node-1".to_string()]);
    let mut rec = Recorder::open(Some(path(dir.path())));
    rec.started(&pod, "node-1", jiff::Timestamp::now());
    // Force-deleted from the API while node-1 is cut off: it still runs there.
    rec.observe(&[], &none, &node_1);
    assert!(rec.is_running("p1"));
    assert_eq!(read_events(dir.path()).len(), 1);
    assert_eq!(read(dir.path())[0].stopped, None);
    // Healed: its kubelet sees the pod is gone and kills it.
    rec.observe(&[], &none, &none);
    assert!(!rec.is_running("p1"));
    let runs = read(dir.path());
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].stop_reason, Some(StopReason::Deleted));

    // A partitioned node that is powered off stops its guests all the same.
    let mut other = Recorder::open(None);
    other.started(&pod, "node-1", jiff::Timestamp::now());
    other.observe(&[std::sync::Arc::new(pod.clone())], &node_1, &node_1);
    assert!(other.powered_off("p1"));
}
