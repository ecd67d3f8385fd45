//! Benchmark of the placement engine: a heterogeneous cluster built in memory (500 nodes and
//! 5,000 running VMIs unless given as arguments). Nodes alternate between two CPU generations
//! (Intel Skylake, AMD Milan: vendor, host-model and feature labels as the node-labeller writes
//! them), report KubeVirt's device plugins, a pod limit, and one in ten has 1Gi hugepages;
//! every VMI has its running launcher pod (requests with the device-plugin resources), so the
//! planner takes the live path: the target pod built from the launcher pod plus the source
//! node's CPU selectors. Times (median of several runs):
//! - `plan_drain` of one node (its 10 VMs placed jointly onto the other 499 nodes);
//! - `plan_drain` of a node that holds 1,000 of the VMs;
//! - the audit's node-evacuation rule alone, which plans the evacuation of every node;
//! - the whole audit, that rule included.
//!
//! One VM in twenty is in an anti-affinity group of five, another one in twenty is spread over
//! the zones, so the inter-pod filters run too.
//!
//! `cargo run --release -p vm-core --example plan_bench [NODES VMS]`

use std::time::{Duration, Instant};

use vm_core::audit::{audit, node_evacuation};
use vm_core::drain::{DrainPolicy, plan_drain};
use vm_core::manifest::load_into;
use vm_core::snapshot::ClusterSnapshot;

#[path = "common/cpu_labels.rs"]
mod cpu_labels;
use cpu_labels::cpu_labels;

/// The inter-pod terms of VM `i`, as labels to add and `affinity` / `topologySpreadConstraints`
/// fields (the same on the VMI and on its launcher pod, which KubeVirt copies them to): one VM
/// in twenty is in a group of five with required anti-affinity by hostname, and another one in
/// twenty is spread over the zones (DoNotSchedule).
fn inter_pod_terms(i: usize) -> (String, String) {
    match i % 20 {
        1 => (
            format!(", app: db-{}", i / 100),
            format!(
                "affinity: {{podAntiAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: [{{labelSelector: \
{{matchLabels: {{app: db-{}}}}}, topologyKey: kubernetes.io/hostname}}]}}}}, ",
                i / 100
            ),
        ),
        11 => (
            ", tier: web".into(),
            "topologySpreadConstraints: [{maxSkew: 50, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, \
labelSelector: {matchLabels: {tier: web}}}], "
                .into(),
        ),
        _ => (String::new(), String::new()),
    }
}

fn cluster(nodes: usize, vms: usize, big_node_vms: usize) -> ClusterSnapshot {
    let mut text = String::new();
    for n in 0..nodes {
        let hugepages = if n.is_multiple_of(10) {
            ", hugepages-1Gi: 64Gi"
        } else {
            ""
        };
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Node\nmetadata: {{name: node-{n}, labels: {{kubevirt.io/schedulable: 'true', zone: z{}, {}}}}}\n\
status: {{allocatable: {{cpu: '64', memory: 512Gi, pods: '250', devices.kubevirt.io/kvm: '1000', devices.kubevirt.io/tun: '1000', \
devices.kubevirt.io/vhost-net: '1000'{hugepages}}}, conditions: [{{type: Ready, status: 'True'}}]}}\n",
            n % 3,
            cpu_labels(n)
        ));
    }
    for i in 0..vms {
        let node = if i < big_node_vms { 0 } else { i % nodes };
        let (labels, terms) = inter_pod_terms(i);
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: virt-launcher-vm-{i}, namespace: ns-{}, labels: {{kubevirt.io: virt-launcher, kubevirt.io/created-by: uid-{i}{labels}}}}}\n\
spec: {{nodeName: node-{node}, nodeSelector: {{kubevirt.io/schedulable: 'true'}}, {terms}containers: [{{name: compute, resources: {{requests: {{cpu: {}00m, memory: {}Mi}}, \
limits: {{devices.kubevirt.io/kvm: '1', devices.kubevirt.io/tun: '1', devices.kubevirt.io/vhost-net: '1'}}}}}}]}}\nstatus: {{phase: Running}}\n",
            i % 50,
            1 + i % 4,
            (1 + i % 8) * 1024 + 300
        ));
        let selector = if i % 4 == 0 {
            format!("nodeSelector: {{zone: z{}}}, ", node % 3)
        } else {
            String::new()
        };
        text.push_str(&format!(
            "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: vm-{i}, namespace: ns-{}, uid: uid-{i}, labels: {{vm: vm-{i}{labels}}}}}\n\
spec: {{{selector}{terms}evictionStrategy: LiveMigrate, domain: {{cpu: {{cores: {}}}, resources: {{requests: {{memory: {}Gi}}}}}}}}\n\
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
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (nodes, vms) = match args.as_slice() {
        [n, v] => (*n, *v),
        _ => (500, 5000),
    };
    let spread = cluster(nodes, vms, 0);
    let crowded = cluster(nodes, vms, 1000);
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
    let evacuation = median(|| drop(std::hint::black_box(node_evacuation(&spread))), 3);
    let vms_on_7 = plan_drain(&spread, "node-7", &policy)
        .expect("node exists")
        .vms
        .len();
    println!("{nodes} nodes, {vms} running VMIs");
    println!(
        "plan_drain, one node ({vms_on_7} VMs):        {:>10.2} ms",
        one.as_secs_f64() * 1e3
    );
    println!(
        "plan_drain, node with 1000 VMs:             {:>10.2} ms",
        big.as_secs_f64() * 1e3
    );
    println!(
        "node-evacuation rule alone (all {nodes} nodes): {:>8.2} ms",
        evacuation.as_secs_f64() * 1e3
    );
    println!(
        "whole audit (every rule, every object):     {:>10.2} ms",
        all.as_secs_f64() * 1e3
    );
}
