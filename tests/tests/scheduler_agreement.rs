//! The drain planner against the real kube-scheduler, on seeded random heterogeneous clusters:
//! two CPU vendors with two host-model generations each, hugepages on some nodes, a GPU node,
//! CPU-manager nodes, allocatable below capacity, pod-count limits, cordons, taints, pods
//! with required anti-affinity, and VMs with dedicated CPUs, hugepages, named CPU models, pod
//! affinity and anti-affinity (pairs and groups) and topology spread constraints.
//!
//! For each scenario the dry-run plan of the source node is compared, VM by VM and in the
//! order the planner places them, with what the scheduler does with the real target pods
//! (one VirtualMachineInstanceMigration each, as `drain_agreement.rs` creates them):
//!
//! - a VM the plan migrates to node N gets its target pod scheduled on N when every other
//!   node is cordoned for the moment (cordons steer without changing what topology spread
//!   counts, which a node selector would);
//! - a VM the plan blocks for placement keeps its target pod Pending with every node of the
//!   scenario open, and each constraint the scheduler's message names is one the plan's
//!   reasons name too (the scheduler reports the first failing filter of each node, the plan
//!   all of them). Its migration is then cancelled, as the plan does not place it.
//!
//! Migrations never finish during a probe (the simulator's migrations take an hour here), so
//! the cluster holds, at each step, the source pods and the targets placed so far: the state
//! the planner reasons about. The test prints the scenarios, VMs and disagreements, and the
//! seed to run one scenario again (`VM_AGREEMENT_SEED`, `VM_AGREEMENT_SCENARIOS`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use kubevirt_sim::nodes::{CAPACITY_ANNOTATION, NodeTemplate, cpu_labels};
use kubevirt_sim::quantity;
use kubevirt_sim::{Sandbox, SandboxConfig};
use serde_json::{Value, json};
use vm_e2e::scheduler_message::{self, Filter};
use vm_e2e::{drain_plan, kubectl};

const NAMESPACE: &str = "agree";
const SOURCE: &str = "src";
const TARGETS: [&str; 6] = ["t1", "t2", "t3", "t4", "t5", "t6"];
/// The node with GPUs.
const GPU_NODE: &str = "t6";
const ZONE: &str = "topology.kubernetes.io/zone";

/// CPU generations as the node-labeller describes them (the sandbox's helper expands them):
/// a newer generation lists the older model among those it can take and has every feature
/// the older one requires, so a VM moves up a generation but not down, and never to the
/// other vendor.
const CPUS: [&str; 4] = [
    "vendor=Intel model=Skylake-Client-IBRS features=vmx,ss,umip,md-clear \
     models=Broadwell-noTSX-IBRS,Haswell-noTSX-IBRS",
    "vendor=Intel model=Cascadelake-Server features=vmx,ss,umip,md-clear,pku \
     models=Skylake-Client-IBRS,Broadwell-noTSX-IBRS,Haswell-noTSX-IBRS",
    "vendor=AMD model=EPYC-Rome features=svm,ibpb,virt-ssbd models=EPYC",
    "vendor=AMD model=EPYC-Milan features=svm,ibpb,virt-ssbd,pcid models=EPYC-Rome,EPYC",
];
/// Named models a VM may ask for, per generation above (ones its source node offers).
const NAMED_MODELS: [&[&str]; 4] = [
    &["Broadwell-noTSX-IBRS", "Haswell-noTSX-IBRS"],
    &["Skylake-Client-IBRS", "Broadwell-noTSX-IBRS"],
    &["EPYC"],
    &["EPYC-Rome", "EPYC"],
];
const APPS: [&str; 4] = ["db", "web", "cache", "queue"];
const ZONES: [&str; 3] = ["a", "b", "c"];

/// splitmix64: a seeded stream, so that a failing scenario can be run again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One node's part of a scenario.
struct NodeSetup {
    name: &'static str,
    cpu: usize,
    zone: &'static str,
    cpu_manager: bool,
    cordoned: bool,
    tainted: bool,
    capacity: BTreeMap<String, String>,
    allocatable: BTreeMap<String, String>,
}

/// A whole scenario: the nodes, the pods already on the targets, the VMs on the source, and
/// the inter-pod terms the VMs' templates get after they started (a LiveUpdate rollout: the
/// source pods do not carry them, the target pods do).
struct Scenario {
    nodes: Vec<NodeSetup>,
    /// The pods already on the targets, created once the VMs run.
    residents: String,
    /// The VirtualMachines, started on the source node.
    vms: String,
    vm_count: usize,
    /// VMI name → `spec` fields to merge into the running VMI.
    live_updates: BTreeMap<String, Value>,
}

fn gi(n: u64) -> String {
    format!("{n}Gi")
}

fn scenario(rng: &mut Rng) -> Scenario {
    let source_cpu = rng.below(CPUS.len());

    let mut nodes = vec![NodeSetup {
        name: SOURCE,
        cpu: source_cpu,
        zone: ZONES[rng.below(ZONES.len())],
        cpu_manager: true,
        cordoned: false,
        tainted: false,
        capacity: BTreeMap::from([
            ("cpu".into(), "64".into()),
            ("memory".into(), "256Gi".into()),
            ("pods".into(), "110".into()),
            ("hugepages-1Gi".into(), "64Gi".into()),
        ]),
        allocatable: BTreeMap::new(),
    }];
    for name in TARGETS {
        // Half the targets share the source's vendor; some of those its generation.
        let cpu = if rng.chance(55) {
            (source_cpu & !1) | rng.below(2)
        } else {
            rng.below(CPUS.len())
        };
        let memory = *rng.pick(&[6, 8, 10, 12, 16]);
        let cpus = *rng.pick(&[4, 6, 8]);
        let mut capacity = BTreeMap::from([
            ("cpu".into(), "8".to_string()),
            ("memory".into(), gi(18)),
            ("pods".into(), "110".to_string()),
        ]);
        let mut allocatable = BTreeMap::from([
            ("cpu".into(), cpus.to_string()),
            ("memory".into(), gi(memory)),
            ("pods".into(), (2 + rng.below(6)).to_string()),
        ]);
        if rng.chance(40) {
            let pages = gi(*rng.pick(&[2, 4, 8]));
            capacity.insert("hugepages-1Gi".into(), pages.clone());
            allocatable.insert("hugepages-1Gi".into(), pages);
        }
        if name == GPU_NODE {
            capacity.insert("nvidia.com/gpu".into(), "2".into());
            allocatable.insert("nvidia.com/gpu".into(), "2".into());
        }
        nodes.push(NodeSetup {
            name,
            cpu,
            zone: ZONES[rng.below(ZONES.len())],
            cpu_manager: rng.chance(40),
            cordoned: rng.chance(15),
            tainted: rng.chance(20),
            capacity,
            allocatable,
        });
    }

    let mut residents = String::new();
    // Pods already on the targets: some take room, some a GPU, some keep their app's pods
    // off their node (required anti-affinity, the existing pods' side of the filter).
    for (i, node) in nodes.iter().enumerate().skip(1) {
        if !rng.chance(50) {
            continue;
        }
        let app = *rng.pick(&APPS);
        let mut resources = json!({"cpu": "500m", "memory": gi(1 + rng.below(3) as u64)});
        if node.name == GPU_NODE && rng.chance(50) {
            resources["nvidia.com/gpu"] = json!("1");
        }
        let mut spec = json!({
            "nodeName": node.name,
            "containers": [{"name": "app", "image": "app", "resources": {"requests": resources.clone(), "limits": resources}}],
        });
        if rng.chance(40) {
            spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}]}});
        }
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("resident-{i}"), "namespace": NAMESPACE, "labels": {"app": app}},
            "spec": spec,
        });
        residents.push_str(&format!("---\n{pod}\n"));
    }

    let mut vms = String::new();
    let vm_count = 4 + rng.below(5);
    let mut live_updates = BTreeMap::new();
    for k in 1..=vm_count {
        let name = format!("vm-{k:02}");
        let app = *rng.pick(&APPS);
        let mut domain = json!({"devices": {}, "resources": {"requests": {"memory": *rng.pick(&["512Mi", "1Gi", "2Gi", "3Gi"])}}});
        match rng.below(100) {
            0..15 => {
                domain["cpu"] = json!({"cores": 2, "dedicatedCpuPlacement": true});
            }
            15..25 => {
                domain["cpu"] = json!({"model": *rng.pick(NAMED_MODELS[source_cpu])});
            }
            _ => {}
        }
        if rng.chance(20) {
            domain["resources"]["requests"]["memory"] = json!(gi(2));
            domain["memory"] = json!({"hugepages": {"pageSize": "1Gi"}});
        }
        let mut spec = json!({"evictionStrategy": "LiveMigrate", "domain": domain});
        if rng.chance(35) {
            spec["tolerations"] =
                json!([{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}]);
        }
        let vm = json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"runStrategy": "Always", "template": {"metadata": {"labels": {"app": app}}, "spec": spec}},
        });
        vms.push_str(&format!("---\n{vm}\n"));

        // Inter-pod terms: anti-affinity against the app's other pods (pairs and groups, by
        // node or by zone), affinity to a web pod's zone, spread of the app over zones.
        let mut update = serde_json::Map::new();
        let mut anti = Vec::new();
        if rng.chance(35) {
            anti.push(json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}));
        }
        if rng.chance(10) {
            anti.push(
                json!({"labelSelector": {"matchLabels": {"app": *rng.pick(&APPS)}}, "topologyKey": ZONE}),
            );
        }
        let mut affinity = serde_json::Map::new();
        if !anti.is_empty() {
            affinity.insert(
                "podAntiAffinity".into(),
                json!({"requiredDuringSchedulingIgnoredDuringExecution": anti}),
            );
        }
        if rng.chance(10) {
            affinity.insert(
                "podAffinity".into(),
                json!({"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": ZONE}]}),
            );
        }
        if !affinity.is_empty() {
            update.insert("affinity".into(), Value::Object(affinity));
        }
        if rng.chance(15) {
            update.insert(
                "topologySpreadConstraints".into(),
                json!([{
                "maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": app}}}]),
            );
        }
        if !update.is_empty() {
            live_updates.insert(name, Value::Object(update));
        }
    }
    Scenario {
        nodes,
        residents,
        vms,
        vm_count,
        live_updates,
    }
}

fn apply(kc: &Path, manifests: &str) {
    let file = std::env::temp_dir().join(format!("agreement-{}.yaml", std::process::id()));
    std::fs::write(&file, manifests).unwrap();
    let _ = kubectl(kc, &["apply", "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
}

fn get_json(kc: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&kubectl(kc, &all)).expect("kubectl prints JSON")
}

fn set_cordons(kc: &Path, cordoned: &[&str]) {
    let all: Vec<&str> = std::iter::once(SOURCE).chain(TARGETS).collect();
    let (on, off): (Vec<&str>, Vec<&str>) = all.iter().partition(|n| cordoned.contains(n));
    if !on.is_empty() {
        let _ = kubectl(kc, &[&["cordon"], on.as_slice()].concat());
    }
    if !off.is_empty() {
        let _ = kubectl(kc, &[&["uncordon"], off.as_slice()].concat());
    }
}

/// Gives the nodes their labels, taints and capacity for `scenario`, and waits until their
/// kubelets report the new allocatable.
async fn set_up_nodes(kc: &Path, scenario: &Scenario) {
    let current = get_json(kc, &["get", "nodes"]);
    for setup in &scenario.nodes {
        let node = current["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["metadata"]["name"] == setup.name)
            .expect("node exists");
        // Drop the node-labeller labels of the last scenario, then write this one's.
        let mut labels = serde_json::Map::new();
        for key in node["metadata"]["labels"].as_object().unwrap().keys() {
            if key.contains(".node.kubevirt.io/") {
                labels.insert(key.clone(), Value::Null);
            }
        }
        for (k, v) in cpu_labels(CPUS[setup.cpu]).unwrap() {
            labels.insert(k, json!(v));
        }
        labels.insert(ZONE.into(), json!(setup.zone));
        labels.insert(
            "kubevirt.io/cpumanager".into(),
            json!(setup.cpu_manager.to_string()),
        );
        let recorded = json!({"capacity": setup.capacity, "allocatable": if setup.allocatable.is_empty() { &setup.capacity } else { &setup.allocatable }});
        // The sandbox's nodes have no taints of their own: the list is the scenario's.
        let taints = if setup.tainted {
            json!([{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}])
        } else {
            json!([])
        };
        let patch = json!({
            "metadata": {"labels": labels, "annotations": {CAPACITY_ANNOTATION: recorded.to_string()}},
            "spec": {"taints": taints},
        });
        let _ = kubectl(
            kc,
            &[
                "patch",
                "node",
                setup.name,
                "--type",
                "merge",
                "-p",
                &patch.to_string(),
            ],
        );
    }
    for _ in 0..60 {
        let nodes = get_json(kc, &["get", "nodes"]);
        let reported = scenario.nodes.iter().all(|setup| {
            let node = nodes["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["metadata"]["name"] == setup.name)
                .unwrap();
            let want = if setup.allocatable.is_empty() {
                &setup.capacity
            } else {
                &setup.allocatable
            };
            want.iter()
                .all(|(k, v)| node["status"]["allocatable"][k].as_str() == Some(v.as_str()))
                && setup
                    .capacity
                    .iter()
                    .all(|(k, v)| node["status"]["capacity"][k].as_str() == Some(v.as_str()))
        });
        if reported {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the nodes never reported this scenario's capacity");
}

/// Starts the scenario's VMs on the source node (every target cordoned meanwhile), then
/// creates the resident pods and applies the live updates.
async fn start(kc: &Path, scenario: &Scenario) {
    set_cordons(kc, &TARGETS);
    apply(kc, &scenario.vms);
    vm_e2e::wait_until("the VMs run on the source node", || {
        let vmis = get_json(kc, &["get", "vmi", "-n", NAMESPACE]);
        vmis["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["status"]["phase"] == "Running" && v["status"]["nodeName"] == SOURCE)
            .count()
            == scenario.vm_count
    })
    .await;
    if !scenario.residents.is_empty() {
        apply(kc, &scenario.residents);
    }
    for (name, update) in &scenario.live_updates {
        let patch = json!({"spec": update});
        let _ = kubectl(
            kc,
            &[
                "patch",
                "vmi",
                name,
                "-n",
                NAMESPACE,
                "--type",
                "merge",
                "-p",
                &patch.to_string(),
            ],
        );
    }
    vm_e2e::wait_until("the resident pods run", || {
        let listed = get_json(kc, &["get", "pods", "-n", NAMESPACE, "-l", "app"]);
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("resident-"))
            })
            .all(|p| p["status"]["phase"] == "Running")
    })
    .await;
}

/// Removes everything a scenario created in its namespace and waits until it is gone.
async fn clean_up(kc: &Path) {
    let _ = kubectl(kc, &["delete", "vmim", "--all", "-n", NAMESPACE, "--wait=false"]);
    let _ = kubectl(kc, &["delete", "vm", "--all", "-n", NAMESPACE, "--wait=false"]);
    let _ = kubectl(
        kc,
        &[
            "delete",
            "pods",
            "-l",
            "app",
            "-n",
            NAMESPACE,
            "--grace-period=0",
            "--force",
            "--wait=false",
        ],
    );
    vm_e2e::wait_until("the scenario's objects are gone", || {
        let pods = get_json(kc, &["get", "pods", "-n", NAMESPACE]);
        let vmis = get_json(kc, &["get", "vmi", "-n", NAMESPACE]);
        let vmims = get_json(kc, &["get", "vmim", "-n", NAMESPACE]);
        pods["items"].as_array().unwrap().is_empty()
            && vmis["items"].as_array().unwrap().is_empty()
            && vmims["items"].as_array().unwrap().is_empty()
    })
    .await;
}

/// One VM's verdict in the plan.
struct Planned {
    name: String,
    action: String,
    target: Option<String>,
    /// Every placement reason where the plan gives them, else its summary.
    reasons: Vec<String>,
    /// Blocked because no node can take it (not for a reason a probe cannot test).
    blocked_by_placement: bool,
}

/// The VMs of the plan in the order the planner placed them: by the memory their launcher
/// pods request, most first, then by name (the order it lists the VMIs in).
fn in_placement_order(kc: &Path, plan: &Value) -> Vec<Planned> {
    let pods = get_json(
        kc,
        &["get", "pods", "-n", NAMESPACE, "-l", "kubevirt.io=virt-launcher"],
    );
    let mut memory: BTreeMap<String, u64> = BTreeMap::new();
    for pod in pods["items"].as_array().unwrap() {
        if pod["spec"]["nodeName"] != SOURCE {
            continue;
        }
        let vm = pod["metadata"]["labels"]["vm.kubevirt.io/name"]
            .as_str()
            .unwrap_or_default();
        let requested: u64 = pod["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["resources"]["requests"]["memory"].as_str())
            .filter_map(quantity::bytes)
            .sum();
        memory.insert(vm.to_string(), requested);
    }
    let mut planned: Vec<Planned> = plan["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .map(|v| {
            let all = if v["placementReasons"].is_array() {
                &v["placementReasons"]
            } else {
                &v["reasons"]
            };
            let reasons: Vec<String> = all
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect();
            Planned {
                name: v["name"].as_str().unwrap().to_string(),
                action: v["action"].as_str().unwrap().to_string(),
                target: v["target"].as_str().map(str::to_string),
                blocked_by_placement: v["placementReasons"].is_array()
                    || reasons.iter().any(|r| r.contains("no other node can take it")),
                reasons,
            }
        })
        .collect();
    planned.sort_by(|a, b| {
        let ma = memory.get(&a.name).copied().unwrap_or(0);
        let mb = memory.get(&b.name).copied().unwrap_or(0);
        mb.cmp(&ma).then(a.name.cmp(&b.name))
    });
    planned
}

/// What the scheduler did with a target pod: its node, or the PodScheduled message.
enum Decision {
    Scheduled(String),
    Unschedulable(String),
}

/// Creates a migration of `vm` and waits until the scheduler has decided on its target pod.
async fn probe(kc: &Path, id: &str, vm: &str) -> Result<Decision, String> {
    let migration = json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
        "metadata": {"name": id, "namespace": NAMESPACE}, "spec": {"vmiName": vm},
    });
    apply(kc, &migration.to_string());
    for _ in 0..120 {
        if let Some(pod) = target_pod(kc, id) {
            if let Some(node) = pod["spec"]["nodeName"].as_str() {
                return Ok(Decision::Scheduled(node.to_string()));
            }
            let scheduled = pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "PodScheduled");
            if let Some(c) = scheduled.filter(|c| c["reason"] == "Unschedulable") {
                return Ok(Decision::Unschedulable(
                    c["message"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        let m = get_json(kc, &["get", "vmim", id, "-n", NAMESPACE]);
        if m["status"]["phase"] == "Failed" {
            return Err(format!(
                "migration {id} failed without a target pod: {}",
                m["status"]
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!("the scheduler never decided on the target pod of {id}"))
}

/// The target pod of the migration `id`, if it exists.
fn target_pod(kc: &Path, id: &str) -> Option<Value> {
    let pods = get_json(
        kc,
        &[
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            "kubevirt.io/migrationJobUID",
        ],
    );
    pods["items"]
        .as_array()?
        .iter()
        .find(|p| p["metadata"]["annotations"]["kubevirt.io/migrationJobName"] == id)
        .cloned()
}

/// Cancels a probe's migration and waits until its target pod is gone.
async fn cancel(kc: &Path, id: &str) {
    let _ = kubectl(kc, &["delete", "vmim", id, "-n", NAMESPACE, "--wait=false"]);
    vm_e2e::wait_until("the cancelled target pod is gone", || {
        target_pod(kc, id).is_none()
    })
    .await;
}

/// The constraints a kube-scheduler "0/7 nodes are available: ..." message names, with how
/// many nodes each, in the words [`plan_constraints`] uses. The message is read by filter
/// ([`scheduler_message::parse`]), 1.20's wording and today's; the PostFilter sentence
/// (preemption, DRA) names no constraint and is not read.
fn scheduler_constraints(message: &str) -> BTreeMap<String, u32> {
    let mut found = BTreeMap::new();
    for reason in scheduler_message::parse(message) {
        let kind = match reason.filter {
            Filter::NodeUnschedulable => "cordoned".to_string(),
            Filter::NodeAffinity => "node selector".to_string(),
            Filter::TaintToleration(_) => "taint".to_string(),
            Filter::NodeResourcesFit(resource) if resource == "pods" => "pod count".to_string(),
            Filter::NodeResourcesFit(resource) => format!("insufficient {resource}"),
            Filter::PodTopologySpread => "topology spread".to_string(),
            Filter::InterPodAffinity(_) => "inter-pod affinity".to_string(),
            other => format!("other: {other:?}"),
        };
        // A PreFilter's words (no count) reject every node: one is enough to be named.
        *found.entry(kind).or_default() += reason.nodes.unwrap_or(1);
    }
    found
}

/// The constraints the plan's reasons name.
fn plan_constraints(reasons: &[String]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for r in reasons {
        if r.contains("is cordoned") {
            found.insert("cordoned".to_string());
        }
        if r.contains("nodeSelector") || r.contains("required node affinity") {
            found.insert("node selector".to_string());
        }
        if r.contains("has taint") {
            found.insert("taint".to_string());
        }
        if r.contains("memory free") {
            found.insert("insufficient memory".to_string());
        }
        if r.contains("CPU free") {
            found.insert("insufficient cpu".to_string());
        }
        // "node n2 has no hugepages-1Gi, 2Gi needed"; "node n2 has 1Gi hugepages-1Gi free, ...".
        let extended = match r.split_once(" has no ") {
            Some((_, rest)) => rest.split(',').next(),
            None => r
                .split_once(" free, ")
                .and_then(|(head, _)| head.rsplit(' ').next())
                .filter(|name| !matches!(*name, "memory" | "CPU")),
        };
        if let Some(name) = extended {
            found.insert(format!("insufficient {name}"));
        }
        if r.contains("maximum of") {
            found.insert("pod count".to_string());
        }
        if r.contains("topology spread") {
            found.insert("topology spread".to_string());
        }
        if r.contains("anti-affinity") || r.contains("pod affinity") {
            found.insert("inter-pod affinity".to_string());
        }
    }
    found
}

/// What one scenario probed.
#[derive(Default)]
struct Tally {
    migrated: usize,
    blocked: usize,
    /// The constraints the scheduler named for the blocked VMs, with how often.
    constraints: BTreeMap<String, usize>,
    disagreements: Vec<String>,
}

/// Runs one scenario.
async fn run_scenario(kc: &Path, seed: u64) -> Tally {
    let mut rng = Rng(seed);
    let scenario = scenario(&mut rng);
    set_cordons(kc, &[]);
    set_up_nodes(kc, &scenario).await;
    start(kc, &scenario).await;
    let scenario_cordons: Vec<&str> = std::iter::once(SOURCE)
        .chain(scenario.nodes.iter().filter(|n| n.cordoned).map(|n| n.name))
        .collect();
    set_cordons(kc, &scenario_cordons);

    let (_, plan) = drain_plan(kc, SOURCE);
    let mut tally = Tally::default();
    let disagreements = &mut tally.disagreements;
    for vm in in_placement_order(kc, &plan) {
        if vm.action != "migrate" && !vm.blocked_by_placement {
            disagreements.push(format!(
                "seed {seed}: {} is {} for a reason other than placement: {:?}",
                vm.name, vm.action, vm.reasons
            ));
            continue;
        }
        let id = format!("probe-{}", vm.name);
        if vm.action == "migrate" {
            tally.migrated += 1;
            let target = vm.target.clone().expect("a migrated VM has a target");
            let others: Vec<&str> = std::iter::once(SOURCE)
                .chain(TARGETS.into_iter().filter(|t| *t != target))
                .collect();
            set_cordons(kc, &others);
            let decision = probe(kc, &id, &vm.name).await;
            set_cordons(kc, &scenario_cordons);
            match decision {
                Ok(Decision::Scheduled(node)) if node == target => {}
                Ok(Decision::Scheduled(node)) => disagreements.push(format!(
                    "seed {seed}: {} planned onto {target}, scheduled onto {node}",
                    vm.name
                )),
                Ok(Decision::Unschedulable(message)) => {
                    disagreements.push(format!(
                        "seed {seed}: {} planned onto {target}, the scheduler refuses: {message}",
                        vm.name
                    ));
                    cancel(kc, &id).await;
                }
                Err(e) => disagreements.push(format!("seed {seed}: {e}")),
            }
        } else {
            tally.blocked += 1;
            match probe(kc, &id, &vm.name).await {
                Ok(Decision::Unschedulable(message)) => {
                    let mut named = scheduler_constraints(&message);
                    // The source node is cordoned for the drain; the plan leaves it out.
                    if let Some(n) = named.get_mut("cordoned") {
                        *n -= 1;
                    }
                    named.retain(|_, n| *n > 0);
                    for k in named.keys() {
                        *tally.constraints.entry(k.clone()).or_default() += 1;
                    }
                    let planned = plan_constraints(&vm.reasons);
                    let unexplained: Vec<&String> = named.keys().filter(|k| !planned.contains(*k)).collect();
                    if !unexplained.is_empty() {
                        disagreements.push(format!(
                            "seed {seed}: {} blocked, but the scheduler also names {unexplained:?}: {message}\nplan: {:?}",
                            vm.name, vm.reasons
                        ));
                    }
                    cancel(kc, &id).await;
                }
                Ok(Decision::Scheduled(node)) => {
                    disagreements.push(format!(
                        "seed {seed}: {} blocked by the plan ({:?}), scheduled onto {node}",
                        vm.name, vm.reasons
                    ));
                    cancel(kc, &id).await;
                }
                Err(e) => disagreements.push(format!("seed {seed}: {e}")),
            }
        }
    }
    clean_up(kc).await;
    tally
}

fn sandbox_config() -> SandboxConfig {
    let mut nodes = vec![NodeTemplate::worker(SOURCE, "64", "256Gi", "110")];
    nodes.extend(TARGETS.map(|t| NodeTemplate::worker(t, "8", "18Gi", "110")));
    let mut config = SandboxConfig {
        nodes,
        // Every probe's target pod is created at once.
        kubevirt_configuration: json!({"migrations": {
            "parallelMigrationsPerCluster": 50, "parallelOutboundMigrationsPerNode": 50}}),
        ..SandboxConfig::default()
    };
    // Migrations hold their target pods for the whole scenario; capacity changes are
    // reported at once.
    config.sim.migration_base_ms = 3_600_000;
    config.sim.migration_unschedulable_timeout_ms = 3_600_000;
    config.sim.node_status_interval_ms = 500;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_and_the_scheduler_agree_on_random_heterogeneous_clusters() {
    let base_seed: u64 = std::env::var("VM_AGREEMENT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_206);
    let scenarios: u64 = std::env::var("VM_AGREEMENT_SCENARIOS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let sandbox = Sandbox::start(sandbox_config()).await.expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    let _ = kubectl(&kc, &["create", "namespace", NAMESPACE]);

    let mut vms = 0;
    let mut disagreements = Vec::new();
    for i in 0..scenarios {
        let tally = run_scenario(&kc, base_seed + i).await;
        println!(
            "scenario seed {}: {} VMs migrated, {} blocked (the scheduler names {:?}), {} disagreements",
            base_seed + i,
            tally.migrated,
            tally.blocked,
            tally.constraints,
            tally.disagreements.len()
        );
        for d in &tally.disagreements {
            println!("  {d}");
        }
        vms += tally.migrated + tally.blocked;
        disagreements.extend(tally.disagreements);
    }
    println!(
        "scheduler agreement: {scenarios} scenarios, {vms} VMs, {} disagreements (seeds {base_seed}..{})",
        disagreements.len(),
        base_seed + scenarios
    );
    assert!(
        disagreements.is_empty(),
        "{} disagreements (run one again with VM_AGREEMENT_SEED=<seed> VM_AGREEMENT_SCENARIOS=1):\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}
