//! Benchmark of the rolling planner: a round of 50 nodes on a cluster built in memory (1,000
//! nodes and 10,000 running VMIs with their launcher pods unless given as arguments), with
//! host-model CPU labels of two vendors and the placement filters of `plan_bench`'s cluster.
//! Times:
//! - a feasible round (every step finds room outside the round);
//! - the same round with one VM pinned to its node (no order completes it);
//! - a round whose nodes hold twice the VMs, on a cluster with little room outside it.
//!
//! Measured on 2 shared cores (release without LTO), 1,000 nodes and 10,000 VMIs, a round of 50:
//! 5.6 s feasible, 6.0 s with the pinned VM, 7.4 s tight. About 100 `plan_drain` calls (50 for
//! the naive count, 50 for the steps) at some 50 ms each make nearly all of it.
//!
//! `cargo run --release -p vm-core --example rolling_bench [NODES VMS ROUND]`

use std::time::Instant;

use vm_core::manifest::load_into;
use vm_core::rolling::{RollingPolicy, plan_rolling};
use vm_core::snapshot::ClusterSnapshot;

#[path = "common/cpu_labels.rs"]
mod cpu_labels;
use cpu_labels::cpu_labels;

/// `nodes` nodes of `node_memory`; VM `i` on node `i % nodes`, with its launcher pod.
fn cluster(nodes: usize, vms: usize, node_memory: &str, pinned: bool) -> ClusterSnapshot {
    let mut text = String::new();
    for n in 0..nodes {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Node\nmetadata: {{name: node-{n}, labels: {{kubevirt.io/schedulable: 'true', \
kubernetes.io/hostname: node-{n}, zone: z{}, {}}}}}\n\
status: {{allocatable: {{cpu: '64', memory: {node_memory}, pods: '250'}}, conditions: [{{type: Ready, status: 'True'}}]}}\n",
            n % 3,
            cpu_labels(n)
        ));
    }
    for i in 0..vms {
        let node = i % nodes;
        let anti = if i % 20 == 1 {
            format!(
                "affinity: {{podAntiAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: [{{labelSelector: \
{{matchLabels: {{app: db-{}}}}}, topologyKey: kubernetes.io/hostname}}]}}}}, ",
                i / 100
            )
        } else {
            String::new()
        };
        let app = if i % 20 == 1 {
            format!(", app: db-{}", i / 100)
        } else {
            String::new()
        };
        let memory = 1 + i % 8;
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: virt-launcher-vm-{i}, namespace: ns-{}, labels: \
{{kubevirt.io: virt-launcher, kubevirt.io/created-by: uid-{i}{app}}}}}\n\
spec: {{nodeName: node-{node}, nodeSelector: {{kubevirt.io/schedulable: 'true'}}, {anti}containers: [{{name: compute, \
resources: {{requests: {{cpu: 500m, memory: {}Mi}}}}}}]}}\nstatus: {{phase: Running}}\n",
            i % 50,
            memory * 1024 + 300
        ));
        let selector = if pinned && i == 0 {
            "nodeSelector: {kubernetes.io/hostname: node-0}, "
        } else {
            ""
        };
        text.push_str(&format!(
            "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: vm-{i}, namespace: ns-{}, \
uid: uid-{i}, labels: {{vm: vm-{i}{app}}}}}\n\
spec: {{{selector}{anti}evictionStrategy: LiveMigrate, domain: {{resources: {{requests: {{memory: {memory}Gi}}}}}}}}\n\
status: {{phase: Running, nodeName: node-{node}, conditions: [{{type: LiveMigratable, status: 'True'}}]}}\n",
            i % 50,
        ));
    }
    let mut snapshot = ClusterSnapshot::default();
    load_into(&mut snapshot, "generated", &text).expect("generated manifests parse");
    snapshot
}

fn time(label: &str, snapshot: &ClusterSnapshot, round: &[String]) {
    let start = Instant::now();
    let plan = plan_rolling(snapshot, round, &RollingPolicy::default()).expect("round nodes exist");
    println!(
        "{label:<44} {:>9.2} s  feasible: {}, steps: {}, migrations: {} (naive {}), moves again: {}",
        start.elapsed().as_secs_f64(),
        plan.feasible,
        plan.steps.len(),
        plan.migrations,
        plan.naive_migrations,
        plan.moves_again
    );
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (nodes, vms, round) = match args.as_slice() {
        [n, v, r] => (*n, *v, *r),
        _ => (1000, 10_000, 50),
    };
    let round_nodes: Vec<String> = (0..round).map(|n| format!("node-{n}")).collect();
    println!("{nodes} nodes, {vms} running VMIs, a round of {round} nodes");
    time(
        "feasible round",
        &cluster(nodes, vms, "512Gi", false),
        &round_nodes,
    );
    time(
        "one VM pinned to node-0",
        &cluster(nodes, vms, "512Gi", true),
        &round_nodes,
    );
    // Nodes about two-thirds full: a node's VMs fit outside the round only spread thin.
    time("tight cluster", &cluster(nodes, vms, "64Gi", false), &round_nodes);
}
