//! `kubectl vm-drain-safe --rolling ... --dry-run` on the sandbox: the plan of a maintenance
//! round over four nodes that each run two VMs, with a fifth node outside the round. The plan
//! finds an order, moves every VM once, names the nodes by `-l` as by name, changes nothing,
//! and a VM pinned to its node blocks the round at that node's step with the reason.

use std::collections::BTreeMap;

use kubevirt_sim::nodes::NodeTemplate;
use kubevirt_sim::{Sandbox, SandboxConfig};
use serde_json::Value;
use vm_e2e::{
    always_vm, apply_manifests, kubectl, resource_versions, run_plugin, vm_domain, vmi_placements, wait_until,
};

const ROUND: [&str; 4] = ["node-1", "node-2", "node-3", "node-4"];
const ALL: [&str; 5] = ["node-1", "node-2", "node-3", "node-4", "node-5"];

fn config() -> SandboxConfig {
    SandboxConfig {
        nodes: ALL
            .iter()
            .map(|n| NodeTemplate::worker(*n, "8", "8Gi", "110"))
            .collect(),
        ..SandboxConfig::default()
    }
}

/// Starts `vms` on `node` (see [`vm_e2e::start_on`]).
async fn start_on(kc: &std::path::Path, node: &str, vms: &[String]) {
    let manifests: String = vms.iter().map(|n| always_vm(n)).collect();
    let names: Vec<&str> = vms.iter().map(String::as_str).collect();
    vm_e2e::start_on(kc, node, &ALL, &manifests, &names).await;
}

fn rolling(kc: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = run_plugin("kubectl-vm_drain_safe", kc, &[&["--rolling"], args].concat());
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_round_is_planned_with_each_vm_moved_once_and_blocks_on_a_pinned_vm() {
    let sandbox = Sandbox::start(config()).await.expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    let mut on_node: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for node in ROUND {
        let vms: Vec<String> = (1..=2).map(|i| format!("{node}-vm-{i}")).collect();
        start_on(&kc, node, &vms).await;
        on_node.insert(node, vms);
    }
    for node in ROUND {
        let _ = kubectl(&kc, &["label", "node", node, "pool=round"]);
    }
    let before = resource_versions(&kc);

    let (code, stdout, stderr) = rolling(
        &kc,
        &["node-1", "node-2", "node-3", "node-4", "--dry-run", "-o", "json"],
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let plan: Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(plan["kind"], "RollingPlan", "{plan:#}");
    assert_eq!(plan["feasible"], true, "{plan:#}");
    let order: Vec<&str> = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ROUND, "every node of the round once: {plan:#}");
    // Each VM leaves at its own node's step, once, to node-5 or to a node already maintained.
    assert_eq!(plan["migrations"], 8, "{plan:#}");
    assert_eq!(plan["movesAgain"], 0, "{plan:#}");
    assert!(plan["naiveMigrations"].as_u64().unwrap() >= 8, "{plan:#}");
    for (i, step) in plan["steps"].as_array().unwrap().iter().enumerate() {
        let node = step["node"].as_str().unwrap();
        let maintained = &order[..i];
        let names: Vec<&str> = step["vms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{step:#}");
        assert!(
            names.iter().all(|n| n.starts_with(&format!("{node}-vm-"))),
            "{step:#}"
        );
        for vm in step["vms"].as_array().unwrap() {
            assert_eq!(vm["action"], "migrate", "{vm:#}");
            let target = vm["target"].as_str().unwrap();
            assert!(
                target == "node-5" || maintained.contains(&target),
                "step {i}: {vm:#}"
            );
        }
    }

    // The same round by label, for people: the table and the totals.
    let (code, table, stderr) = rolling(&kc, &["-l", "pool=round", "--dry-run"]);
    assert_eq!(code, Some(0), "{table}\n{stderr}");
    assert!(
        table.contains(&format!("Order: {}.", order.join(", "))),
        "{table}"
    );
    assert!(table.contains("Migrations: 8 (each VM moves once)"), "{table}");
    assert!(table.contains("Rolling plan for 4 node(s): feasible."), "{table}");

    // Running a round needs its maintenance, and says how to give it; nothing changes.
    let (code, _, stderr) = rolling(&kc, &["node-1", "node-2"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--exec CMD, or --pause"), "{stderr}");
    // Several nodes without --rolling are a usage error that points to it.
    let out = run_plugin("kubectl-vm_drain_safe", &kc, &["node-1", "node-2", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rolling"));
    assert_eq!(resource_versions(&kc), before, "planning changed nothing");

    // A VM pinned to node-3 by hostname: the round stops at node-3's step, naming it.
    let pinned = format!(
        "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {{name: pinned, namespace: default}}\n\
spec:\n  runStrategy: Always\n  template:\n    spec:\n      evictionStrategy: LiveMigrate\n      \
nodeSelector: {{kubernetes.io/hostname: node-3}}\n{}",
        vm_domain("1Gi")
    );
    apply_manifests(&kc, &pinned);
    wait_until("the pinned VM runs on node-3", || {
        vmi_placements(&kc).contains(&"pinned=Running/node-3".to_string())
    })
    .await;
    let before = resource_versions(&kc);
    let (code, stdout, stderr) = rolling(&kc, &["-l", "pool=round", "--dry-run", "-o", "json"]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("the round is blocked; nothing was changed"),
        "{stderr}"
    );
    let plan: Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(plan["feasible"], false, "{plan:#}");
    let failing = &plan["failingStep"];
    assert_eq!(failing["node"], "node-3", "{plan:#}");
    let blockers = failing["blockers"].to_string();
    assert!(
        blockers.contains("default/pinned") && blockers.contains("kubernetes.io/hostname=node-3"),
        "{blockers}"
    );
    assert_eq!(resource_versions(&kc), before, "a blocked plan changed nothing");
}
