//! `kubectl vm-recover` under races: the "dead" node comes back while the recovery runs (its
//! kubelet renews its Lease after the assessment, so it is alive and may still run its VMs:
//! the recovery must stop before its next destructive step, take its own taint off again and
//! say so), and the API server restarts in the middle of a recovery. Never two running copies
//! of a VM, checked against the simulator's record of every launcher pod that ran.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubevirt_sim::{Sandbox, SandboxConfig};
use vm_e2e::{always_vm as vm, kubectl, node_ready, plugin_bin, start_vms_on_node_1, wait_until};

fn lease_renew_time(kc: &Path) -> String {
    kubectl(
        kc,
        &[
            "get",
            "lease",
            "node-1",
            "-n",
            "kube-node-lease",
            "-o",
            "jsonpath={.spec.renewTime}",
        ],
    )
}

/// vm-recover on a pseudo-terminal (util-linux `script`), with its output collected as it comes
/// and its standard input left open for the answer.
fn on_a_terminal(kc: &Path, args: &str) -> (Child, Arc<Mutex<String>>) {
    let command = format!(
        "{} --kubeconfig {} {args}",
        plugin_bin("kubectl-vm_recover").display(),
        kc.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("util-linux script is installed");
    let output = Arc::new(Mutex::new(String::new()));
    collect(child.stdout.take().unwrap(), &output);
    (child, output)
}

/// The exit status of `child`, or `None` if it was still running after `limit` (it is killed).
fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_renews_its_lease_after_the_assessment_is_not_fenced() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    start_vms_on_node_1(&kc, &[vm("a"), vm("b"), vm("c")].concat(), 3);

    let vmis_before = kubectl(
        &kc,
        &[
            "get",
            "vmi",
            "-o",
            "jsonpath={range .items[*]}{.metadata.uid} {end}",
        ],
    );
    // node-1 is cut off from the network, not powered off: its VMs keep running, but to the
    // cluster it looks dead.
    sandbox.partition("node-1").unwrap();
    wait_until("node-1 is not Ready", || node_ready(&kc, "node-1") != "True").await;
    wait_until("node-1 is tainted unreachable:NoExecute", || {
        kubectl(&kc, &["get", "node", "node-1", "-o", "jsonpath={.spec.taints}"]).contains("NoExecute")
    })
    .await;
    let silent_since = lease_renew_time(&kc);

    // The operator reads the assessment (Lease expired, node down) and is asked to confirm…
    let (mut child, output) = on_a_terminal(&kc, "--from-node node-1");
    wait_until("vm-recover asks for the node name", || {
        output.lock().unwrap().contains("Type the node name to confirm")
    })
    .await;
    // …while the network comes back and the kubelet renews the Lease.
    sandbox.heal("node-1").unwrap();
    wait_until("node-1 renews its Lease", || {
        lease_renew_time(&kc) != silent_since
    })
    .await;
    let pods_before = kubectl(
        &kc,
        &[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.metadata.uid} {end}",
        ],
    );
    child.stdin.as_mut().unwrap().write_all(b"node-1\n").unwrap();
    let code = wait_exit(&mut child, Duration::from_secs(60));
    let out = output.lock().unwrap().clone();

    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("node node-1 renewed its kubelet Lease at"), "{out}");
    assert!(
        out.contains("the recovery stopped before tainting the node"),
        "{out}"
    );
    assert!(out.contains("nothing was changed"), "{out}");
    let taints = kubectl(&kc, &["get", "node", "node-1", "-o", "jsonpath={.spec.taints}"]);
    assert!(!taints.contains("out-of-service"), "{taints}");
    // No pod was deleted: every launcher pod of before is still there.
    let pods_after = kubectl(
        &kc,
        &[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.metadata.uid} {end}",
        ],
    );
    for uid in pods_before.split_whitespace() {
        assert!(pods_after.contains(uid), "pod {uid} was deleted: {out}");
    }
    // The VMs never stopped: the same VMIs still run on node-1, one copy each.
    assert_eq!(
        kubectl(
            &kc,
            &[
                "get",
                "vmi",
                "-o",
                "jsonpath={range .items[*]}{.metadata.uid} {end}"
            ],
        ),
        vmis_before
    );
    let placements = vm_e2e::vmi_placements(&kc);
    assert_eq!(
        placements
            .iter()
            .filter(|p| p.ends_with("=Running/node-1"))
            .count(),
        3,
        "{placements:?}"
    );
    let runs = kubevirt_sim::history::read(sandbox.state_dir());
    let overlaps = kubevirt_sim::history::overlapping_runs(&runs);
    assert!(overlaps.is_empty(), "two copies at once: {overlaps:?}");
}

/// Appends what `stream` gives to `sink` until it closes, on a thread of its own.
fn collect(mut stream: impl Read + Send + 'static, sink: &Arc<Mutex<String>>) {
    let sink = Arc::clone(sink);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}

/// Whether the API server answers its readiness check.
fn api_server_answers(kc: &Path) -> bool {
    Command::new("kubectl")
        .env_remove("KUBECONFIG")
        .arg("--kubeconfig")
        .arg(kc)
        .args(["get", "--raw", "/readyz", "--request-timeout=1s"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_rides_out_an_api_server_restart_without_two_copies() {
    let mut sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    let names = ["a", "b", "c", "d"];
    start_vms_on_node_1(&kc, &names.map(vm).concat(), names.len());
    sandbox.node_down("node-1").unwrap();
    wait_until("node-1 is not Ready", || node_ready(&kc, "node-1") != "True").await;
    wait_until("node-1 is tainted unreachable:NoExecute", || {
        kubectl(&kc, &["get", "node", "node-1", "-o", "jsonpath={.spec.taints}"]).contains("NoExecute")
    })
    .await;

    // The operator is asked to confirm; the API server goes away while the question waits,
    // and the answer comes once it is gone: the lock, the Lease check, the taint, the
    // force-deletions and the watch all meet the outage.
    let (mut child, output) = on_a_terminal(&kc, "--from-node node-1 --timeout 5m");
    wait_until("vm-recover asks for the node name", || {
        output.lock().unwrap().contains("Type the node name to confirm")
    })
    .await;
    let answer = async {
        wait_until("the API server is down", || !api_server_answers(&kc)).await;
        child.stdin.as_mut().unwrap().write_all(b"node-1\n").unwrap();
    };
    let (restarted, ()) = tokio::join!(sandbox.restart_apiserver(Duration::from_secs(3)), answer);
    restarted.expect("the API server restarts");
    let code = wait_exit(&mut child, Duration::from_secs(360));
    let context = output.lock().unwrap().clone();
    assert_eq!(code, Some(0), "{context}");
    assert!(context.contains("4 VM(s) running elsewhere"), "{context}");
    assert!(
        context.contains("the API server answers again"),
        "the outage was met: {context}"
    );
    let placements = vm_e2e::vmi_placements(&kc);
    for name in names {
        assert!(
            placements
                .iter()
                .any(|p| p.starts_with(&format!("{name}=Running/")) && !p.ends_with("/node-1")),
            "{name} runs elsewhere: {placements:?}\n{context}"
        );
    }
    let runs = kubevirt_sim::history::read(sandbox.state_dir());
    let overlaps = kubevirt_sim::history::overlapping_runs(&runs);
    assert!(overlaps.is_empty(), "two copies at once: {overlaps:?}");
}
