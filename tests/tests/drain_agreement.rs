//! The drain planner agrees with the real kube-scheduler, in both directions: for the VMs the
//! plan migrates, real migrations' target pods get scheduled; for the VMs it blocks for want of
//! room or a matching node, the target pods stay Pending.
//!
//! The probe is a real VirtualMachineInstanceMigration per VM, created with the node cordoned
//! and KubeVirt's limits raised so that every target pod exists at once; the scheduler, not the
//! test, decides where (and whether) each one goes.

use std::collections::BTreeMap;
use std::time::Duration;

use kubevirt_sim::nodes::NodeTemplate;
use kubevirt_sim::{Sandbox, SandboxConfig};
use serde_json::json;
use vm_e2e::{drain_plan, kubectl, migration_phases, start_vms_on_node_1, vm_domain};

fn vm(name: &str, memory: &str, placement: &str) -> String {
    let head = format!(
        "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {{name: {name}, namespace: default}}\n"
    );
    let spec = "spec:\n  runStrategy: Always\n  template:\n    spec:\n      evictionStrategy: LiveMigrate\n";
    format!("{head}{spec}{}{placement}", vm_domain(memory))
}

/// node-1 (16Gi, `disk=nvme`) runs four 3Gi VMs and two small ones that only node-1 admits (a
/// nodeSelector and a required node affinity). node-2 and node-3 have 8Gi: two 3Gi VMs each
/// with the launcher overhead.
fn scenario() -> (SandboxConfig, String) {
    let mut node_1 = NodeTemplate::worker("node-1", "16", "16Gi", "110");
    node_1.labels.insert("disk".into(), "nvme".into());
    let config = SandboxConfig {
        nodes: vec![
            node_1,
            NodeTemplate::worker("node-2", "16", "8Gi", "110"),
            NodeTemplate::worker("node-3", "16", "8Gi", "110"),
        ],
        // Every probe migration gets its target pod at once.
        kubevirt_configuration: json!({"migrations": {
            "parallelMigrationsPerCluster": 20, "parallelOutboundMigrationsPerNode": 20}}),
        ..SandboxConfig::default()
    };
    let mut manifests: String = (1..=4).map(|i| vm(&format!("big-{i}"), "3Gi", "")).collect();
    manifests.push_str(&vm("pinned", "512Mi", "      nodeSelector: {disk: nvme}\n"));
    manifests.push_str(&vm(
        "affine",
        "512Mi",
        concat!(
            "      affinity:\n        nodeAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n",
            "            nodeSelectorTerms: [{matchExpressions: [{key: disk, operator: In, values: [nvme]}]}]\n",
        ),
    ));
    (config, manifests)
}

/// The dry-run plan of node-1: VM name → (action, reasons).
fn plan(kc: &std::path::Path) -> BTreeMap<String, (String, String)> {
    let (_, plan) = drain_plan(kc, "node-1");
    plan["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                (
                    v["action"].as_str().unwrap().to_string(),
                    v["reasons"].to_string(),
                ),
            )
        })
        .collect()
}

/// Creates one migration per VM and waits until the scheduler has decided on every target
/// pod: VM name → whether its target pod was scheduled.
async fn probe(kc: &std::path::Path, vms: &[&str], round: u32) -> BTreeMap<String, bool> {
    let manifests: String = vms
        .iter()
        .map(|name| {
            format!(
                "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstanceMigration\n\
metadata: {{name: probe-{round}-{name}, namespace: default}}\nspec: {{vmiName: {name}}}\n"
            )
        })
        .collect();
    let file = std::env::temp_dir().join(format!("agreement-{}-{round}.yaml", std::process::id()));
    std::fs::write(&file, manifests).unwrap();
    let _ = kubectl(kc, &["create", "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);

    let mut verdicts = BTreeMap::new();
    for _ in 0..60 {
        // Target pods carry the migration's UID; the domain annotation names the VMI.
        let pods = kubectl(
            kc,
            &[
                "get",
                "pods",
                "-l",
                "kubevirt.io/migrationJobUID",
                "-o",
                "jsonpath={range .items[*]}{.metadata.annotations.kubevirt\\.io/migrationJobName}={.spec.nodeName}/{.status.conditions[?(@.type==\"PodScheduled\")].reason} {end}",
            ],
        );
        verdicts = pods
            .split_whitespace()
            .filter_map(|entry| {
                let (job, state) = entry.split_once('=')?;
                let name = job.strip_prefix(&format!("probe-{round}-"))?;
                let (node, reason) = state.split_once('/')?;
                let decided = !node.is_empty() || reason == "Unschedulable";
                decided.then(|| (name.to_string(), !node.is_empty()))
            })
            .collect();
        if verdicts.len() == vms.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        verdicts.len(),
        vms.len(),
        "every target pod decided: {verdicts:?}"
    );
    verdicts
}

/// Waits until no migration is still in flight (the unschedulable ones fail after the
/// simulator's timeout).
async fn wait_migrations_finished(kc: &std::path::Path) {
    for _ in 0..120 {
        if migration_phases(kc)
            .iter()
            .all(|p| p == "Succeeded" || p == "Failed")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("migrations still running");
}

/// Checks one round: as many target pods scheduled as the plan migrates (the 3Gi VMs are
/// interchangeable, so which of them the scheduler picks may differ), and none for a VM the
/// plan blocks on a selector or affinity.
fn assert_agreement(plan: &BTreeMap<String, (String, String)>, verdicts: &BTreeMap<String, bool>) {
    let planned = plan.values().filter(|(action, _)| action == "migrate").count();
    let scheduled = verdicts.values().filter(|s| **s).count();
    assert_eq!(planned, scheduled, "plan {plan:#?}\nscheduler {verdicts:#?}");
    for (name, (action, reasons)) in plan {
        if action == "blocked" && !reasons.contains("memory free") && !reasons.contains("CPU free") {
            assert_eq!(
                verdicts.get(name),
                Some(&false),
                "{name} is blocked by the plan ({reasons}), so its target pod must stay Pending"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_planner_and_the_scheduler_agree_on_room_selectors_affinity_and_taints() {
    let (config, manifests) = scenario();
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    start_vms_on_node_1(&kc, &manifests, 6);
    let _ = kubectl(
        &kc,
        &["taint", "node", "node-3", "maintenance=planned:NoSchedule"],
    );
    let _ = kubectl(&kc, &["cordon", "node-1"]);

    // Round 1: only node-2 takes VMs: room for two of the four big ones; the pinned and the
    // affine VM have nowhere to go.
    let first = plan(&kc);
    assert_eq!(first["pinned"].0, "blocked", "{first:#?}");
    assert!(first["pinned"].1.contains("nodeSelector disk=nvme"), "{first:#?}");
    assert_eq!(first["affine"].0, "blocked", "{first:#?}");
    assert!(first["affine"].1.contains("required node affinity"), "{first:#?}");
    let big_migrating = first
        .iter()
        .filter(|(n, (a, _))| n.starts_with("big-") && a == "migrate")
        .count();
    assert_eq!(big_migrating, 2, "{first:#?}");
    let names: Vec<&str> = first.keys().map(String::as_str).collect();
    let verdicts = probe(&kc, &names, 1).await;
    assert_agreement(&first, &verdicts);
    wait_migrations_finished(&kc).await;

    // Round 2: node-3 opens; the plan now has room for the two big VMs still on node-1 and
    // still none for the pinned ones; the scheduler must agree again.
    let _ = kubectl(
        &kc,
        &["taint", "node", "node-3", "maintenance=planned:NoSchedule-"],
    );
    let second = plan(&kc);
    assert_eq!(second.len(), 4, "two big VMs left node-1: {second:#?}");
    assert_eq!(
        second.values().filter(|(a, _)| a == "migrate").count(),
        2,
        "{second:#?}"
    );
    let names: Vec<&str> = second.keys().map(String::as_str).collect();
    let verdicts = probe(&kc, &names, 2).await;
    assert_agreement(&second, &verdicts);
}
