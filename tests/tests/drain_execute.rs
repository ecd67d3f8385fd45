//! `kubectl vm-drain-safe NODE` executes on the sandbox: VMs leave by live migration within
//! KubeVirt's limits, the node ends cordoned and empty, `--uncordon` undoes it; a second drain
//! of the same node is refused; a non-migratable VM is stopped and brought back on request.

use std::process::Stdio;
use std::time::Duration;

use kubevirt_sim::{Sandbox, SandboxConfig};
use vm_e2e::{kubectl, plugin_bin, run_plugin, start_vms_on_node_1};

fn vm(name: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {{name: {name}, namespace: default}}\n\
spec:\n  runStrategy: {}\n  template:\n    spec:\n      evictionStrategy: LiveMigrate\n      domain: {{resources: {{requests: {{memory: 512Mi}}}}}}\n{extra}",
        if extra.contains("RerunOnFailure") {
            "RerunOnFailure"
        } else {
            "Always"
        }
    )
}

fn vmi_nodes(kc: &std::path::Path) -> Vec<String> {
    kubectl(
        kc,
        &[
            "get",
            "vmi",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.phase}/{.status.nodeName} {end}",
        ],
    )
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_live_migrate_vms_drains_within_the_limits_and_uncordons() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    let names: Vec<String> = (1..=6).map(|i| format!("vm-{i}")).collect();
    let manifests: String = names.iter().map(|n| vm(n, "")).collect();
    start_vms_on_node_1(&kc, &manifests, names.len());

    // Watch the number of migrations past Pending while the drain runs.
    let kc_watch = kc.clone();
    let watcher = std::thread::spawn(move || {
        let mut max_running = 0;
        for _ in 0..600 {
            let phases = kubectl(
                &kc_watch,
                &[
                    "get",
                    "vmim",
                    "-o",
                    "jsonpath={range .items[*]}{.status.phase} {end}",
                ],
            );
            let running = phases
                .split_whitespace()
                .filter(|p| {
                    matches!(
                        *p,
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
    assert!(stdout.contains("6 VM(s) migrated"), "{stdout}");
    assert_eq!(refused.status.code(), Some(2), "{refused_err}");
    assert!(refused_err.contains("is being drained by"), "{refused_err}");
    assert!(
        max_running <= 2,
        "at most 2 outbound migrations per node at once, saw {max_running}"
    );
    for entry in vmi_nodes(&kc) {
        assert!(
            entry.ends_with("/node-2") || entry.ends_with("/node-3"),
            "{entry} should run elsewhere"
        );
        assert!(entry.contains("=Running/"), "{entry}");
    }
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
        if vmi_nodes(&kc).iter().any(|e| e.starts_with("db=Running/")) {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(running, "db runs again: {:?}", vmi_nodes(&kc));
    assert_eq!(
        kubectl(&kc, &["get", "vm", "db", "-o", "jsonpath={.spec.runStrategy}"]),
        "RerunOnFailure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_leaves_a_reported_resumable_state_and_a_rerun_finishes_without_duplicates() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    let names: Vec<String> = (1..=5).map(|i| format!("vm-{i}")).collect();
    let manifests: String = names.iter().map(|n| vm(n, "")).collect();
    start_vms_on_node_1(&kc, &manifests, names.len());

    let out = run_plugin(
        "kubectl-vm_drain_safe",
        &kc,
        &["node-1", "--yes", "--timeout", "3s"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("stopped: the timeout (3 s) elapsed") && stdout.contains("stays cordoned"),
        "{stdout}"
    );
    assert_eq!(
        kubectl(
            &kc,
            &["get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}"]
        ),
        "true"
    );
    let pending = kubectl(
        &kc,
        &[
            "get",
            "vmim",
            "-o",
            "jsonpath={range .items[*]}{.status.phase} {end}",
        ],
    );
    assert!(
        !pending.split_whitespace().any(|p| p == "Pending"),
        "unstarted migrations were cancelled: {pending}"
    );

    // The stopped run released its lock: the same command resumes at once.
    let out = run_plugin(
        "kubectl-vm_drain_safe",
        &kc,
        &["node-1", "--yes", "--timeout", "5m"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for entry in vmi_nodes(&kc) {
        assert!(
            entry.contains("=Running/node-2") || entry.contains("=Running/node-3"),
            "{entry}"
        );
    }
    // Never two successful migrations of one VMI: no VM was moved twice.
    let succeeded = kubectl(
        &kc,
        &[
            "get",
            "vmim",
            "-o",
            "jsonpath={range .items[*]}{.spec.vmiName}={.status.phase} {end}",
        ],
    );
    for name in &names {
        let count = succeeded
            .split_whitespace()
            .filter(|e| *e == format!("{name}=Succeeded"))
            .count();
        assert_eq!(count, 1, "{name}: {succeeded}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_role_is_enough_for_a_whole_drain_and_uncordon() {
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
    let nobody = vm_e2e::impersonating(&kc, "nobody");
    let out = run_plugin("kubectl-vm_drain_safe", &nobody, &["node-2", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kubectl auth can-i list"));
}
