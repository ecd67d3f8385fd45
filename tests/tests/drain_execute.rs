//! `kubectl vm-drain-safe NODE` executes on the sandbox: VMs leave by live migration within
//! KubeVirt's limits, the node ends cordoned and empty, `--uncordon` undoes it; a second drain
//! of the same node is refused; a non-migratable VM is stopped and brought back on request.

use std::process::Stdio;
use std::time::Duration;

use kubevirt_sim::{Sandbox, SandboxConfig};
use vm_e2e::{
    kubectl, migration_phases, plugin_bin, run_plugin, start_vms_on_node_1, vm_domain, vmi_placements,
};

/// A LiveMigrate VM of 512Mi on a masquerade pod interface (the default bridge binding does
/// not live-migrate); `extra` is appended to its template's spec.
fn vm(name: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {{name: {name}, namespace: default}}\n\
spec:\n  runStrategy: {}\n  template:\n    spec:\n      evictionStrategy: LiveMigrate\n{}{extra}",
        if extra.contains("RerunOnFailure") {
            "RerunOnFailure"
        } else {
            "Always"
        },
        vm_domain("512Mi")
    )
}

/// A VMI ReplicaSet `pool` of `replicas` LiveMigrate members.
fn replica_set(replicas: u32) -> String {
    let head = "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstanceReplicaSet\nmetadata: {name: pool, namespace: default}\n";
    let selector =
        "  selector: {matchLabels: {app: pool}}\n  template:\n    metadata: {labels: {app: pool}}\n";
    let spec = "    spec: {evictionStrategy: LiveMigrate, domain: {resources: {requests: {memory: 512Mi}}, devices: {interfaces: [{name: default, masquerade: {}}]}}, networks: [{name: default, pod: {}}]}\n";
    format!("{head}spec:\n  replicas: {replicas}\n{selector}{spec}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_live_migrate_vms_drains_within_the_limits_and_uncordons() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    // Ten VMs and two members of a VMI ReplicaSet on node-1; a third member elsewhere.
    let names: Vec<String> = (1..=10).map(|i| format!("vm-{i}")).collect();
    let manifests: String = names.iter().map(|n| vm(n, "")).collect();
    start_vms_on_node_1(&kc, &format!("{manifests}{}", replica_set(2)), 12);
    let _ = kubectl(&kc, &["cordon", "node-1"]);
    let _ = kubectl(
        &kc,
        &[
            "patch",
            "vmirs",
            "pool",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"replicas":3}}"#,
        ],
    );
    let mut elsewhere = None;
    for _ in 0..60 {
        elsewhere = vmi_placements(&kc)
            .into_iter()
            .find(|e| e.starts_with("pool") && !e.ends_with("/node-1") && e.contains("=Running/"));
        if elsewhere.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let elsewhere = elsewhere.expect("the third replica runs on node-2 or node-3");
    let _ = kubectl(&kc, &["uncordon", "node-1"]);

    // The plan has room for all twelve: the scheduler must then place every target pod.
    let (code, plan) = vm_e2e::drain_plan(&kc, "node-1");
    assert_eq!(code, Some(0), "{plan:#}");
    assert_eq!(plan["vms"].as_array().unwrap().len(), 12, "{plan:#}");
    assert!(
        plan["vms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["action"] == "migrate"),
        "{plan:#}"
    );

    // Watch the number of migrations past Pending while the drain runs.
    let kc_watch = kc.clone();
    let watcher = std::thread::spawn(move || {
        let mut max_running = 0;
        for _ in 0..600 {
            let running = migration_phases(&kc_watch)
                .iter()
                .filter(|p| {
                    matches!(
                        p.as_str(),
                        "Scheduling" | "Scheduled" | "PreparingTarget" | "TargetReady" | "Running"
                    )
                })
                .count();
            max_running = max_running.max(running);
            let done = kubectl(
                &kc_watch,
                &["get", "node", "node-1", "-o", "jsonpath={.metadata.annotations}"],
            );
            if done.contains("drain-finished") {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        max_running
    });

    let second = std::process::Command::new(plugin_bin("kubectl-vm_drain_safe"))
        .env_remove("KUBECONFIG")
        .args([
            "--kubeconfig",
            kc.to_str().unwrap(),
            "node-1",
            "--yes",
            "--timeout",
            "5m",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A second drain of the same node while the first holds the lock is refused.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let refused = run_plugin("kubectl-vm_drain_safe", &kc, &["node-1", "--yes"]);
    let refused_err = String::from_utf8_lossy(&refused.stderr).to_string();
    let first = second.wait_with_output().unwrap();
    let _ = kubectl(&kc, &["annotate", "node", "node-1", "test/drain-finished=yes"]);
    let max_running = watcher.join().unwrap();

    let stdout = String::from_utf8_lossy(&first.stdout);
    assert_eq!(
        first.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(stdout.contains("12 VM(s) migrated"), "{stdout}");
    assert_eq!(refused.status.code(), Some(2), "{refused_err}");
    assert!(refused_err.contains("is being worked on by"), "{refused_err}");
    assert!(
        max_running <= 2,
        "at most 2 outbound migrations per node at once, saw {max_running}"
    );
    let after = vmi_placements(&kc);
    assert_eq!(after.len(), 13, "no VMI lost or added: {after:?}");
    for entry in &after {
        assert!(
            entry.ends_with("/node-2") || entry.ends_with("/node-3"),
            "{entry} should run elsewhere"
        );
        assert!(entry.contains("=Running/"), "{entry}");
    }
    assert!(
        after.contains(&elsewhere),
        "the replica that was not on node-1 did not move: {elsewhere} in {after:?}"
    );
    let unschedulable = kubectl(
        &kc,
        &["get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}"],
    );
    assert_eq!(unschedulable, "true");

    let out = run_plugin("kubectl-vm_drain_safe", &kc, &["node-1", "--uncordon"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unschedulable = kubectl(
        &kc,
        &["get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}"],
    );
    assert_eq!(unschedulable, "", "schedulable again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_non_migratable_then_uncordon_brings_the_vm_back() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    let rwo = "---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: db-data, namespace: default}\n\
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n";
    let db = vm(
        "db",
        "      volumes: [{name: data, persistentVolumeClaim: {claimName: db-data}}]\n# RerunOnFailure\n",
    );
    start_vms_on_node_1(&kc, &format!("{rwo}{db}"), 1);

    let out = run_plugin("kubectl-vm_drain_safe", &kc, &["node-1", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "blocked without the flag");
    let out = run_plugin(
        "kubectl-vm_drain_safe",
        &kc,
        &["node-1", "--yes", "--shutdown-non-migratable", "--timeout", "3m"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 stopped"), "{stdout}");
    let strategy = kubectl(&kc, &["get", "vm", "db", "-o", "jsonpath={.spec.runStrategy}"]);
    assert_eq!(strategy, "Halted");

    let out = run_plugin("kubectl-vm_drain_safe", &kc, &["node-1", "--uncordon"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("restarted default/db"));
    let mut running = false;
    for _ in 0..60 {
        if vmi_placements(&kc).iter().any(|e| e.starts_with("db=Running/")) {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(running, "db runs again: {:?}", vmi_placements(&kc));
    assert_eq!(
        kubectl(&kc, &["get", "vm", "db", "-o", "jsonpath={.spec.runStrategy}"]),
        "RerunOnFailure"
    );
}

/// A run that stopped part-way: exit 3 with `why` and what is still on the node reported, the
/// node cordoned, no unstarted migration left behind; then the same command finishes the
/// drain and no VM was migrated twice.
fn assert_stopped_then_resumed(
    kc: &std::path::Path,
    out: &std::process::Output,
    why: &str,
    names: &[String],
) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("drain of node node-1 stopped: {why}")) && stdout.contains("stays cordoned"),
        "{stdout}"
    );
    for entry in vmi_placements(kc).iter().filter(|e| e.ends_with("/node-1")) {
        let name = entry.split('=').next().unwrap();
        assert!(
            stdout.contains(&format!("default/{name}")),
            "{name}, still on node-1, is reported: {stdout}"
        );
    }
    assert_eq!(
        kubectl(
            kc,
            &["get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}"]
        ),
        "true"
    );
    let phases = migration_phases(kc);
    assert!(
        !phases.iter().any(|p| p == "Pending" || p == "Scheduling"),
        "unstarted migrations were cancelled: {phases:?}"
    );

    // The stopped run released its lock: the same command resumes at once.
    let out = run_plugin(
        "kubectl-vm_drain_safe",
        kc,
        &["node-1", "--yes", "--timeout", "5m"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for entry in vmi_placements(kc) {
        assert!(
            !entry.ends_with("/node-1") && entry.contains("=Running/"),
            "{entry}"
        );
    }
    // Never two successful migrations of one VMI: no VM was moved twice.
    let succeeded = kubectl(
        kc,
        &[
            "get",
            "vmim",
            "-o",
            "jsonpath={range .items[*]}{.spec.vmiName}={.status.phase} {end}",
        ],
    );
    for name in names {
        let count = succeeded
            .split_whitespace()
            .filter(|e| *e == format!("{name}=Succeeded"))
            .count();
        assert_eq!(count, 1, "{name}: {succeeded}");
    }
}

/// A sandbox of three nodes whose node-1 runs `count` VMs vm-1..vm-N.
async fn node_1_with_vms(count: usize) -> (Sandbox, Vec<String>) {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let names: Vec<String> = (1..=count).map(|i| format!("vm-{i}")).collect();
    let manifests: String = names.iter().map(|n| vm(n, "")).collect();
    start_vms_on_node_1(&sandbox.kubeconfig(), &manifests, count);
    (sandbox, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_leaves_a_reported_resumable_state_and_a_rerun_finishes_without_duplicates() {
    let (sandbox, names) = node_1_with_vms(5).await;
    let kc = sandbox.kubeconfig();
    let out = run_plugin(
        "kubectl-vm_drain_safe",
        &kc,
        &["node-1", "--yes", "--timeout", "3s"],
    );
    assert_stopped_then_resumed(&kc, &out, "the timeout (3 s) elapsed", &names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_unstarted_migrations_reports_what_is_where_and_a_rerun_resumes() {
    let (sandbox, names) = node_1_with_vms(6).await;
    let kc = sandbox.kubeconfig();
    let drain = std::process::Command::new(plugin_bin("kubectl-vm_drain_safe"))
        .env_remove("KUBECONFIG")
        .args(["--kubeconfig", kc.to_str().unwrap(), "node-1", "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt as soon as the first migrations exist: the rest are still queued.
    for _ in 0..200 {
        if !kubectl(&kc, &["get", "vmim", "-o", "name"]).trim().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = std::process::Command::new("kill")
        .args(["-INT", &drain.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = drain.wait_with_output().unwrap();
    assert!(
        vmi_placements(&kc).iter().any(|e| e.ends_with("/node-1")),
        "interrupted before the end: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_stopped_then_resumed(&kc, &out, "interrupted", &names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_role_is_enough_for_a_whole_drain_uncordon_and_rolling_round() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    start_vms_on_node_1(&kc, &format!("{}{}", vm("a", ""), vm("b", "")), 2);
    let role = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac/vm-drain-safe.yaml");
    let _ = kubectl(&kc, &["apply", "-f", role.to_str().unwrap()]);
    let _ = kubectl(
        &kc,
        &[
            "create",
            "clusterrolebinding",
            "drainer",
            "--clusterrole=vm-drain-safe",
            "--user=drainer",
        ],
    );
    let drainer = vm_e2e::impersonating(&kc, "drainer");
    let out = run_plugin(
        "kubectl-vm_drain_safe",
        &drainer,
        &["node-1", "--yes", "--timeout", "3m"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_plugin("kubectl-vm_drain_safe", &drainer, &["node-1", "--uncordon"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A rolling round as the same user: the role covers its state, its lock, the steering
    // labels and the health gate; then --status, and a paused round ended with --abort.
    let text = |out: &std::process::Output| {
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let out = run_plugin(
        "kubectl-vm_drain_safe",
        &drainer,
        &[
            "--rolling",
            "node-1",
            "node-2",
            "--exec",
            "true",
            "--yes",
            "--timeout",
            "5m",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run_plugin("kubectl-vm_drain_safe", &drainer, &["--rolling", "--status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(": done."),
        "{}",
        text(&out)
    );
    let out = run_plugin(
        "kubectl-vm_drain_safe",
        &drainer,
        &["--rolling", "node-2", "--pause", "--yes", "--timeout", "5m"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run_plugin("kubectl-vm_drain_safe", &drainer, &["--rolling", "--abort"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("node node-2 uncordoned"),
        "{}",
        text(&out)
    );

    let nobody = vm_e2e::impersonating(&kc, "nobody");
    let out = run_plugin("kubectl-vm_drain_safe", &nobody, &["node-2", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kubectl auth can-i list"));
}
