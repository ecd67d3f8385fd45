//! Property tests of the manifest reader and the audit: random bytes, random YAML-shaped text and
//! random but well-typed clusters. Each test draws a fixed number of cases from a fixed seed, so
//! every run (CI too) checks the same inputs and a failure is reproducible; proptest then shrinks
//! it to a small input, printed in the failure.
//!
//! What must hold:
//! - reading never panics; an input either loads or gives an error that names the input and a
//!   line inside it;
//! - the audit never panics; every finding is about an audited object and a known rule, with that
//!   rule's severity and category; the summary counts the findings;
//! - the same objects give the same report: twice in a row, as YAML, as a JSON `List`, typed
//!   directly (as live mode does), and in any order;
//! - a suppression (with a reason) of one rule on one VM moves exactly that rule's findings on
//!   that VM aside and changes nothing else.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};
use vm_core::audit::{self, AuditReport, ObjectRef};
use vm_core::manifest::load_into;
use vm_core::snapshot::ClusterSnapshot;

/// The seed of every test here; change it to explore other inputs.
const SEED: &[u8; 32] = b"kubectl-vm-plugins: bad input 06";

fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, SEED))
}

/// Loads `text` as the input `input.yaml`: on success the audit's invariants must hold, on failure
/// the error must name the input and a line of it.
fn load_and_audit(text: &str) -> Result<(), TestCaseError> {
    let mut snapshot = ClusterSnapshot::default();
    match load_into(&mut snapshot, "input.yaml", text) {
        Ok(_) => check_report(&snapshot, &audit::audit(&snapshot)),
        Err(err) => {
            let lines = text.lines().count().max(1);
            prop_assert_eq!(&err.source_name, "input.yaml");
            prop_assert!(
                (1..=lines + 1).contains(&err.line),
                "line {} of {lines}: {err}",
                err.line
            );
            prop_assert!(!err.message.trim().is_empty(), "empty message: {err:?}");
            let prefix = format!("input.yaml:{}", err.line);
            prop_assert!(err.to_string().starts_with(&prefix), "{}", err);
            Ok(())
        }
    }
}

/// The invariants of one report on `snapshot`.
fn check_report(snapshot: &ClusterSnapshot, report: &AuditReport) -> Result<(), TestCaseError> {
    let known = known_objects(snapshot);
    for object in &report.audited {
        prop_assert!(known.contains(object), "audited {object}, not in the input");
    }
    for finding in report.findings.iter().chain(&report.suppressed) {
        prop_assert!(
            report.audited.contains(&finding.object),
            "finding on {}, which was not audited",
            finding.object
        );
        let Some(rule) = audit::rule(&finding.rule) else {
            return Err(TestCaseError::fail(format!("unknown rule {}", finding.rule)));
        };
        prop_assert_eq!(finding.severity, rule.severity, "{}", finding.rule);
        prop_assert_eq!(finding.category, rule.category, "{}", finding.rule);
        prop_assert!(!finding.message.is_empty(), "{} has no message", finding.rule);
    }
    let summary = report.summary();
    prop_assert_eq!(
        summary.info + summary.warning + summary.error,
        report.findings.len()
    );
    prop_assert_eq!(summary.objects, report.audited.len());
    prop_assert_eq!(&audit::audit(snapshot), report, "a second audit differs");
    Ok(())
}

/// Every object of the snapshot, as findings name them.
fn known_objects(s: &ClusterSnapshot) -> Vec<ObjectRef> {
    fn metas<T>(list: &[T], meta: fn(&T) -> &ObjectMeta) -> Vec<&ObjectMeta> {
        list.iter().map(meta).collect()
    }
    let kinds = [
        ("Node", metas(&s.nodes, |o| &o.metadata)),
        ("VirtualMachine", metas(&s.vms, |o| &o.metadata)),
        ("VirtualMachineInstance", metas(&s.vmis, |o| &o.metadata)),
        (
            "VirtualMachineInstanceReplicaSet",
            metas(&s.replica_sets, |o| &o.metadata),
        ),
        ("VirtualMachinePool", metas(&s.pools, |o| &o.metadata)),
        ("PodDisruptionBudget", metas(&s.pdbs, |o| &o.metadata)),
    ];
    let mut known = Vec::new();
    for (kind, list) in kinds {
        known.extend(list.into_iter().map(|meta| ObjectRef {
            kind: kind.to_string(),
            namespace: (kind != "Node").then(|| meta.namespace.clone().unwrap_or_else(|| "default".into())),
            name: meta.name.clone().unwrap_or_default(),
            source: None,
        }));
    }
    known
}

#[test]
fn arbitrary_bytes_load_or_fail_with_a_place_and_never_panic() {
    runner(512)
        .run(&prop::collection::vec(any::<u8>(), 0..2048), |bytes| {
            load_and_audit(&String::from_utf8_lossy(&bytes))
        })
        .unwrap();
}

/// Pieces of manifests and of YAML syntax; random sequences of them are mostly almost-valid
/// manifests, which reach deeper into the reader than random bytes do.
const FRAGMENTS: &[&str] = &[
    "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: a}\n",
    "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: a, namespace: prod}\n",
    "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n",
    "apiVersion: v1\nkind: List\nitems:\n",
    "apiVersion: pool.kubevirt.io/v1alpha1\nkind: VirtualMachinePool\nmetadata: {name: p}\n",
    "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: b}\n",
    "spec:\n",
    "  runStrategy: Always\n",
    "  running: yes\n",
    "  template:\n    spec:\n",
    "      evictionStrategy: LiveMigrate\n",
    "      domain: {resources: {requests: {memory: 1Gi, cpu: 500m}}}\n",
    "      domain: {memory: {guest: -3Gi}, cpu: {cores: 4294967296}}\n",
    "      nodeSelector: {zone: a}\n",
    "      livenessProbe: {tcpSocket: {port: 22}, httpGet: {port: 80}, initialDelaySeconds: -1}\n",
    "      volumes: [{name: d, persistentVolumeClaim: {claimName: x}}]\n",
    "status: {allocatable: {cpu: \"4\", memory: 8Gi}, conditions: [{type: Ready, status: \"True\"}]}\n",
    "status: {phase: Running, nodeName: n1}\n",
    "metadata:\n  annotations: {vm-audit/suppress: probes-liveness-missing}\n",
    "---\n",
    "...\n",
    "- ",
    "  ",
    "\n",
    "\t",
    "[",
    "]",
    "{",
    "}",
    ", ",
    ": ",
    "? ",
    "&x ",
    "*x",
    "<<: *x\n",
    "!!binary ",
    "!custom ",
    "\"",
    "'",
    "\\",
    "# comment\n",
    "|\n",
    ">-\n",
    "null",
    "~",
    "1e999",
    "-0x1F",
    "99999999999999999999999",
    ".nan",
    "%YAML 1.2\n",
    "\u{feff}",
    "é",
    "\r\n",
];

#[test]
fn yaml_shaped_text_loads_or_fails_with_a_place_and_never_panics() {
    let text = prop::collection::vec(select(FRAGMENTS), 0..80).prop_map(|parts| parts.concat());
    runner(768).run(&text, |text| load_and_audit(&text)).unwrap();
}

// --- Well-typed clusters -------------------------------------------------------------------

const NODES: usize = 4;

fn node(index: usize) -> impl Strategy<Value = Value> {
    (
        select(&["zone-a", "zone-b"][..]),
        any::<bool>(),
        prop::option::of(any::<bool>()),
        select(&["2", "8", "500m"][..]),
        select(&["4Gi", "32Gi", "1Gi"][..]),
        any::<bool>(),
        prop::option::of(select(&["NoSchedule", "NoExecute"][..])),
    )
        .prop_map(move |(zone, ready, schedulable, cpu, memory, cordoned, taint)| {
            let name = format!("node-{index}");
            let mut labels = json!({"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone});
            if let Some(s) = schedulable {
                labels["kubevirt.io/schedulable"] = json!(s.to_string());
            }
            let taints: Vec<Value> = taint
                .into_iter()
                .map(|effect| json!({"key": "dedicated", "value": "db", "effect": effect}))
                .collect();
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": labels},
                "spec": {"unschedulable": cordoned, "taints": taints},
                "status": {
                    "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
                }
            })
        })
}

fn probe() -> impl Strategy<Value = Value> {
    (
        prop::sample::subsequence(&["httpGet", "tcpSocket", "exec", "guestAgentPing"][..], 0..=2),
        prop::option::of(select(&[0, 5, 120][..])),
        prop::option::of(select(&[1, 10][..])),
    )
        .prop_map(|(handlers, delay, period)| {
            let mut probe = json!({});
            for handler in handlers {
                probe[handler] = match handler {
                    "httpGet" => json!({"port": 80}),
                    "tcpSocket" => json!({"port": 22}),
                    "exec" => json!({"command": ["true"]}),
                    _ => json!({}),
                };
            }
            if let Some(d) = delay {
                probe["initialDelaySeconds"] = json!(d);
            }
            if let Some(p) = period {
                probe["periodSeconds"] = json!(p);
            }
            probe
        })
}

/// A VMI spec (a VM's template, a replica set's, or a VMI's own).
fn vmi_spec() -> impl Strategy<Value = Value> {
    let resources = prop_oneof![
        Just(Value::Null),
        (
            select(&["1Gi", "512Mi", "100Gi", "0"][..]),
            prop::option::of(select(&["1", "250m", "64"][..]))
        )
            .prop_map(|(memory, cpu)| {
                let mut requests = json!({"memory": memory});
                if let Some(cpu) = cpu {
                    requests["cpu"] = json!(cpu);
                }
                json!({"resources": {"requests": requests.clone(), "limits": requests}})
            }),
        select(&["2Gi", "8Gi"][..])
            .prop_map(|guest| json!({"memory": {"guest": guest}, "cpu": {"cores": 2}})),
    ];
    let placement = prop_oneof![
        Just(json!({})),
        select(&["zone-a", "zone-c"][..]).prop_map(|z| json!({"nodeSelector": {"topology.kubernetes.io/zone": z}})),
        (0..NODES + 1).prop_map(|i| json!({"nodeSelector": {"kubernetes.io/hostname": format!("node-{i}")}})),
        (select(&["In", "NotIn"][..]), select(&["zone-a", "zone-b"][..])).prop_map(|(op, z)| json!({
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": op, "values": [z]}]}]
            }}}
        })),
    ];
    let volumes = prop::sample::subsequence(
        vec![
            json!({"name": "rwo", "persistentVolumeClaim": {"claimName": "data-rwo"}}),
            json!({"name": "rwx", "persistentVolumeClaim": {"claimName": "data-rwx"}}),
            json!({"name": "gone", "persistentVolumeClaim": {"claimName": "missing"}}),
            json!({"name": "root", "containerDisk": {"image": "fedora"}}),
            json!({"name": "host", "hostDisk": {"path": "/d.img", "type": "Disk"}}),
        ],
        0..=3,
    );
    (
        prop::option::of(select(&["None", "LiveMigrate", "LiveMigrateIfPossible", "External", "Sometimes"][..])),
        resources,
        placement,
        any::<bool>(),
        prop::option::of(probe()),
        prop::option::of(probe()),
        volumes,
        select(&["masquerade", "bridge"][..]),
    )
        .prop_map(|(eviction, resources, placement, tolerates, liveness, readiness, volumes, binding)| {
            let mut domain = json!({"devices": {"interfaces": [{"name": "default", binding: {}}]}});
            if let Value::Object(extra) = resources {
                domain.as_object_mut().unwrap().extend(extra);
            }
            let mut spec = json!({"domain": domain, "networks": [{"name": "default", "pod": {}}], "volumes": volumes});
            spec.as_object_mut().unwrap().extend(placement.as_object().unwrap().clone());
            if let Some(e) = eviction {
                spec["evictionStrategy"] = json!(e);
            }
            if tolerates {
                spec["tolerations"] = json!([{"key": "dedicated", "operator": "Exists"}]);
            }
            if let Some(p) = liveness {
                spec["livenessProbe"] = p;
            }
            if let Some(p) = readiness {
                spec["readinessProbe"] = p;
            }
            spec
        })
}

/// What runs a VM now: nothing, or a VMI on a node (maybe one that is not in the input).
fn running() -> impl Strategy<Value = Option<(usize, bool)>> {
    prop::option::of((0..NODES + 1, any::<bool>()))
}

fn vmi(namespace: &str, name: &str, spec: Value, on: (usize, bool), owner: Option<&str>) -> Value {
    let (node, migratable) = on;
    let condition = if migratable {
        json!({"type": "LiveMigratable", "status": "True"})
    } else {
        json!({"type": "LiveMigratable", "status": "False", "reason": "DisksNotLiveMigratable", "message": "PVC is not shared"})
    };
    let mut meta = json!({"name": name, "namespace": namespace});
    if let Some(vm) = owner {
        meta["ownerReferences"] = json!([{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": vm, "uid": "u", "controller": true}]);
    }
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "metadata": meta, "spec": spec,
        "status": {"phase": "Running", "nodeName": format!("node-{node}"), "conditions": [condition]}
    })
}

/// A VM and, when it runs, its VMI.
fn vm(index: usize) -> impl Strategy<Value = Vec<Value>> {
    (
        select(&["default", "prod"][..]),
        prop_oneof![
            select(&["Always", "RerunOnFailure", "Manual", "Halted", "Once", "Sometimes"][..])
                .prop_map(|s| json!({"runStrategy": s})),
            any::<bool>().prop_map(|r| json!({"running": r})),
            Just(json!({})),
        ],
        prop::option::of((select(&["small", "missing"][..]), any::<bool>())),
        vmi_spec(),
        running(),
        prop::option::of((select(&["probes-liveness-missing,no-such-rule", "run-strategy-not-restarting"][..]), any::<bool>())),
    )
        .prop_map(move |(namespace, strategy, instancetype, spec, on, suppress)| {
            let name = format!("vm-{index}");
            let mut vm_spec = strategy;
            if let Some((it, cluster)) = instancetype {
                let kind = if cluster {
                    "VirtualMachineClusterInstancetype"
                } else {
                    "VirtualMachineInstancetype"
                };
                vm_spec["instancetype"] = json!({"name": it, "kind": kind});
            }
            vm_spec["template"] = json!({"metadata": {"labels": {"app": name}}, "spec": spec.clone()});
            let mut meta = json!({"name": name, "namespace": namespace});
            if let Some((rules, reason)) = suppress {
                meta["annotations"] = json!({"vm-audit/suppress": rules});
                if reason {
                    meta["annotations"]["vm-audit/suppress-reason"] = json!("generated");
                }
            }
            let mut docs = vec![json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": meta, "spec": vm_spec})];
            if let Some(on) = on {
                docs.push(vmi(namespace, &name, spec, on, Some(&name)));
            }
            docs
        })
}

/// The cluster-wide objects: instancetypes, claims, the KubeVirt and HyperConverged CRs.
fn configuration() -> impl Strategy<Value = Vec<Value>> {
    (
        prop::option::of(prop::option::of(select(&["None", "LiveMigrate", "External"][..]))),
        prop::option::of(select(&["LiveMigrate", "None"][..])),
    )
        .prop_map(|(kubevirt, hco)| {
            let mut docs = vec![json!({
                "apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachineClusterInstancetype",
                "metadata": {"name": "small"}, "spec": {"cpu": {"guest": 2}, "memory": {"guest": "2Gi"}}
            })];
            for namespace in ["default", "prod"] {
                for (name, mode) in [("data-rwo", "ReadWriteOnce"), ("data-rwx", "ReadWriteMany")] {
                    docs.push(json!({
                        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": name, "namespace": namespace},
                        "spec": {"accessModes": [mode], "resources": {"requests": {"storage": "1Gi"}}}
                    }));
                }
            }
            if let Some(eviction) = kubevirt {
                let configuration = eviction.map_or_else(|| json!({}), |e| json!({"evictionStrategy": e}));
                docs.push(json!({
                    "apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
                    "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
                    "spec": {"configuration": configuration}
                }));
            }
            if let Some(eviction) = hco {
                docs.push(json!({
                    "apiVersion": "hco.kubevirt.io/v1beta1", "kind": "HyperConverged",
                    "metadata": {"name": "kubevirt-hyperconverged", "namespace": "kubevirt-hyperconverged"},
                    "spec": {"evictionStrategy": eviction}
                }));
            }
            docs
        })
}

/// A replica set, a pool and a standalone VMI, each maybe.
fn other_workloads() -> impl Strategy<Value = Vec<Value>> {
    (
        prop::option::of((vmi_spec(), 0..4i32)),
        prop::option::of((vmi_spec(), select(&["Always", "Manual"][..]))),
        prop::option::of((vmi_spec(), (0..NODES + 1, any::<bool>()))),
    )
        .prop_map(|(rs, pool, standalone)| {
            let mut docs = Vec::new();
            if let Some((spec, replicas)) = rs {
                docs.push(json!({
                    "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceReplicaSet",
                    "metadata": {"name": "rs", "namespace": "default"},
                    "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "rs"}},
                             "template": {"metadata": {"labels": {"app": "rs"}}, "spec": spec}}
                }));
            }
            if let Some((spec, strategy)) = pool {
                docs.push(json!({
                    "apiVersion": "pool.kubevirt.io/v1alpha1", "kind": "VirtualMachinePool",
                    "metadata": {"name": "pool", "namespace": "prod"},
                    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "pool"}},
                             "virtualMachineTemplate": {"metadata": {"labels": {"app": "pool"}},
                                 "spec": {"runStrategy": strategy, "template": {"metadata": {"labels": {"app": "pool"}}, "spec": spec}}}}
                }));
            }
            if let Some((spec, on)) = standalone {
                docs.push(vmi("default", "lonely", spec, on, None));
            }
            docs
        })
}

/// A whole cluster as manifest documents, in a random order.
fn cluster() -> impl Strategy<Value = Vec<Value>> {
    let nodes = (1..=NODES).prop_flat_map(|n| (0..n).map(node).collect::<Vec<_>>());
    let vms = (0..6usize).prop_flat_map(|n| (0..n).map(vm).collect::<Vec<_>>());
    (nodes, vms, configuration(), other_workloads())
        .prop_map(|(nodes, vms, config, others)| {
            let mut docs = nodes;
            docs.extend(vms.into_iter().flatten());
            docs.extend(config);
            docs.extend(others);
            docs
        })
        .prop_shuffle()
}

/// The snapshot the live loader would build: each object typed directly, no text in between.
fn typed(docs: &[Value]) -> ClusterSnapshot {
    fn from<T: serde::de::DeserializeOwned>(doc: &Value) -> T {
        serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc}"))
    }
    let mut snapshot = ClusterSnapshot::default();
    for doc in docs {
        match doc["kind"].as_str().unwrap() {
            "Node" => snapshot.nodes.push(from(doc)),
            "PersistentVolumeClaim" => snapshot.pvcs.push(from(doc)),
            "VirtualMachine" => snapshot.vms.push(from(doc)),
            "VirtualMachineInstance" => snapshot.vmis.push(from(doc)),
            "VirtualMachineInstanceReplicaSet" => snapshot.replica_sets.push(from(doc)),
            "VirtualMachinePool" => snapshot.pools.push(from(doc)),
            "KubeVirt" => snapshot.kubevirts.push(from(doc)),
            "HyperConverged" => snapshot.hyperconvergeds.push(from(doc)),
            "VirtualMachineClusterInstancetype" => snapshot.cluster_instancetypes.push(from(doc)),
            other => panic!("the generator made a {other}"),
        }
    }
    snapshot
}

fn as_yaml(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

fn loaded(name: &str, text: &str) -> Result<ClusterSnapshot, TestCaseError> {
    let mut snapshot = ClusterSnapshot::default();
    load_into(&mut snapshot, name, text).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    Ok(snapshot)
}

#[test]
fn generated_clusters_audit_the_same_from_yaml_json_and_typed_objects_in_any_order() {
    runner(256)
        .run(&cluster(), |docs| {
            let from_yaml = loaded("cluster.yaml", &as_yaml(&docs))?;
            let report = audit::audit(&from_yaml);
            check_report(&from_yaml, &report)?;

            let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
            let from_json = loaded("cluster.json", &serde_json::to_string_pretty(&list).unwrap())?;
            prop_assert_eq!(&audit::audit(&from_json), &report, "JSON List and YAML differ");
            prop_assert_eq!(
                &audit::audit(&typed(&docs)),
                &report,
                "typed objects and YAML differ"
            );

            let mut reversed = docs.clone();
            reversed.reverse();
            let from_reversed = loaded("reversed.yaml", &as_yaml(&reversed))?;
            prop_assert_eq!(
                &audit::audit(&from_reversed),
                &report,
                "the order of the documents matters"
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn suppressing_one_rule_on_one_vm_moves_exactly_its_findings_aside() {
    runner(256)
        .run(&cluster(), |mut docs| {
            let before = audit::audit(&typed(&docs));
            // The first VM finding on a VM without suppression annotations of its own.
            let Some(target) = before.findings.iter().find(|f| {
                f.object.kind == "VirtualMachine"
                    && docs.iter().any(|d| {
                        d["kind"] == "VirtualMachine"
                            && d["metadata"]["name"] == f.object.name.as_str()
                            && d["metadata"].get("annotations").is_none()
                    })
            }) else {
                return Ok(());
            };
            let (object, rule) = (target.object.clone(), target.rule.clone());
            let doc = docs
                .iter_mut()
                .find(|d| d["kind"] == "VirtualMachine" && d["metadata"]["name"] == object.name.as_str())
                .unwrap();
            doc["metadata"]["annotations"] = json!({
                "vm-audit/suppress": rule,
                "vm-audit/suppress-reason": "accepted for this test",
            });
            let after = audit::audit(&typed(&docs));
            let is_target = |f: &&audit::Finding| f.object == object && f.rule == rule;
            let kept: Vec<_> = before.findings.iter().filter(|f| !is_target(f)).collect();
            let moved: Vec<_> = before.findings.iter().filter(is_target).collect();
            prop_assert_eq!(after.findings.iter().collect::<Vec<_>>(), kept);
            let newly_suppressed: Vec<_> = after.suppressed.iter().filter(is_target).collect();
            prop_assert_eq!(newly_suppressed, moved.clone());
            prop_assert_eq!(after.suppressed.len(), before.suppressed.len() + moved.len());
            prop_assert_eq!(&after.audited, &before.audited);
            Ok(())
        })
        .unwrap();
}
