//! `kubectl vm-drain-safe --rolling` running rounds on the sandbox, one sandbox for three
//! rounds that follow each other:
//!
//! 1. Four nodes with ten VMs each, a fifth outside the round, and `--exec` that reboots each
//!    node through the sandbox (`vm-sandbox node down`, then `up`), with `--min-free-memory`
//!    1Gi below the room the plan leaves at its tightest step. The run is killed with SIGKILL
//!    (its whole process group, as a closed laptop would) once during a migration and once
//!    during `--exec`; the same command resumes it each time. At the end every VM runs, each
//!    node's maintenance finished once, each VM moved once (the plan says it can), the
//!    migrations the report counts are the cluster's record, no node stays cordoned or
//!    labelled, and the free memory of the nodes that could take a pod, sampled all along,
//!    never fell below the floor. `--status` from a second process shows the run at work.
//! 2. `--pause`, `--status`, `--continue` on a round of one node that holds a VM that cannot
//!    migrate (stopped by `--shutdown-non-migratable`, restarted at the node's uncordon); then
//!    the same round paused again and `--abort`ed: the node schedulable, the VM running.
//! 3. A round of two nodes with `--min-free-memory` 1Gi below its tightest step, paused after
//!    its first node. A 2Gi VM created meanwhile takes that room: `--continue` stops before the
//!    second node's drain, says why, and touches nothing of it. That VM gone, a VM pinned to
//!    the second node is created instead, so that node can no longer be drained: `--continue`
//!    stops there again and says so.
//! 4. A round whose migrations cannot finish within `--migration-timeout` (1 s; the sandbox's
//!    take about 2 s): each is cancelled and reported STUCK, the round stops with exit 3 and
//!    its state, the VMs stay where they run, and `--abort` gives the node back.
//!
//! A second sandbox, at the same time, serves KubeVirt 1.5's API, without
//! `spec.addedNodeSelector`: a round there is not steered, says so, and counts the extra moves;
//! its `--gate` fails once after the first node, which stops the round before the next.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use kubevirt_sim::nodes::NodeTemplate;
use kubevirt_sim::{Sandbox, SandboxConfig};
use serde_json::Value;
use vm_e2e::{
    always_vm, apply_manifests, kubectl, output_text as text, plugin_bin, vmi_placements, wait_until,
};

const ROUND: [&str; 4] = ["node-1", "node-2", "node-3", "node-4"];
const ALL: [&str; 5] = ["node-1", "node-2", "node-3", "node-4", "node-5"];
const RUN_LABEL: &str = "vm-drain-safe.kubevirt.io/rolling-run";
const TARGET_LABEL: &str = "vm-drain-safe.kubevirt.io/rolling-target";
const VMS_PER_NODE: usize = 10;
const GIB: u64 = 1 << 30;

fn config() -> SandboxConfig {
    SandboxConfig {
        nodes: ALL
            .iter()
            .map(|n| NodeTemplate::worker(*n, "16", "16Gi", "110"))
            .collect(),
        ..SandboxConfig::default()
    }
}

/// The plugin, in a process group of its own so that the test can kill it with its
/// `--exec` command.
fn rolling_command(kc: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(plugin_bin("kubectl-vm_drain_safe"));
    cmd.env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .arg("--kubeconfig")
        .arg(kc)
        .arg("--rolling")
        .args(args)
        .process_group(0);
    cmd
}

fn rolling(kc: &Path, args: &[&str]) -> Output {
    rolling_command(kc, args).output().expect("the plugin runs")
}

fn spawn(kc: &Path, args: &[&str]) -> Child {
    rolling_command(kc, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the plugin starts")
}

/// Waits, as [`wait_until`] does, until `check` holds while `child` runs; if the child ends
/// first, fails at once with what it printed.
async fn while_running(child: &mut Child, what: &str, mut check: impl FnMut() -> bool) {
    let mut ended = None;
    wait_until(what, || {
        ended = child.try_wait().ok().flatten();
        check() || ended.is_some()
    })
    .await;
    if let Some(status) = ended.filter(|_| !check()) {
        let mut printed = String::new();
        for pipe in [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read>),
        ]
        .into_iter()
        .flatten()
        {
            let mut pipe = pipe;
            let _ = pipe.read_to_string(&mut printed);
        }
        panic!("the plugin ended ({status}) before {what}:\n{printed}");
    }
}

/// SIGKILL to the child's whole process group: the plugin and the command it runs.
fn kill_group(child: Child) -> Output {
    let pid = child.id();
    let sent = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -KILL -{pid}");
    child.wait_with_output().expect("the killed plugin is reaped")
}

fn json(kc: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&kubectl(kc, args)).expect("kubectl prints JSON")
}

/// The round's migrations: `(vmi, phase)`.
fn round_migrations(kc: &Path) -> Vec<(String, String)> {
    json(kc, &["get", "vmim", "-A", "-l", RUN_LABEL, "-o", "json"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["spec"]["vmiName"].as_str().unwrap_or_default().to_string(),
                m["status"]["phase"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The round's state as `--status -o json` prints it.
fn status_json(kc: &Path) -> Value {
    let out = rolling(kc, &["--status", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

fn cordoned(kc: &Path) -> Vec<String> {
    json(kc, &["get", "nodes", "-o", "json"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["spec"]["unschedulable"] == true)
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

fn target_labelled(kc: &Path) -> String {
    kubectl(kc, &["get", "nodes", "-l", TARGET_LABEL, "-o", "name"])
}

/// The `--exec` of round 1: records that it began, reboots the node through the sandbox,
/// records that it finished.
fn reboot_command(sandbox: &Sandbox, marks: &Path) -> String {
    let vm_sandbox = plugin_bin("vm-sandbox");
    let state = sandbox.state_dir();
    format!(
        "echo \"$NODE\" >> {m}/began && {s} node down \"$NODE\" --state-dir {d} && sleep 3 && {s} node up \"$NODE\" --state-dir {d} && echo \"$NODE\" >> {m}/finished",
        m = marks.display(),
        s = vm_sandbox.display(),
        d = state.display()
    )
}

/// The memory free now on each node that can take a pod (Ready, not cordoned,
/// KubeVirt-schedulable): its allocatable less what the pods bound to it and not finished
/// request, as the scheduler counts it (the larger of the containers' sum and any init
/// container, plus the pod's overhead). Read with kubectl, independently of the plugin.
fn free_memory_by_node(kc: &Path) -> BTreeMap<String, u64> {
    let mem = |v: &Value| {
        v["resources"]["requests"]["memory"]
            .as_str()
            .and_then(kubevirt_sim::quantity::bytes)
            .unwrap_or(0)
    };
    let mut requested: HashMap<String, u64> = HashMap::new();
    for pod in json(kc, &["get", "pods", "-A", "-o", "json"])["items"]
        .as_array()
        .unwrap()
    {
        if matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
            continue;
        }
        let Some(node) = pod["spec"]["nodeName"].as_str() else {
            continue;
        };
        let spec = &pod["spec"];
        let list = |key: &str| spec[key].as_array().cloned().unwrap_or_default();
        let containers: u64 = list("containers").iter().map(mem).sum();
        let init = list("initContainers").iter().map(mem).max().unwrap_or(0);
        let overhead = spec["overhead"]["memory"]
            .as_str()
            .and_then(kubevirt_sim::quantity::bytes)
            .unwrap_or(0);
        *requested.entry(node.to_string()).or_default() += containers.max(init) + overhead;
    }
    json(kc, &["get", "nodes", "-o", "json"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| {
            let ready = n["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
            ready
                && n["spec"]["unschedulable"] != true
                && n["metadata"]["labels"]["kubevirt.io/schedulable"] == "true"
        })
        .map(|n| {
            let name = n["metadata"]["name"].as_str().unwrap().to_string();
            let allocatable = n["status"]["allocatable"]["memory"]
                .as_str()
                .and_then(kubevirt_sim::quantity::bytes)
                .unwrap();
            let used = requested.get(&name).copied().unwrap_or(0);
            (name, allocatable.saturating_sub(used))
        })
        .collect()
}

/// Samples the free memory of the nodes that can take a pod, about every second, until
/// stopped; returns the least seen and how many samples were taken.
fn sample_free_memory(kc: &Path) -> (Arc<AtomicBool>, JoinHandle<(u64, usize)>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (kc, flag) = (kc.to_path_buf(), Arc::clone(&stop));
    let handle = std::thread::spawn(move || {
        let (mut least, mut samples) = (u64::MAX, 0);
        while !flag.load(Ordering::Relaxed) {
            // Once the test has failed and its sandbox is gone, kubectl fails too: stop quietly.
            let Ok(free) = std::panic::catch_unwind(|| free_memory_by_node(&kc)) else {
                break;
            };
            least = least.min(free.values().sum());
            samples += 1;
            std::thread::sleep(Duration::from_secs(1));
        }
        (least, samples)
    });
    (stop, handle)
}

/// The free memory the dry-run plan of `round` leaves at its tightest step, in bytes.
fn tightest_free_memory(kc: &Path, round: &[&str]) -> u64 {
    let args: Vec<&str> = round.iter().copied().chain(["--dry-run", "-o", "json"]).collect();
    let out = rolling(kc, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["tightest"]["freeMemory"]
        .as_str()
        .and_then(kubevirt_sim::quantity::bytes)
        .unwrap_or_else(|| panic!("the plan names its tightest step: {plan:#}"))
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_rounds_run_resume_after_sigkill_pause_continue_abort_and_stop_when_a_step_turns_infeasible()
{
    let sandbox = Sandbox::start(config()).await.expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    let mut all_vms = Vec::new();
    for node in ROUND {
        let vms: Vec<String> = (1..=VMS_PER_NODE).map(|i| format!("{node}-vm-{i}")).collect();
        let manifests: String = vms.iter().map(|n| always_vm(n)).collect();
        let names: Vec<&str> = vms.iter().map(String::as_str).collect();
        vm_e2e::start_on(&kc, node, &ALL, &manifests, &names).await;
        all_vms.extend(vms);
    }

    round_with_exec_killed_twice(&sandbox, &kc, &all_vms).await;
    pause_continue_and_abort(&kc).await;
    a_step_that_turns_infeasible_stops_before_its_drain(&kc).await;
    a_stuck_migration_stops_the_round_resumably(&kc).await;
}

async fn round_with_exec_killed_twice(sandbox: &Sandbox, kc: &Path, all_vms: &[String]) {
    let marks: PathBuf = std::env::temp_dir().join(format!("rolling-marks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&marks);
    std::fs::create_dir_all(&marks).unwrap();
    let exec = reboot_command(sandbox, &marks);
    let floor = tightest_free_memory(kc, &ROUND) - GIB;
    let floor_arg = floor.to_string();
    let args: Vec<&str> = ROUND
        .iter()
        .copied()
        .chain(["--exec", &exec, "--yes", "--timeout", "20m", "-o", "json"])
        .chain(["--min-free-memory", &floor_arg])
        .collect();
    let (stop_sampling, sampler) = sample_free_memory(kc);

    // Killed while a migration of the round runs.
    let first = spawn(kc, &args);
    wait_until("a migration of the round runs", || {
        round_migrations(kc)
            .iter()
            .any(|(_, phase)| !matches!(phase.as_str(), "Succeeded" | "Failed" | ""))
    })
    .await;
    let out = kill_group(first);
    assert_eq!(out.status.code(), None, "killed: {}", text(&out));
    let state = status_json(kc);
    assert_eq!(state["status"], "Running", "{state:#}");
    assert_eq!(state["steps"][0]["phase"], "Draining", "{state:#}");

    // Resumed, then killed while its --exec reboots a node.
    let mut second = spawn(kc, &args);
    while_running(&mut second, "a maintenance began", || {
        !lines(&marks.join("began")).is_empty()
    })
    .await;
    let out = kill_group(second);
    assert_eq!(out.status.code(), None, "killed: {}", text(&out));
    let state = status_json(kc);
    let interrupted = lines(&marks.join("began"))[0].clone();
    assert_eq!(state["steps"][0]["node"], interrupted.as_str(), "{state:#}");
    assert_eq!(state["steps"][0]["phase"], "Maintaining", "{state:#}");
    assert!(
        lines(&marks.join("finished")).is_empty(),
        "the reboot was cut short"
    );

    // Resumed again: to the end. A second process asks for the status while it works.
    let third = spawn(kc, &args);
    wait_until("the resumed run is past the interrupted node", || {
        status_json(kc)["steps"][1]["phase"] != "Pending"
    })
    .await;
    let status = rolling(kc, &["--status"]);
    let shown = String::from_utf8_lossy(&status.stdout).to_string();
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    assert!(
        shown.contains("Worked on now by") && shown.contains(&interrupted) && shown.contains("done"),
        "{shown}"
    );
    let out = third.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("one JSON document ({e}): {}", text(&out)));
    assert_eq!(report["kind"], "RollingState", "{report:#}");
    assert_eq!(report["status"], "Done", "{report:#}");
    stop_sampling.store(true, Ordering::Relaxed);
    let (least, samples) = sampler.join().unwrap();
    assert!(samples > 20, "sampled all along: {samples}");
    assert!(
        least >= floor,
        "the free memory fell to {least} bytes, below the floor of {floor}"
    );

    // Each node's maintenance ran to its end once; only the interrupted one began twice.
    let mut finished = lines(&marks.join("finished"));
    finished.sort();
    assert_eq!(finished, ROUND, "each node maintained once");
    let began = lines(&marks.join("began"));
    assert_eq!(began.len(), ROUND.len() + 1, "{began:?}");
    assert_eq!(
        began.iter().filter(|n| **n == interrupted).count(),
        2,
        "{began:?}"
    );

    // Every VM runs; each moved once, as the plan said it could; the report's count is the
    // cluster's record.
    assert_eq!(report["plannedMigrations"], all_vms.len(), "{report:#}");
    let migrations = round_migrations(kc);
    let succeeded: Vec<&String> = migrations
        .iter()
        .filter(|(_, p)| p == "Succeeded")
        .map(|(vmi, _)| vmi)
        .collect();
    let mut per_vm: BTreeMap<&str, usize> = BTreeMap::new();
    for vmi in &succeeded {
        *per_vm.entry(vmi.as_str()).or_default() += 1;
    }
    assert!(per_vm.values().all(|n| *n == 1), "a VM moved twice: {per_vm:?}");
    assert_eq!(per_vm.len(), all_vms.len(), "every VM moved: {per_vm:?}");
    let reported: usize = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["migrated"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(reported, succeeded.len(), "{report:#}");
    for step in report["steps"].as_array().unwrap() {
        assert_eq!(step["phase"], "Done", "{step:#}");
        assert_eq!(step["steered"], true, "{step:#}");
    }
    let placed = vmi_placements(kc);
    for vm in all_vms {
        assert!(
            placed.iter().any(|p| p.starts_with(&format!("{vm}=Running/"))),
            "{vm} runs: {placed:?}"
        );
    }
    assert!(cordoned(kc).is_empty(), "{:?}", cordoned(kc));
    assert_eq!(target_labelled(kc), "", "the steering labels are gone");
    let _ = std::fs::remove_dir_all(&marks);
}

/// A VM with a ReadWriteOnce disk (it cannot live-migrate) and runStrategy RerunOnFailure,
/// started on node-5.
async fn keeper_on_node_5(kc: &Path) {
    let manifests = "---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: keeper-data, namespace: default}\n\
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n\
---\napiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: keeper, namespace: default}\n\
spec:\n  runStrategy: RerunOnFailure\n  template:\n    spec:\n      evictionStrategy: LiveMigrate\n      \
domain: {resources: {requests: {memory: 1Gi}}, devices: {disks: [{name: data, disk: {bus: virtio}}]}}\n      \
volumes: [{name: data, persistentVolumeClaim: {claimName: keeper-data}}]\n";
    vm_e2e::start_on(kc, "node-5", &ALL, manifests, &["keeper"]).await;
}

fn keeper_state(kc: &Path) -> String {
    let strategy = kubectl(kc, &["get", "vm", "keeper", "-o", "jsonpath={.spec.runStrategy}"]);
    let placed = vmi_placements(kc);
    let vmi = placed
        .iter()
        .find(|p| p.starts_with("keeper="))
        .cloned()
        .unwrap_or_else(|| "keeper=none".into());
    format!("{strategy} {vmi}")
}

async fn pause_continue_and_abort(kc: &Path) {
    keeper_on_node_5(kc).await;
    let args = ["node-5", "--pause", "--shutdown-non-migratable", "--yes"];

    // Paused after the drain: the node cordoned, the keeper stopped and recorded.
    let out = rolling(kc, &args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout.contains("paused after draining node node-5"), "{stdout}");
    assert_eq!(cordoned(kc), ["node-5"]);
    wait_until("the keeper is stopped", || {
        keeper_state(kc).starts_with("Halted keeper=none")
    })
    .await;

    // --status from another process; running the round again is told to --continue.
    let status = rolling(kc, &["--status"]);
    let shown = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        shown.contains("paused at step 1 (node-5: in maintenance)")
            && shown.contains("No run works on it now"),
        "{shown}"
    );
    let again = rolling(kc, &args);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--continue"),
        "{}",
        text(&again)
    );

    // --continue: node-5 back, uncordoned, the keeper restarted and running.
    let out = rolling(kc, &["--continue"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Round done: 1 node(s)"),
        "{}",
        text(&out)
    );
    assert!(cordoned(kc).is_empty(), "{:?}", cordoned(kc));
    assert!(
        keeper_state(kc).starts_with("RerunOnFailure keeper=Running/"),
        "{}",
        keeper_state(kc)
    );
    // Finished rounds have nothing to continue or abort.
    let out = rolling(kc, &["--continue"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // Paused again, then aborted: node-5 schedulable, the keeper running again.
    let keeper_node = keeper_state(kc)
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let args = [
        keeper_node.as_str(),
        "--pause",
        "--shutdown-non-migratable",
        "--yes",
    ];
    let out = rolling(kc, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    wait_until("the keeper is stopped", || {
        keeper_state(kc).starts_with("Halted keeper=none")
    })
    .await;
    let out = rolling(kc, &["--abort"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout.contains(&format!("node {keeper_node} uncordoned"))
            && stdout.contains("restarted default/keeper"),
        "{stdout}"
    );
    assert!(cordoned(kc).is_empty(), "{:?}", cordoned(kc));
    wait_until("the keeper runs again", || {
        keeper_state(kc).starts_with("RerunOnFailure keeper=Running/")
    })
    .await;
    assert_eq!(status_json(kc)["status"], "Aborted");
    assert_eq!(target_labelled(kc), "");
}

async fn a_step_that_turns_infeasible_stops_before_its_drain(kc: &Path) {
    let floor = (tightest_free_memory(kc, &["node-1", "node-2"]) - GIB).to_string();
    let out = rolling(
        kc,
        &[
            "node-1",
            "node-2",
            "--pause",
            "--yes",
            "--min-free-memory",
            &floor,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let state = status_json(kc);
    let second = state["steps"][1]["node"].as_str().unwrap().to_string();
    let run = state["run"].as_str().unwrap().to_string();

    // Meanwhile: a 2Gi VM, wherever it fits; it takes more than the 1Gi above the floor.
    apply_manifests(kc, &always_vm("big").replace("memory: 1Gi", "memory: 2Gi"));
    wait_until("the big VM runs", || {
        vmi_placements(kc).iter().any(|p| p.starts_with("big=Running/"))
    })
    .await;
    continue_stops_before_step_2(kc, &run, &second, &["less than the", "--min-free-memory keeps"]);
    let _ = kubectl(kc, &["delete", "vm", "big"]);
    wait_until("the big VM is gone", || {
        !vmi_placements(kc).iter().any(|p| p.starts_with("big="))
    })
    .await;

    // Then: a VM that only the second node admits.
    let pinned = always_vm("pinned").replace(
        "      domain:",
        &format!("      nodeSelector: {{kubernetes.io/hostname: {second}}}\n      domain:"),
    );
    apply_manifests(kc, &pinned);
    wait_until("the pinned VM runs", || {
        vmi_placements(kc).contains(&format!("pinned=Running/{second}"))
    })
    .await;
    continue_stops_before_step_2(kc, &run, &second, &["default/pinned"]);

    let _ = kubectl(kc, &["delete", "vm", "pinned", "--wait=false"]);
    let out = rolling(kc, &["--abort"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(status_json(kc)["status"], "Aborted");
}

/// `--continue` stops the round before the drain of its second node, `second`, saying
/// `because`: its first step done, the second pending, no node cordoned, no migration of the
/// second step.
fn continue_stops_before_step_2(kc: &Path, run: &str, second: &str, because: &[&str]) {
    let out = rolling(kc, &["--continue"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        stdout.contains(&format!("step 2 (node {second}) is no longer feasible"))
            && stdout.contains("its drain was not started")
            && because.iter().all(|b| stdout.contains(b)),
        "{stdout}"
    );
    let state = status_json(kc);
    assert_eq!(state["status"], "Stopped", "{state:#}");
    assert_eq!(state["steps"][0]["phase"], "Done", "{state:#}");
    assert_eq!(state["steps"][1]["phase"], "Pending", "{state:#}");
    assert!(
        cordoned(kc).is_empty(),
        "nothing of step 2 changed: {:?}",
        cordoned(kc)
    );
    let of_step_2 = kubectl(
        kc,
        &[
            "get",
            "vmim",
            "-A",
            "-l",
            &format!("{RUN_LABEL}={run},vm-drain-safe.kubevirt.io/node={second}"),
            "-o",
            "name",
        ],
    );
    assert_eq!(of_step_2, "", "no migration of step 2");
}

async fn a_stuck_migration_stops_the_round_resumably(kc: &Path) {
    let node = "node-3";
    let before: Vec<String> = vmi_placements(kc)
        .into_iter()
        .filter(|p| p.ends_with(&format!("/{node}")))
        .collect();
    assert!(!before.is_empty(), "{node} runs VMs: {:?}", vmi_placements(kc));
    let out = rolling(
        kc,
        &[node, "--exec", "true", "--migration-timeout", "1s", "--yes"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        stdout.contains("is STUCK: its migration was still")
            && stdout.contains("(--migration-timeout) and was cancelled"),
        "{}",
        text(&out)
    );
    let state = status_json(kc);
    assert_eq!(state["status"], "Stopped", "{state:#}");
    assert_eq!(state["steps"][0]["phase"], "Draining", "{state:#}");
    assert_eq!(cordoned(kc), [node], "the node stays cordoned");
    // Every VM still runs; the ones the stuck migrations were cancelled for stay on the node.
    wait_until("no migration of the round is left running", || {
        round_migrations(kc)
            .iter()
            .all(|(_, phase)| matches!(phase.as_str(), "Succeeded" | "Failed"))
    })
    .await;
    let placed = vmi_placements(kc);
    assert!(
        placed.iter().any(|p| p.ends_with(&format!("=Running/{node}"))),
        "cancelled migrations leave their VMs on {node}: {placed:?}"
    );
    assert!(placed.iter().all(|p| p.contains("=Running/")), "{placed:?}");
    let out = rolling(kc, &["--abort"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(cordoned(kc).is_empty(), "{:?}", cordoned(kc));
}

/// On a KubeVirt before 1.6 (the sandbox serves 1.5's migration schema, which prunes
/// `spec.addedNodeSelector`), a round cannot steer: the scheduler chooses the targets, each
/// step says so, and the report counts the moves the plan would have spared as the cluster
/// recorded them. The round also has a `--gate` that fails once. node-1 is large and nearly empty, node-3 small and half full, so the
/// scheduler puts node-2's VMs on node-1, still to come, and they move again; the plan sends
/// them to node-3, outside the round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_added_node_selector_the_scheduler_chooses_and_the_report_counts_the_extra_moves_and_a_failed_gate_stops_the_round()
 {
    let nodes = [("node-1", "256Gi"), ("node-2", "64Gi"), ("node-3", "16Gi")];
    let config = SandboxConfig {
        nodes: nodes
            .iter()
            .map(|(n, memory)| NodeTemplate::worker(*n, "16", memory, "110"))
            .collect(),
        kubevirt_release: kubevirt_sim::crds::KubeVirtRelease { minor: 5 },
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    let names: Vec<&str> = nodes.iter().map(|(n, _)| *n).collect();
    let half = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: half, namespace: default}\n\
spec:\n  nodeName: node-3\n  containers: [{name: app, image: app, resources: {requests: {memory: 8Gi}}}]\n";
    apply_manifests(&kc, half);
    for (node, count) in [("node-1", 4), ("node-2", 2)] {
        let vms: Vec<String> = (1..=count).map(|i| format!("{node}-vm-{i}")).collect();
        let manifests: String = vms.iter().map(|n| always_vm(n)).collect();
        let vm_names: Vec<&str> = vms.iter().map(String::as_str).collect();
        vm_e2e::start_on(&kc, node, &names, &manifests, &vm_names).await;
    }

    // No round yet: --status says so; asked for a document, it prints none.
    let out = rolling(&kc, &["--status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("No rolling round is recorded"));
    let out = rolling(&kc, &["--status", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No rolling round is recorded"));

    let round = ["node-1", "node-2"];
    let out = rolling(&kc, &[&round[..], &["--dry-run", "-o", "json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["nodes"], serde_json::json!(["node-2", "node-1"]), "{plan:#}");
    assert_eq!(
        (plan["migrations"].as_u64(), plan["movesAgain"].as_u64()),
        (Some(6), Some(0))
    );

    // The operator's --gate fails after the first node until a file exists: the round stops
    // before the next node, and the same command, once the check passes, goes on.
    let marks = std::env::temp_dir().join(format!("rolling-gate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&marks);
    std::fs::create_dir_all(&marks).unwrap();
    let gate = format!(
        "echo \"$NODE\" >> {m}/checked && test -e {m}/quorum",
        m = marks.display()
    );
    let args = [
        &round[..],
        &["--exec", "true", "--gate", &gate, "--yes", "-o", "json"],
    ]
    .concat();
    let out = rolling(&kc, &args);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["status"], "Stopped", "{state:#}");
    assert!(
        state["message"]
            .as_str()
            .is_some_and(|m| m.contains("the --gate check after node node-2 failed")
                && m.contains("exited with 1")
                && m.contains("The next node was not touched")),
        "{state:#}"
    );
    assert_eq!(state["steps"][1]["phase"], "Pending", "{state:#}");
    assert!(cordoned(&kc).is_empty(), "{:?}", cordoned(&kc));
    std::fs::write(marks.join("quorum"), "").unwrap();
    let out = rolling(&kc, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(lines(&marks.join("checked")), ["node-2", "node-2", "node-1"]);
    let _ = std::fs::remove_dir_all(&marks);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "Done", "{report:#}");
    for step in report["steps"].as_array().unwrap() {
        assert_eq!(step["steered"], false, "{step:#}");
        assert!(
            step["note"]
                .as_str()
                .is_some_and(|n| n.contains("does not keep spec.addedNodeSelector")),
            "{step:#}"
        );
    }
    let migrated: usize = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["migrated"].as_array().map_or(0, Vec::len))
        .sum();
    let succeeded = round_migrations(&kc)
        .iter()
        .filter(|(_, phase)| phase == "Succeeded")
        .count();
    assert_eq!(migrated, succeeded, "the report is the cluster's record");
    assert!(migrated > 6, "node-2's VMs moved again: {report:#}");
    let status = rolling(&kc, &["--status"]);
    let shown = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        shown.contains(&format!("Migrations: {migrated} (plan: 6;")),
        "{shown}"
    );

    let placed = vmi_placements(&kc);
    assert_eq!(
        placed.iter().filter(|p| p.contains("=Running/")).count(),
        6,
        "{placed:?}"
    );
    assert!(cordoned(&kc).is_empty(), "{:?}", cordoned(&kc));
    assert_eq!(target_labelled(&kc), "", "the steering labels are gone");
}
