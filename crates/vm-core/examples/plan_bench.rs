//! Benchmark of the placement engine: a cluster of 500 nodes and 5,000 running VMIs, built in
//! memory. Times (median of several runs):
//! - `plan_drain` of one node (its 10 VMs placed jointly onto the other 499 nodes);
//! - `plan_drain` of a node that holds 1,000 of the VMs;
//! - the whole audit, whose capacity rule plans the evacuation of every node.
//!
//! `cargo run --release -p vm-core --example plan_bench`

use std::time::{Duration, Instant};

use vm_core::audit::audit;
use vm_core::drain::{DrainPolicy, plan_drain};
use vm_core::manifest::load_into;
use vm_core::snapshot::ClusterSnapshot;

const NODES: usize = 500;
const VMS: usize = 5000;

fn cluster(big_node_vms: usize) -> ClusterSnapshot {
    let mut text = String::new();
    for n in 0..NODES {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Node\nmetadata: {{name: node-{n}, labels: {{kubevirt.io/schedulable: 'true', zone: z{}}}}}\n\
status: {{allocatable: {{cpu: '64', memory: 512Gi}}, conditions: [{{type: Ready, status: 'True'}}]}}\n",
            n % 3
        ));
    }
    for i in 0..VMS {
        let node = if i < big_node_vms { 0 } else { i % NODES };
        let selector = if i % 4 == 0 {
            format!("nodeSelector: {{zone: z{}}}, ", node % 3)
        } else {
            String::new()
        };
        text.push_str(&format!(
            "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: vm-{i}, namespace: ns-{}}}\n\
spec: {{{selector}evictionStrategy: LiveMigrate, domain: {{cpu: {{cores: {}}}, resources: {{requests: {{memory: {}Gi}}}}}}}}\n\
status: {{phase: Running, nodeName: node-{node}, conditions: [{{type: LiveMigratable, status: 'True'}}]}}\n",
            i % 50,
            1 + i % 4,
            1 + i % 8
        ));
    }
    let mut snapshot = ClusterSnapshot::default();
    load_into(&mut snapshot, "generated", &text).expect("generated manifests parse");
    snapshot
}

fn median(mut f: impl FnMut(), runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn main() {
    let spread = cluster(0);
    let crowded = cluster(1000);
    let policy = DrainPolicy::default();
    let one = median(
        || drop(std::hint::black_box(plan_drain(&spread, "node-7", &policy))),
        21,
    );
    let big = median(
        || drop(std::hint::black_box(plan_drain(&crowded, "node-0", &policy))),
        5,
    );
    let all = median(|| drop(std::hint::black_box(audit(&spread))), 3);
    let vms_on_7 = plan_drain(&spread, "node-7", &policy)
        .expect("node exists")
        .vms
        .len();
    println!("{NODES} nodes, {VMS} running VMIs");
    println!(
        "plan_drain, one node ({vms_on_7} VMs):        {:>10.2} ms",
        one.as_secs_f64() * 1e3
    );
    println!(
        "plan_drain, node with 1000 VMs:             {:>10.2} ms",
        big.as_secs_f64() * 1e3
    );
    println!(
        "audit (evacuation plan of all {NODES} nodes): {:>10.2} ms",
        all.as_secs_f64() * 1e3
    );
}
