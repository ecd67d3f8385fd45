//! `kubectl vm-recover --from-node NODE` on the sandbox: a dead node is refused until the
//! operator confirms it is off, then its VMs run elsewhere per their run strategy; a Ready
//! node's VMs are live-migrated, and refused when the others have no room.

use kubevirt_sim::nodes::NodeTemplate;
use kubevirt_sim::{Sandbox, SandboxConfig};
use serde_json::Value;
use vm_e2e::{kubectl, node_ready, run_plugin, start_vms_on_node_1, vm_domain, vmi_placements, wait_until};

fn vm(name: &str, strategy: &str, extra: &str) -> String {
    sized_vm(name, strategy, "1Gi", extra)
}

fn sized_vm(name: &str, strategy: &str, memory: &str, extra: &str) -> String {
    let head = format!(
        "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {{name: {name}, namespace: default}}\n"
    );
    let spec = format!(
        "spec:\n  runStrategy: {strategy}\n  template:\n    spec:\n      evictionStrategy: LiveMigrate\n"
    );
    format!("{head}{spec}{}{extra}", vm_domain(memory))
}

const RWO: &str = "---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data, namespace: default}\n\
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n";

/// The resourceVersion of every object a recovery could touch, and the node's spec (its
/// status and labels keep changing under the node controllers, which the tool never writes).
fn resource_versions(kc: &std::path::Path) -> String {
    kubectl(
        kc,
        &[
            "get",
            "vm,vmi,pods,pvc,volumeattachments",
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.resourceVersion} {end}",
        ],
    ) + &kubectl(kc, &["get", "node", "node-1", "-o", "jsonpath={.spec}"])
}

/// Runs vm-recover with `args` on a pseudo-terminal (util-linux `script`), typing `typed`.
fn on_a_terminal(kc: &std::path::Path, args: &str, typed: &str) -> std::process::Output {
    use std::io::Write;
    let command = format!(
        "{} --kubeconfig {} {args}",
        vm_e2e::plugin_bin("kubectl-vm_recover").display(),
        kc.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux script is installed");
    child.stdin.take().unwrap().write_all(typed.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// A kubeconfig for a fresh user bound to deploy/rbac/vm-recover.yaml and nothing else.
fn with_recover_role(kc: &std::path::Path) -> std::path::PathBuf {
    let role = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac/vm-recover.yaml");
    let _ = kubectl(kc, &["apply", "-f", role.to_str().unwrap()]);
    let _ = kubectl(
        kc,
        &[
            "create",
            "clusterrolebinding",
            "recoverer",
            "--clusterrole=vm-recover",
            "--user=recoverer",
        ],
    );
    vm_e2e::impersonating(kc, "recoverer")
}

/// The run's stdout as JSON, which must be exactly one document.
fn one_json_document(out: &std::process::Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&text)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"));
    assert_eq!(docs.len(), 1, "one document on stdout: {text}");
    docs.into_iter().next().unwrap_or_default()
}

fn stdout(out: &std::process::Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_refused_until_confirmed_then_its_vms_run_elsewhere() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    let manual = vm("manual", "Manual", "");
    let manifests = [
        RWO.to_string(),
        vm("always", "Always", ""),
        vm("rerun", "RerunOnFailure", ""),
        vm(
            "rwo",
            "Always",
            "      volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]\n",
        ),
        manual,
    ]
    .concat();
    // A Manual VM runs once asked to (what `virtctl start` does).
    let _ = kubectl(&kc, &["cordon", "node-2", "node-3"]);
    let file = std::env::temp_dir().join(format!("recover-{}.yaml", std::process::id()));
    std::fs::write(&file, &manifests).unwrap();
    let _ = kubectl(&kc, &["apply", "-f", file.to_str().unwrap()]);
    let _ = kubectl(
        &kc,
        &[
            "patch",
            "vm",
            "manual",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"stateChangeRequests":[{"action":"Start"}]}}"#,
        ],
    );
    wait_until("four VMIs run on node-1", || {
        vmi_placements(&kc)
            .iter()
            .filter(|e| e.ends_with("=Running/node-1"))
            .count()
            == 4
    })
    .await;
    let _ = kubectl(&kc, &["uncordon", "node-2", "node-3"]);

    // node-1 loses power: the control plane sees it go NotReady.
    sandbox.node_down("node-1").unwrap();
    wait_until("node-1 is not Ready", || node_ready(&kc, "node-1") != "True").await;
    // The node lifecycle controller taints it NoSchedule, then NoExecute: let it finish.
    wait_until("node-1 is tainted unreachable:NoExecute", || {
        kubectl(&kc, &["get", "node", "node-1", "-o", "jsonpath={.spec.taints}"]).contains("NoExecute")
    })
    .await;
    // A partitioned node whose kubelet still renews its Lease: it might still run the VMs, so
    // even a confirmed recovery is refused without --force, and nothing changes.
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%6NZ"])
        .output()
        .unwrap();
    let renewed = String::from_utf8_lossy(&date.stdout).trim().to_string();
    let _ = kubectl(
        &kc,
        &[
            "patch",
            "lease",
            "node-1",
            "-n",
            "kube-node-lease",
            "--type=merge",
            "-p",
            &format!(r#"{{"spec":{{"renewTime":"{renewed}"}}}}"#),
        ],
    );
    let before = resource_versions(&kc);
    let out = run_plugin(
        "kubectl-vm_recover",
        &kc,
        &["--from-node", "node-1", "--confirm-fenced"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("has not expired"), "{}", stdout(&out));
    assert_eq!(before, resource_versions(&kc));

    // The node's Lease expires.
    wait_until("node-1's Lease expired", || {
        let out = run_plugin(
            "kubectl-vm_recover",
            &kc,
            &["--from-node", "node-1", "--dry-run", "-o", "json"],
        );
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        plan["nodeAssessment"]["leaseRenewing"] == false
    })
    .await;

    // Without confirmation: exit 1 and nothing changed.
    let before = resource_versions(&kc);
    let out = run_plugin("kubectl-vm_recover", &kc, &["--from-node", "node-1"]);
    let after = resource_versions(&kc);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nobody confirmed it is powered off"),
        "{}",
        stdout(&out)
    );
    assert_eq!(before, after, "a refused recovery changes nothing");

    // The assessment says what will happen to each VM.
    let out = run_plugin(
        "kubectl-vm_recover",
        &kc,
        &["--from-node", "node-1", "--dry-run", "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["kind"], "RecoveryPlan");
    assert_ne!(plan["nodeState"], "Ready");
    let action = |name: &str| {
        plan["vms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .map(|v| v["action"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(action("always"), "restart-elsewhere");
    assert_eq!(action("rerun"), "restart-elsewhere");
    assert_eq!(action("rwo"), "restart-elsewhere");
    assert_eq!(action("manual"), "left-stopped");
    let rwo = plan["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "rwo")
        .unwrap();
    assert_eq!(rwo["rwoVolumes"], serde_json::json!(["data"]), "{rwo}");
    assert_eq!(
        rwo["volumeAttachments"].as_array().map(Vec::len),
        Some(1),
        "the attachment that pins its volume to node-1: {rwo}"
    );

    // Confirmed at the terminal, by typing the node name: every Always and RerunOnFailure VM,
    // the RWO one included, runs elsewhere.
    let out = on_a_terminal(&kc, "--from-node node-1 --timeout 3m", "node-1\n");
    let text = stdout(&out);
    assert!(text.contains("Type the node name to confirm"), "{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("node.kubernetes.io/out-of-service"), "{text}");
    assert!(text.contains("from confirmation to all running"), "{text}");
    assert!(
        text.contains("default/manual") && text.contains("left-stopped"),
        "{text}"
    );
    let now = vmi_placements(&kc);
    for name in ["always", "rerun", "rwo"] {
        assert!(
            now.iter()
                .any(|e| e.starts_with(&format!("{name}=Running/")) && !e.ends_with("/node-1")),
            "{name} runs elsewhere: {now:?}"
        );
    }
    assert!(
        !now.iter().any(|e| e.starts_with("manual=Running")),
        "the Manual VM stays stopped: {now:?}"
    );

    // --start-stopped starts the Manual one; this run has exactly the vm-recover ClusterRole.
    let recoverer = with_recover_role(&kc);
    let out = run_plugin(
        "kubectl-vm_recover",
        &recoverer,
        &[
            "--from-node",
            "node-1",
            "--confirm-fenced",
            "--start-stopped",
            "--timeout",
            "3m",
            "-o",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // -o json of an executed recovery is one document: the result, the plan inside.
    let result = one_json_document(&out);
    assert_eq!(result["kind"], "RecoveryResult", "{result}");
    assert_eq!(result["plan"]["node"], "node-1", "{result}");
    wait_until("the Manual VM runs elsewhere", || {
        vmi_placements(&kc)
            .iter()
            .any(|e| e.starts_with("manual=Running/") && !e.ends_with("/node-1"))
    })
    .await;

    // Never two copies: no two launcher pods of one VM ran at the same time, and each
    // recovered VM ran once on node-1 and once elsewhere.
    let runs = kubevirt_sim::history::read(sandbox.state_dir());
    let overlaps = kubevirt_sim::history::overlapping_runs(&runs);
    assert!(
        overlaps.is_empty(),
        "two copies of a VM ran at once: {overlaps:?}"
    );
    for name in ["always", "rerun", "rwo", "manual"] {
        let nodes: Vec<&str> = runs
            .iter()
            .filter(|r| r.vmi == name)
            .map(|r| r.node.as_str())
            .collect();
        assert_eq!(nodes.len(), 2, "{name}: {nodes:?}");
        assert_eq!(nodes[0], "node-1", "{name}: {nodes:?}");
    }

    // --cleanup waits for the node to be back, then removes the taint.
    let out = run_plugin("kubectl-vm_recover", &kc, &["--from-node", "node-1", "--cleanup"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    sandbox.node_up("node-1").unwrap();
    wait_until("node-1 is Ready again", || node_ready(&kc, "node-1") == "True").await;
    let out = run_plugin("kubectl-vm_recover", &kc, &["--from-node", "node-1", "--cleanup"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let taints = kubectl(&kc, &["get", "node", "node-1", "-o", "jsonpath={.spec.taints}"]);
    assert!(!taints.contains("out-of-service"), "{taints}");
    let _ = std::fs::remove_file(file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_node_live_migrates_and_refuses_without_room() {
    let config = SandboxConfig {
        nodes: NodeTemplate::workers(3, "8", "8Gi", "110"),
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    let big = |name: &str, node: &str| {
        sized_vm(
            name,
            "Always",
            "7Gi",
            &format!("      nodeSelector: {{kubernetes.io/hostname: {node}}}\n"),
        )
    };
    start_vms_on_node_1(
        &kc,
        &format!("{}{}", vm("web-1", "Always", ""), vm("web-2", "Always", "")),
        2,
    );

    // Room elsewhere: both migrate, nothing destructive (with exactly the vm-recover role).
    let out = run_plugin(
        "kubectl-vm_recover",
        &with_recover_role(&kc),
        &["--from-node", "node-1", "--yes", "--timeout", "3m", "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // One document: the MigrationResult with the plan it acted on.
    let result = one_json_document(&out);
    assert_eq!(result["kind"], "MigrationResult", "{result}");
    assert_eq!(result["migrated"].as_array().map(Vec::len), Some(2), "{result}");
    assert_eq!(result["plan"]["node"], "node-1", "{result}");
    for entry in vmi_placements(&kc) {
        assert!(
            entry.contains("=Running/") && !entry.ends_with("/node-1"),
            "{entry}"
        );
    }
    let migrations = kubectl(
        &kc,
        &[
            "get",
            "vmim",
            "-o",
            "jsonpath={range .items[*]}{.status.phase} {end}",
        ],
    );
    assert_eq!(
        migrations
            .split_whitespace()
            .filter(|p| *p == "Succeeded")
            .count(),
        2
    );

    // Now the other nodes fill up and node-1 gets two VMs again: no room, refused, and it
    // says where room is missing.
    let _ = kubectl(&kc, &["delete", "vm", "web-1", "web-2", "--wait=true"]);
    wait_until("the web VMIs are gone", || vmi_placements(&kc).is_empty()).await;
    let _ = kubectl(&kc, &["uncordon", "node-1"]);
    let file = std::env::temp_dir().join(format!("recover-room-{}.yaml", std::process::id()));
    std::fs::write(
        &file,
        format!("{}{}", big("fill-2", "node-2"), big("fill-3", "node-3")),
    )
    .unwrap();
    let _ = kubectl(&kc, &["apply", "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    wait_until("the fillers run", || {
        vmi_placements(&kc)
            .iter()
            .filter(|e| e.starts_with("fill-") && e.contains("=Running/"))
            .count()
            == 2
    })
    .await;
    start_vms_on_node_1(
        &kc,
        &format!("{}{}", vm("db-1", "Always", ""), vm("db-2", "Always", "")),
        2,
    );
    let before = resource_versions(&kc);
    let out = run_plugin("kubectl-vm_recover", &kc, &["--from-node", "node-1", "--yes"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("memory free"), "says where room is missing: {text}");
    assert_eq!(before, resource_versions(&kc), "nothing changed");
}
