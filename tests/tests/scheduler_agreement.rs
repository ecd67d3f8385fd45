//! The drain planner against the real kube-scheduler, on seeded random heterogeneous clusters:
//! two CPU vendors with two host-model generations each, hugepages on some nodes, a GPU node,
//! CPU-manager nodes, allocatable below capacity, pod-count limits, cordons, taints, pods
//! with required anti-affinity, and VMs with dedicated CPUs, hugepages, named CPU models, pod
//! affinity and anti-affinity (pairs and groups) and topology spread constraints. Also what
//! KubeVirt's renderer adds: nodes of two machine-type sets (a VM started on the newer one
//! carries the expanded type in its status), arm64 clusters with some amd64 nodes, SEV nodes
//! and SEV guests, TSC frequencies and guests that need one (Hyper-V reenlightenment), CPU
//! limits without requests, the serial console log on and off (per VM and cluster-wide), and
//! VMs without an interface on clusters whose default binding is bridge or masquerade.
//!
//! Before the probes, each VM's live-migratability as `vm-audit` reads it from the manifests
//! (with the KubeVirt CR and the nodes) is compared with the `LiveMigratable` condition the
//! simulator gave its VMI; a VM the plan does not migrate for that reason must name it.
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

/// Machine types a node's libvirt offers, as the node-labeller lists them (aliases included):
/// nodes of an older minor release lack the newest versioned type, so a VM started on a newer
/// node cannot move back (its `status.machine.type` is the expanded name).
const MACHINE_TYPES: [&str; 2] = ["q35,pc-q35-rhel9.4.0", "q35,pc-q35-rhel9.4.0,pc-q35-rhel9.6.0"];
const ARM_MACHINE_TYPES: [&str; 2] = ["virt,virt-rhel9.4.0", "virt,virt-rhel9.4.0,virt-rhel9.6.0"];
/// TSC frequencies in Hz: the first two are within qemu's 250 ppm of each other.
const TSC_FREQUENCIES: [u64; 4] = [2_400_000_000, 2_400_300_000, 2_500_000_000, 3_000_000_000];

/// One node's part of a scenario.
struct NodeSetup {
    name: &'static str,
    cpu: usize,
    /// `amd64` or `arm64` (no CPU model, feature or vendor labels: the node-labeller writes none
    /// on arm64).
    arch: &'static str,
    machine_types: &'static str,
    /// `kubevirt.io/sev` and the SEV device plugin.
    sev: bool,
    /// The node-labeller's TSC frequency and whether it is scalable.
    tsc: Option<(u64, bool)>,
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
    /// The KubeVirt CR's `spec.configuration` for this scenario: the default pod network
    /// binding (bridge or masquerade) and whether the serial console log is off cluster-wide.
    kubevirt_configuration: Value,
    /// How many of each new shape the scenario has (printed, so that a run shows what it
    /// covered).
    shapes: BTreeMap<&'static str, usize>,
}

fn gi(n: u64) -> String {
    format!("{n}Gi")
}

fn scenario(rng: &mut Rng) -> Scenario {
    let source_cpu = rng.below(CPUS.len());
    // One scenario in six is an arm64 cluster's: its VMs ask for arm64, some targets are
    // amd64 nodes they cannot use.
    let arm64 = rng.chance(17);
    let source_arch = if arm64 { "arm64" } else { "amd64" };
    let source_sev = !arm64 && rng.chance(50);
    // TSC frequencies on every node; the source's TSC is scalable, so that it serves the
    // cluster's lowest frequency and the VMs that need one start there.
    let with_tsc = !arm64 && rng.chance(40);
    let tsc = |rng: &mut Rng| with_tsc.then(|| (*rng.pick(&TSC_FREQUENCIES), rng.chance(50)));
    let machine_types = |rng: &mut Rng, arch: &str| {
        if arch == "arm64" {
            *rng.pick(&ARM_MACHINE_TYPES)
        } else {
            *rng.pick(&MACHINE_TYPES)
        }
    };
    let mut shapes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut count = |shape: &'static str| *shapes.entry(shape).or_default() += 1;
    if arm64 {
        count("arm64 cluster");
    }
    if with_tsc {
        count("TSC frequencies");
    }
    let kubevirt_configuration = json!({
        "network": {"defaultNetworkInterface": if rng.chance(50) { "bridge" } else { "masquerade" }},
        "virtualMachineOptions": {"disableSerialConsoleLog": rng.chance(20)},
    });

    let mut nodes = vec![NodeSetup {
        name: SOURCE,
        cpu: source_cpu,
        arch: source_arch,
        machine_types: machine_types(rng, source_arch),
        sev: source_sev,
        tsc: tsc(rng).map(|(f, _)| (f, true)),
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
        let arch = if arm64 && rng.chance(60) { "arm64" } else { "amd64" };
        nodes.push(NodeSetup {
            name,
            cpu,
            arch,
            machine_types: machine_types(rng, arch),
            sev: arch == "amd64" && rng.chance(30),
            tsc: tsc(rng),
            zone: ZONES[rng.below(ZONES.len())],
            cpu_manager: rng.chance(40),
            cordoned: rng.chance(15),
            tainted: rng.chance(20),
            capacity,
            allocatable,
        });
    }

    // The SEV device plugin's slots (KubeVirt requests one per SEV guest).
    for node in nodes.iter_mut().filter(|n| n.sev) {
        node.capacity
            .insert("devices.kubevirt.io/sev".into(), "15".into());
        if !node.allocatable.is_empty() {
            node.allocatable
                .insert("devices.kubevirt.io/sev".into(), "15".into());
        }
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
        let memory = *rng.pick(&["512Mi", "1Gi", "2Gi", "3Gi"]);
        let mut domain = json!({"devices": {}, "resources": {"requests": {"memory": memory}}});
        let mut limits_only = false;
        match rng.below(100) {
            0..15 => {
                domain["cpu"] = json!({"cores": 2, "dedicatedCpuPlacement": true});
            }
            15..25 if !arm64 => {
                domain["cpu"] = json!({"model": *rng.pick(NAMED_MODELS[source_cpu])});
            }
            25..40 => {
                // Limits alone: the webhook copies them into the requests, and the pod is
                // Guaranteed (more overhead, the console log at its limits).
                domain["resources"] = json!({"limits": {"cpu": "2", "memory": memory}});
                limits_only = true;
                count("VM with limits only");
            }
            _ => {}
        }
        if !limits_only && rng.chance(20) {
            domain["resources"]["requests"]["memory"] = json!(gi(2));
            domain["memory"] = json!({"hugepages": {"pageSize": "1Gi"}});
        }
        if source_sev && rng.chance(12) {
            domain["launchSecurity"] = json!({"sev": {}});
            count("SEV VM");
        }
        if with_tsc && rng.chance(15) {
            // Hyper-V reenlightenment needs an invariant TSC: the VMI gets the cluster's lowest
            // frequency as a topology hint and its pods select it.
            domain["features"] = json!({"hyperv": {"reenlightenment": {"enabled": true}}});
            count("TSC-bound VM");
        }
        if rng.chance(25) {
            domain["devices"]["logSerialConsole"] = json!(false);
            count("VM without console log");
        }
        // Most VMs declare the pod network with masquerade; the rest declare no interface and
        // get the cluster's default binding (bridge: not live-migratable).
        let declares_interface = rng.chance(70);
        if declares_interface {
            domain["devices"]["interfaces"] = json!([{"name": "default", "masquerade": {}}]);
        }
        let mut spec = json!({"evictionStrategy": "LiveMigrate", "domain": domain});
        if declares_interface {
            spec["networks"] = json!([{"name": "default", "pod": {}}]);
        } else {
            count("VM without interface");
        }
        if arm64 {
            spec["architecture"] = json!("arm64");
        }
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
    let default_binding = kubevirt_configuration["network"]["defaultNetworkInterface"] == "bridge";
    count(if default_binding {
        "default binding bridge"
    } else {
        "default binding masquerade"
    });
    if kubevirt_configuration["virtualMachineOptions"]["disableSerialConsoleLog"] == true {
        count("console log off cluster-wide");
    }
    for node in &nodes {
        if node.sev {
            count("SEV node");
        }
        if node.arch == "arm64" {
            count("arm64 node");
        }
        if node.machine_types.ends_with("9.6.0") {
            count("node with the newer machine type");
        }
    }
    Scenario {
        nodes,
        residents,
        vms,
        vm_count,
        live_updates,
        kubevirt_configuration,
        shapes,
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
        let cpu = if setup.arch == "arm64" {
            ""
        } else {
            CPUS[setup.cpu]
        };
        for (k, v) in cpu_labels(&format!("{cpu} machine-types={}", setup.machine_types)).unwrap() {
            labels.insert(k, json!(v));
        }
        for key in ["kubernetes.io/arch", "beta.kubernetes.io/arch"] {
            labels.insert(key.into(), json!(setup.arch));
        }
        labels.insert(
            "kubevirt.io/sev".into(),
            if setup.sev { json!("true") } else { Value::Null },
        );
        if let Some((frequency, scalable)) = setup.tsc {
            for (k, v) in kubevirt_sim::kubevirt::tsc::node_labels(frequency, scalable) {
                labels.insert(k, json!(v));
            }
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

/// A VMI's `LiveMigratable=True`, in the words of [`reported_migratability`].
const MIGRATABLE: &str = "migratable";

/// Each VMI's `LiveMigratable` condition as the simulator set it: [`MIGRATABLE`], or the
/// reason of a False one.
fn reported_migratability(kc: &Path) -> BTreeMap<String, String> {
    let vmis = get_json(kc, &["get", "vmi", "-n", NAMESPACE]);
    vmis["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| {
            let name = v["metadata"]["name"].as_str()?.to_string();
            let condition = v["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "LiveMigratable")?;
            let verdict = if condition["status"] == "True" {
                MIGRATABLE.to_string()
            } else {
                condition["reason"].as_str().unwrap_or("False").to_string()
            };
            Some((name, verdict))
        })
        .collect()
}

/// Each VM's live-migratability as `vm-audit` reads it from files: the scenario's
/// VirtualMachines, the KubeVirt CR and the nodes as the cluster has them, with no VMI (so
/// nothing KubeVirt reported): [`MIGRATABLE`], or the reason its finding names. A reading
/// of the manifests independent of the simulator's.
fn migratability_from_files(kc: &Path, scenario: &Scenario) -> BTreeMap<String, String> {
    let kubevirt = kubectl(
        kc,
        &["get", "kubevirt", "kubevirt", "-n", "kubevirt", "-o", "yaml"],
    );
    let nodes = kubectl(kc, &["get", "nodes", "-o", "yaml"]);
    let file = std::env::temp_dir().join(format!("agreement-input-{}.yaml", std::process::id()));
    std::fs::write(&file, format!("{}\n---\n{kubevirt}\n---\n{nodes}", scenario.vms)).unwrap();
    let out = vm_e2e::run_plugin(
        "kubectl-vm_audit",
        kc,
        &["-f", file.to_str().unwrap(), "-o", "json"],
    );
    let _ = std::fs::remove_file(&file);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("vm-audit prints JSON ({e}): {}", vm_e2e::output_text(&out)));
    let mut verdicts: BTreeMap<String, String> = (1..=scenario.vm_count)
        .map(|k| (format!("vm-{k:02}"), MIGRATABLE.to_string()))
        .collect();
    for finding in report["findings"].as_array().expect("findings") {
        let rule = finding["rule"].as_str().unwrap_or_default();
        if !matches!(
            rule,
            "live-migrate-not-migratable" | "live-migration-not-migratable"
        ) {
            continue;
        }
        let message = finding["message"].as_str().unwrap_or_default();
        let reason = message
            .split_once("not live-migratable (")
            .and_then(|(_, rest)| rest.split([',', ')']).next())
            .unwrap_or(message);
        if let Some(name) = finding["name"].as_str() {
            verdicts.insert(name.to_string(), reason.to_string());
        }
    }
    verdicts
}

/// What one scenario probed.
#[derive(Default)]
struct Tally {
    migrated: usize,
    blocked: usize,
    /// VMs the plan and KubeVirt's condition agree cannot be live-migrated.
    not_migratable: usize,
    /// The constraints the scheduler named for the blocked VMs, with how often.
    constraints: BTreeMap<String, usize>,
    disagreements: Vec<String>,
}

/// Runs one scenario.
async fn run_scenario(kc: &Path, seed: u64) -> (BTreeMap<&'static str, usize>, Tally) {
    let mut rng = Rng(seed);
    let scenario = scenario(&mut rng);
    set_cordons(kc, &[]);
    let patch = json!({"spec": {"configuration": scenario.kubevirt_configuration}});
    let _ = kubectl(
        kc,
        &[
            "patch",
            "kubevirt",
            "kubevirt",
            "-n",
            "kubevirt",
            "--type",
            "merge",
            "-p",
            &patch.to_string(),
        ],
    );
    set_up_nodes(kc, &scenario).await;
    start(kc, &scenario).await;
    let scenario_cordons: Vec<&str> = std::iter::once(SOURCE)
        .chain(scenario.nodes.iter().filter(|n| n.cordoned).map(|n| n.name))
        .collect();
    set_cordons(kc, &scenario_cordons);

    let (_, plan) = drain_plan(kc, SOURCE);
    let mut tally = Tally::default();
    let reported = reported_migratability(kc);
    for (vm, file_mode) in migratability_from_files(kc, &scenario) {
        let simulated = reported
            .get(&vm)
            .cloned()
            .unwrap_or_else(|| "no LiveMigratable condition".into());
        if file_mode != simulated {
            tally.disagreements.push(format!(
                "seed {seed}: {vm} from files: {file_mode}; the simulator's VMI: {simulated}"
            ));
        }
    }
    let disagreements = &mut tally.disagreements;
    for vm in in_placement_order(kc, &plan) {
        if vm.action != "migrate" && !vm.blocked_by_placement {
            // Not migratable: the plan must say why as KubeVirt's condition does.
            match reported.get(&vm.name) {
                Some(verdict)
                    if verdict != MIGRATABLE
                        && vm
                            .reasons
                            .iter()
                            .any(|r| verdict.contains(r.as_str()) || r.contains(verdict.as_str())) =>
                {
                    tally.not_migratable += 1;
                }
                verdict => disagreements.push(format!(
                    "seed {seed}: {} is {} for a reason other than placement: {:?}; the VMI: {verdict:?}",
                    vm.name, vm.action, vm.reasons
                )),
            }
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
    (scenario.shapes, tally)
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
        let (shapes, tally) = run_scenario(&kc, base_seed + i).await;
        println!("scenario seed {}: {shapes:?}", base_seed + i);
        println!(
            "scenario seed {}: {} VMs migrated, {} blocked (the scheduler names {:?}), {} not migratable, {} disagreements",
            base_seed + i,
            tally.migrated,
            tally.blocked,
            tally.constraints,
            tally.not_migratable,
            tally.disagreements.len()
        );
        for d in &tally.disagreements {
            println!("  {d}");
        }
        vms += tally.migrated + tally.blocked + tally.not_migratable;
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
