//! The `vm-sandbox` command line as scripts use it: `up` in the background with a scenario,
//! `status`, `node partition|heal`, `node down|up`, and `down` stopping exactly what `up`
//! started.
//! Needs the binaries from `scripts/install-control-plane`.

use std::process::Command;
use std::time::{Duration, Instant};

fn vm_sandbox(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vm-sandbox"))
        .args(args)
        .output()
        .expect("vm-sandbox runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn kubectl(kubeconfig: &str, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    String::from_utf8_lossy(&out.stdout).into()
}

/// Stops the sandbox even when an assertion fails.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = vm_sandbox(&["down", "--state-dir", &self.0]);
    }
}

#[test]
fn up_status_node_and_down() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap().to_string();
    let scenario = dir.path().join("scenario.yaml");
    std::fs::write(
        &scenario,
        r#"
apiVersion: v1
kind: Node
metadata:
  name: gpu-1
  labels: {accelerator: a100, cpu-vendor.node.kubevirt.io/AMD: "true"}
spec:
  taints: [{key: dedicated, value: gpu, effect: NoSchedule}]
status:
  capacity: {cpu: "64", memory: 512Gi, pods: "50"}
---
apiVersion: v1
kind: Namespace
metadata: {name: prod}
---
apiVersion: kubevirt.io/v1
kind: KubeVirt
metadata: {name: kubevirt, namespace: kubevirt}
spec:
  configuration:
    evictionStrategy: LiveMigrate
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: db, namespace: prod}
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        resources: {requests: {memory: 4Gi}}
        devices: {interfaces: [{name: default, masquerade: {}}]}
      networks: [{name: default, pod: {}}]
"#,
    )
    .unwrap();
    let _down = Down(state.clone());
    let started = Instant::now();
    let (ok, stdout, stderr) = vm_sandbox(&[
        "up",
        "--state-dir",
        &state,
        "--nodes",
        "2",
        "--vms",
        "3",
        "--scenario",
        scenario.to_str().unwrap(),
        "--timeout",
        "3m",
    ]);
    assert!(ok, "up failed: {stderr}");
    // gpu-1 is written with a node-labeller label and no machine type: up completes it, and
    // says so.
    assert!(
        stderr.contains(
            "scenario node gpu-1 has node-labeller labels but no machine-type.node.kubevirt.io/* label"
        ) && stderr.contains("added machine-type.node.kubevirt.io/q35"),
        "{stderr}"
    );
    eprintln!("vm-sandbox up took {:?}", started.elapsed());
    let kubeconfig = format!("{state}/kubeconfig");
    assert_eq!(stdout.trim(), format!("export KUBECONFIG={kubeconfig}"));

    // Scenario nodes as written, generated nodes, VMs running (up waited for them).
    let nodes = kubectl(
        &kubeconfig,
        &[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.allocatable.cpu}/{.metadata.labels.accelerator} {end}",
        ],
    );
    assert!(
        nodes.contains("gpu-1=64/a100") && nodes.contains("node-1=32/") && nodes.contains("node-2=32/"),
        "{nodes}"
    );
    let taints = kubectl(
        &kubeconfig,
        &["get", "node", "gpu-1", "-o", "jsonpath={.spec.taints[*].key}"],
    );
    assert!(taints.contains("dedicated"), "{taints}");
    let machine = kubectl(
        &kubeconfig,
        &[
            "get",
            "node",
            "gpu-1",
            "-o",
            "jsonpath={.metadata.labels.machine-type\\.node\\.kubevirt\\.io/q35}",
        ],
    );
    assert_eq!(machine, "true");
    let phases = kubectl(
        &kubeconfig,
        &[
            "get",
            "vmi",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.phase}/{.spec.evictionStrategy} {end}",
        ],
    );
    for vm in ["db", "vm-1", "vm-2", "vm-3"] {
        assert!(
            phases.contains(&format!("{vm}=Running/LiveMigrate")),
            "{vm}: {phases}"
        );
    }

    let (ok, status, _) = vm_sandbox(&["status", "--state-dir", &state]);
    assert!(ok);
    for p in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "simulator",
    ] {
        assert!(
            status.lines().any(|l| l.starts_with(p) && l.ends_with("running")),
            "{p}: {status}"
        );
    }
    assert!(
        status.contains("launcher runs: 4 recorded, 4 running, 0 overlapping"),
        "the run history: {status}"
    );

    // A partition: the node goes silent but its guests keep running.
    let host = kubectl(
        &kubeconfig,
        &["get", "vmi", "vm-1", "-o", "jsonpath={.status.nodeName}"],
    );
    let (ok, _, stderr) = vm_sandbox(&["node", "partition", &host, "--state-dir", &state]);
    assert!(ok, "{stderr}");
    std::thread::sleep(Duration::from_secs(3));
    let (ok, status, _) = vm_sandbox(&["status", "--state-dir", &state]);
    assert!(ok);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with(&format!("node {host} ")) && l.ends_with("kubelet partitioned")),
        "{status}"
    );
    assert!(
        status.contains("launcher runs: 4 recorded, 4 running, 0 overlapping"),
        "nothing stopped: {status}"
    );
    let (ok, _, stderr) = vm_sandbox(&["node", "heal", &host, "--state-dir", &state]);
    assert!(ok, "{stderr}");
    let (_, status, _) = vm_sandbox(&["status", "--state-dir", &state]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with(&format!("node {host} ")) && l.ends_with("kubelet up")),
        "{status}"
    );

    let (ok, _, _) = vm_sandbox(&["node", "down", "node-1", "--state-dir", &state]);
    assert!(ok);
    let deadline = Instant::now() + Duration::from_secs(80);
    loop {
        let ready = kubectl(
            &kubeconfig,
            &[
                "get",
                "node",
                "node-1",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        );
        if ready == "Unknown" {
            break;
        }
        assert!(Instant::now() < deadline, "node-1 did not go NotReady: {ready}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (ok, _, stderr) = vm_sandbox(&["node", "down", "no-such-node", "--state-dir", &state]);
    assert!(!ok && stderr.contains("no node named no-such-node"), "{stderr}");

    let pids: Vec<u32> = std::fs::read_dir(format!("{state}/pids"))
        .unwrap()
        .map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(pids.len(), 5);
    let (ok, _, _) = vm_sandbox(&["down", "--state-dir", &state]);
    assert!(ok);
    std::thread::sleep(Duration::from_millis(500));
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'));
        assert!(!alive, "pid {pid} still running after down");
    }
    let (ok, status, _) = vm_sandbox(&["status", "--state-dir", &state]);
    assert!(ok && status.contains("no sandbox"), "{status}");
}

/// VMs that cannot all fit: `up` says so as soon as the scheduler gives up on a launcher pod,
/// with its message, instead of waiting out `--timeout` (ten minutes here: a timeout would
/// give another error).
#[test]
fn up_says_at_once_why_the_vms_cannot_all_run() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap().to_string();
    let _down = Down(state.clone());
    let (ok, _, stderr) = vm_sandbox(&[
        "up",
        "--state-dir",
        &state,
        "--nodes",
        "1",
        "--node-cpu",
        "2",
        "--vms",
        "4",
        "--timeout",
        "10m",
    ]);
    assert!(!ok, "4 VMs of 1 CPU each on 2 CPUs: {stderr}");
    assert!(
        stderr.contains("VM(s) cannot all run")
            && stderr.contains("CPU in all")
            && stderr.contains("The scheduler says: 0/1 nodes are available")
            && stderr.contains("Insufficient cpu"),
        "{stderr}"
    );
    let (ok, _, stderr) = vm_sandbox(&["up", "--state-dir", &state, "--timeout", "soon"]);
    assert!(
        !ok && stderr.contains("`soon` is not a duration such as 90s, 15m or 1h"),
        "{stderr}"
    );
}
