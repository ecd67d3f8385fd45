//! A VM that a drain stopped (it cannot migrate: a ReadWriteOnce disk) starts again on its own
//! node, after `--uncordon` and after a rolling step: the node is uncordoned before the VM's
//! run strategy is given back. The VM is pinned to node-1 by its nodeSelector, so the only
//! place it may run is the node it was stopped on; restarted while that node is still
//! cordoned, it would wait for a node the scheduler may not use, and any VM that could go
//! elsewhere would.
//!
//! The order is read from two watches started before the uncordon (the node's
//! `spec.unschedulable`, the VM's `spec.runStrategy`): their events carry resourceVersions,
//! which one etcd hands out in one increasing sequence for every object, so the uncordon must
//! carry the smaller one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use kubevirt_sim::{Sandbox, SandboxConfig};
use vm_e2e::{kubectl, output_text as text, run_plugin, start_vms_on_node_1, vmi_placements, wait_until};

/// A PVC and a VM on it (ReadWriteOnce: not live-migratable), runStrategy RerunOnFailure,
/// pinned to node-1.
fn pinned_db() -> String {
    "---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: db-data, namespace: default}\n\
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n\
---\napiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: db, namespace: default}\n\
spec:\n  runStrategy: RerunOnFailure\n  template:\n    spec:\n      evictionStrategy: LiveMigrate\n      \
nodeSelector: {kubernetes.io/hostname: node-1}\n      \
domain: {resources: {requests: {memory: 512Mi}}, devices: {disks: [{name: data, disk: {bus: virtio}}]}}\n      \
volumes: [{name: data, persistentVolumeClaim: {claimName: db-data}}]\n"
        .to_string()
}

/// `kubectl get … --watch` printing `resourceVersion value` lines into a file.
struct Watch {
    child: Child,
    file: PathBuf,
}

impl Watch {
    fn start(kc: &Path, what: &[&str], field: &str, tag: &str) -> Self {
        // The tests of this binary run at once, in one process: one file per watch.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let file = std::env::temp_dir().join(format!("vm-e2e-watch-{tag}-{}-{n}", std::process::id()));
        let out = std::fs::File::create(&file).expect("temp file writable");
        let template = format!("jsonpath={{.metadata.resourceVersion}} {{{field}}}{{\"\\n\"}}");
        let child = Command::new("kubectl")
            .env_remove("KUBECONFIG")
            .arg("--kubeconfig")
            .arg(kc)
            .args(["get"])
            .args(what)
            .args(["--watch", "-o", &template])
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl is installed");
        Self { child, file }
    }

    /// `(resourceVersion, value)` of every event so far, the current state first.
    fn events(&self) -> Vec<(u64, String)> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (rv, value) = l.split_once(' ').unwrap_or((l, ""));
                Some((rv.parse().ok()?, value.trim().to_string()))
            })
            .collect()
    }

    /// The resourceVersion of the first event with `to` after one with `from`.
    fn first_change(&self, from: &str, to: &str) -> Option<u64> {
        let events = self.events();
        let start = events.iter().position(|(_, v)| v == from)?;
        events[start..].iter().find(|(_, v)| v == to).map(|(rv, _)| *rv)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The two watches: node-1's cordon and the VM's run strategy.
fn watch_order(kc: &Path) -> (Watch, Watch) {
    (
        Watch::start(kc, &["node", "node-1"], ".spec.unschedulable", "node"),
        Watch::start(kc, &["vm", "db"], ".spec.runStrategy", "vm"),
    )
}

/// The VM was stopped and started again, after node-1 was uncordoned; it runs on node-1, and
/// the record of stopped VMs is gone from the node.
async fn assert_back_on_its_node(kc: &Path, node: &Watch, vm: &Watch) {
    wait_until("db runs on node-1 again", || {
        vmi_placements(kc).contains(&"db=Running/node-1".to_string())
    })
    .await;
    let uncordoned = node.first_change("true", "");
    let restored = vm.first_change("Halted", "RerunOnFailure");
    let (Some(uncordoned), Some(restored)) = (uncordoned, restored) else {
        panic!(
            "both changes seen by the watches: node {:?}, vm {:?}",
            node.events(),
            vm.events()
        );
    };
    assert!(
        uncordoned < restored,
        "node-1 uncordoned (resourceVersion {uncordoned}) before db got its runStrategy back ({restored})"
    );
    assert_eq!(
        kubectl(
            kc,
            &[
                "get",
                "node",
                "node-1",
                "-o",
                "jsonpath={.metadata.annotations.vm-drain-safe\\.kubevirt\\.io/stopped-vms}"
            ]
        ),
        "",
        "the record of stopped VMs is cleared once they are restarted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncordon_restarts_a_stopped_vm_on_its_own_node() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    start_vms_on_node_1(&kc, &pinned_db(), 1);
    assert!(vmi_placements(&kc).contains(&"db=Running/node-1".to_string()));

    let out = run_plugin(
        "kubectl-vm_drain_safe",
        &kc,
        &["node-1", "--yes", "--shutdown-non-migratable", "--timeout", "3m"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    wait_until("db is stopped", || {
        !vmi_placements(&kc).iter().any(|p| p.starts_with("db="))
    })
    .await;
    assert_eq!(
        kubectl(&kc, &["get", "vm", "db", "-o", "jsonpath={.spec.runStrategy}"]),
        "Halted"
    );

    let (node, vm) = watch_order(&kc);
    wait_until("the watches print the current state", || {
        !node.events().is_empty() && !vm.events().is_empty()
    })
    .await;
    let out = run_plugin("kubectl-vm_drain_safe", &kc, &["node-1", "--uncordon"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restarted default/db"),
        "{}",
        text(&out)
    );
    assert_back_on_its_node(&kc, &node, &vm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_step_restarts_a_stopped_vm_on_its_own_node() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    start_vms_on_node_1(&kc, &pinned_db(), 1);
    assert!(vmi_placements(&kc).contains(&"db=Running/node-1".to_string()));

    // The watches see the whole step: not cordoned, cordoned, uncordoned.
    let (node, vm) = watch_order(&kc);
    wait_until("the watches print the current state", || {
        !node.events().is_empty() && !vm.events().is_empty()
    })
    .await;
    let out = run_plugin(
        "kubectl-vm_drain_safe",
        &kc,
        &[
            "--rolling",
            "node-1",
            "--exec",
            "true",
            "--shutdown-non-migratable",
            "--node-timeout",
            "3m",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Round done: 1 node(s)"), "{}", text(&out));
    assert!(
        vm.events().iter().any(|(_, s)| s == "Halted"),
        "the step stopped db: {:?}",
        vm.events()
    );
    assert_back_on_its_node(&kc, &node, &vm).await;
}
