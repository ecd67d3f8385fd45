//! A migration whose target pod the scheduler cannot place: the pre-flight passes, then, while
//! `kubectl vm-drain-safe` waits for its confirmation, every other node is tainted. The target
//! pod stays Pending; the progress shows the scheduler's message, and after `--pending-timeout`
//! the migration is cancelled (not retried), the VM reported BLOCKED with that message, and the
//! drain stops with exit 3: node cordoned, lock released, VM still running on the node.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kubevirt_sim::{Sandbox, SandboxConfig, SimConfig};
use serde_json::Value;
use vm_e2e::{always_vm, kubectl, migration_phases, plugin_bin, start_vms_on_node_1, vmi_placements};

/// Waits up to `limit` until `file` contains `text`; its contents.
fn wait_for_text(file: &Path, text: &str, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        let now = std::fs::read_to_string(file).unwrap_or_default();
        if now.contains(text) {
            return now;
        }
        assert!(
            started.elapsed() < limit,
            "no {text:?} after {limit:?} in {}:\n{now}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether a line about the blocked VM says that a taint keeps it off the other nodes, and
/// which one (the test's `maintenance=planned`).
fn names_the_taint(line: &str) -> bool {
    line.contains("taint") && line.contains("maintenance")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_target_pod_blocks_its_vm_with_the_schedulers_message_and_stops_the_drain() {
    // KubeVirt's own unschedulable timeout (the simulator's) is far longer than the drain's:
    // the drain's --pending-timeout is what ends the wait.
    let config = SandboxConfig {
        sim: SimConfig {
            migration_unschedulable_timeout_ms: 600_000,
            ..SimConfig::default()
        },
        ..SandboxConfig::with_nodes(3)
    };
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    start_vms_on_node_1(&kc, &always_vm("vm-1"), 1);
    assert!(vmi_placements(&kc).contains(&"vm-1=Running/node-1".to_string()));

    // The pre-flight passes: node-2 and node-3 can take the VM.
    let (code, plan) = vm_e2e::drain_plan(&kc, "node-1");
    assert_eq!(code, Some(0), "{plan:#}");
    assert_eq!(plan["vms"][0]["action"], "migrate", "{plan:#}");

    // The drain on a terminal (stdin only: stdout and stderr go to files, so the progress is
    // printed as lines), waiting for the node name.
    let dir = std::env::temp_dir().join(format!("vm-e2e-pending-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (out_file, err_file) = (dir.join("stdout"), dir.join("stderr"));
    let command = format!(
        "{} --kubeconfig {} node-1 --pending-timeout 20s --timeout 5m -o json >{} 2>{}",
        plugin_bin("kubectl-vm_drain_safe").display(),
        kc.display(),
        out_file.display(),
        err_file.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("util-linux script is installed");
    wait_for_text(
        &err_file,
        "Type the node name to confirm",
        Duration::from_secs(60),
    );

    // Now no other node can take it.
    let _ = kubectl(
        &kc,
        &[
            "taint",
            "nodes",
            "node-2",
            "node-3",
            "maintenance=planned:NoSchedule",
        ],
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"node-1\n").unwrap();
    stdin.flush().unwrap();

    // 20 s of pending timeout, then the run ends: well within two minutes.
    let typed = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if typed.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!(
                "the drain did not end within 120 s:\n{}",
                std::fs::read_to_string(&err_file).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    drop(stdin);
    let stdout = std::fs::read_to_string(&out_file).unwrap();
    let stderr = std::fs::read_to_string(&err_file).unwrap();
    let context = format!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    assert_eq!(status.code(), Some(3), "{context}");
    assert!(
        typed.elapsed() >= Duration::from_secs(20),
        "the drain waited the pending timeout: {context}"
    );

    // The progress line carries the scheduler's own words while the migration waits, then the
    // verdict; the reason the drain stopped says it again.
    let waiting = stderr
        .lines()
        .find(|l| l.contains("default/vm-1: migration target pod Pending, the scheduler says:"))
        .unwrap_or_else(|| panic!("a progress line with the scheduler's message: {context}"));
    // Which taint: kube-scheduler 1.20 to 1.31 names it (`had taint {maintenance: planned},
    // that the pod didn't tolerate`, later `had untolerated taint {maintenance: planned}`);
    // newer releases only count the nodes (`2 node(s) had untolerated taint(s)`), and the
    // drain names it from its own reading of the nodes. Either way the key is there.
    assert!(names_the_taint(waiting), "the taint is named: {waiting}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("default/vm-1: BLOCKED") && names_the_taint(l)),
        "{context}"
    );
    assert!(
        stderr.contains("drain of node node-1 stopped: default/vm-1 is BLOCKED"),
        "{context}"
    );
    assert_eq!(
        stderr.matches("migrating default/vm-1").count(),
        1,
        "one try only, no blind retry: {context}"
    );

    // stdout: the plan, then the DrainResult, with the message for the VM.
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("two JSON documents ({e}): {context}"));
    assert_eq!(docs.len(), 2, "{context}");
    assert_eq!(docs[0]["kind"], "DrainPlan", "{context}");
    let result = &docs[1];
    assert_eq!(result["kind"], "DrainResult", "{result:#}");
    assert_eq!(result["completed"], false, "{result:#}");
    // Cancelled when it was blocked, not by the stop: listed as blocked only.
    assert_eq!(result["cancelled"], serde_json::json!([]), "{result:#}");
    let vm = result["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["vm"] == "default/vm-1")
        .unwrap_or_else(|| panic!("vm-1 in the result: {result:#}"));
    assert_eq!(vm["outcome"], "blocked", "{result:#}");
    let message = vm["schedulingMessage"].as_str().unwrap_or_default();
    assert!(names_the_taint(message), "{result:#}");

    // The cluster: the VM still runs on node-1, no migration in flight (the cancelled one is
    // gone, with its target pod), node-1 cordoned, the lock released.
    assert!(
        vmi_placements(&kc).contains(&"vm-1=Running/node-1".to_string()),
        "{:?}",
        vmi_placements(&kc)
    );
    vm_e2e::wait_until("no migration is left in flight", || {
        migration_phases(&kc)
            .iter()
            .all(|p| matches!(p.as_str(), "Succeeded" | "Failed"))
    })
    .await;
    vm_e2e::wait_until("the target pod is gone", || {
        kubectl(
            &kc,
            &["get", "pods", "-l", "kubevirt.io/migrationJobUID", "-o", "name"],
        )
        .trim()
        .is_empty()
    })
    .await;
    assert_eq!(
        kubectl(
            &kc,
            &["get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}"]
        ),
        "true"
    );
    assert!(
        !kubectl(&kc, &["get", "lease", "-n", "kube-system", "-o", "name"]).contains("vm-drain-safe-node-1"),
        "the lock is released"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
