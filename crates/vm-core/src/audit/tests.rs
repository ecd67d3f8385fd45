//! Every rule fires on a real-shaped object that breaks it and stays silent on a near-miss
//! that follows the practice. The baseline cluster follows every practice.

use serde_json::{Value, json};

use super::*;
use crate::manifest::load_into;

/// Three KubeVirt nodes, a KubeVirt CR, a shared PVC and a VM that follows every practice.
const BASELINE: &str = r#"
apiVersion: kubevirt.io/v1
kind: KubeVirt
metadata: {name: kubevirt, namespace: kubevirt}
spec:
  configuration:
    evictionStrategy: LiveMigrate
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata: {name: node-1, labels: {kubernetes.io/hostname: node-1, kubevirt.io/schedulable: "true", rack: a}}
  status:
    allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
    conditions: [{type: Ready, status: "True"}]
- apiVersion: v1
  kind: Node
  metadata: {name: node-2, labels: {kubernetes.io/hostname: node-2, kubevirt.io/schedulable: "true", rack: a}}
  status:
    allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
    conditions: [{type: Ready, status: "True"}]
- apiVersion: v1
  kind: Node
  metadata: {name: node-3, labels: {kubernetes.io/hostname: node-3, kubevirt.io/schedulable: "true", rack: b}}
  status:
    allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
    conditions: [{type: Ready, status: "True"}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: web-1-root, namespace: prod}
spec:
  accessModes: [ReadWriteMany]
  resources: {requests: {storage: 20Gi}}
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: web-1, namespace: prod}
spec:
  runStrategy: Always
  template:
    metadata:
      labels: {app: web}
    spec:
      evictionStrategy: LiveMigrate
      domain:
        cpu: {cores: 2}
        resources:
          requests: {cpu: "2", memory: 4Gi}
          limits: {cpu: "2", memory: 4Gi}
        devices:
          disks: [{name: root, disk: {bus: virtio}}]
          interfaces: [{name: default, masquerade: {}}]
      networks: [{name: default, pod: {}}]
      livenessProbe:
        initialDelaySeconds: 120
        periodSeconds: 20
        timeoutSeconds: 10
        tcpSocket: {port: 1500}
      readinessProbe:
        initialDelaySeconds: 120
        periodSeconds: 20
        timeoutSeconds: 10
        httpGet: {port: 80}
      volumes:
      - {name: root, persistentVolumeClaim: {claimName: web-1-root}}
"#;

/// RFC 7386 merge patch: objects merge, `null` deletes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// The baseline with `vm_patch` (YAML merge patch) applied to the VM and `extra` documents added.
fn cluster(vm_patch: &str, extra: &str) -> ClusterSnapshot {
    let mut snapshot = ClusterSnapshot::default();
    load_into(&mut snapshot, "baseline", BASELINE).unwrap();
    let mut vm = serde_json::to_value(&snapshot.vms[0]).unwrap();
    let patch: Value = serde_yaml::from_str(if vm_patch.is_empty() { "{}" } else { vm_patch }).unwrap();
    merge(&mut vm, &patch);
    snapshot.vms[0] = serde_json::from_value(vm).unwrap();
    load_into(&mut snapshot, "extra", extra).unwrap();
    snapshot
}

fn rules_fired(snapshot: &ClusterSnapshot) -> Vec<String> {
    rules_fired_with(snapshot, &AuditOptions::default())
}

fn rules_fired_with(snapshot: &ClusterSnapshot, options: &AuditOptions) -> Vec<String> {
    audit_with(snapshot, options)
        .findings
        .iter()
        .map(|f| f.rule.clone())
        .collect()
}

/// The operator limit the migration-time cases run with: one hour.
const LIMIT: AuditOptions = AuditOptions {
    max_migration_seconds: Some(3600),
};

/// The options a case runs with: rules that only run under an operator limit get one.
fn options_for(rule: &str) -> AuditOptions {
    match rule {
        "migration-timeout-exceeds-limit" => LIMIT,
        _ => AuditOptions::default(),
    }
}

/// The baseline VM with a second, SR-IOV network on NAD `prod/sriov-net`.
const SRIOV_NETWORK: &str = "spec: {template: {spec: {domain: {devices: {interfaces: [{name: default, masquerade: {}}, \
{name: sriov, sriov: {}}]}}, networks: [{name: default, pod: {}}, {name: sriov, multus: {networkName: sriov-net}}]}}}";

/// The NAD of [`SRIOV_NETWORK`], whose VFs are the device-plugin resource `intel.com/sriov`.
const SRIOV_NAD: &str = "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\n\
metadata: {name: sriov-net, namespace: prod, annotations: {k8s.v1.cni.cncf.io/resourceName: intel.com/sriov}}\n\
spec: {config: '{}'}\n";

/// The baseline VM with `memory` of guest (requests and limits).
const VM_64GI: &str =
    "spec: {template: {spec: {domain: {resources: {requests: {memory: 64Gi}, limits: {memory: 64Gi}}}}}}";

/// A MigrationPolicy selecting the baseline VM's `app: web` label with `spec` added.
fn web_policy(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: migrations.kubevirt.io/v1alpha1\nkind: MigrationPolicy\nmetadata: {{name: {name}}}\n\
spec: {{selectors: {{virtualMachineInstanceSelector: {{app: web}}}}, {spec}}}\n"
    )
}

struct Case {
    rule: &'static str,
    /// Merge patch on the VM and extra documents that break the rule.
    fire: (&'static str, &'static str),
    /// A near miss that follows the practice.
    silent: (&'static str, &'static str),
}

const RWO_PVC: &str = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: db-data, namespace: prod}\nspec: {accessModes: [ReadWriteOnce]}\n";
const RWO_VOLUME: &str =
    "spec: {template: {spec: {volumes: [{name: root, persistentVolumeClaim: {claimName: db-data}}]}}}";

fn vmi_on_node_1(name: &str, memory: &str, owner: bool) -> String {
    let owner = if owner {
        format!(
            "ownerReferences: [{{apiVersion: kubevirt.io/v1, kind: VirtualMachine, name: {name}, uid: u-{name}, controller: true}}]"
        )
    } else {
        String::new()
    };
    format!(
        "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: {name}, namespace: prod, {owner}}}\n\
spec: {{evictionStrategy: LiveMigrate, domain: {{resources: {{requests: {{memory: {memory}}}}}}}}}\n\
status: {{phase: Running, nodeName: node-1}}\n"
    )
}

const SKYLAKE_NODE: &str = "---\napiVersion: v1\nkind: Node\nmetadata: {name: node-9, labels: {kubevirt.io/schedulable: 'true', cpu-model.node.kubevirt.io/Skylake-Client: 'true'}}\n\
status: {allocatable: {cpu: '16', memory: 64Gi}, conditions: [{type: Ready, status: 'True'}]}\n";

fn named_model_vmi(model: &str) -> String {
    format!(
        "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: named, namespace: prod}}\n\
spec: {{evictionStrategy: LiveMigrate, domain: {{cpu: {{model: {model}}}, resources: {{requests: {{memory: 1Gi}}}}}}}}\n\
status: {{phase: Running, nodeName: node-1}}\n"
    )
}

fn cases() -> Vec<Case> {
    let big_vmis: &'static str = Box::leak(
        (1..=3)
            .map(|i| vmi_on_node_1(&format!("big-{i}"), "20Gi", true))
            .collect::<String>()
            .into_boxed_str(),
    );
    let small_vmis: &'static str = Box::leak(
        (1..=3)
            .map(|i| vmi_on_node_1(&format!("small-{i}"), "8Gi", true))
            .collect::<String>()
            .into_boxed_str(),
    );
    let standalone: &'static str = Box::leak(vmi_on_node_1("batch", "1Gi", false).into_boxed_str());
    let owned: &'static str = Box::leak(vmi_on_node_1("batch", "1Gi", true).into_boxed_str());
    vec![
        Case {
            rule: "run-strategy-not-restarting",
            fire: ("spec: {runStrategy: Manual}", ""),
            silent: ("spec: {runStrategy: RerunOnFailure}", ""),
        },
        Case {
            rule: "run-strategy-missing",
            fire: ("spec: {runStrategy: null}", ""),
            silent: ("spec: {runStrategy: Always}", ""),
        },
        Case {
            rule: "run-strategy-halted",
            fire: ("spec: {runStrategy: Halted}", ""),
            silent: ("spec: {runStrategy: Always}", ""),
        },
        Case {
            rule: "run-strategy-deprecated-running",
            fire: ("spec: {runStrategy: null, running: true}", ""),
            silent: ("", ""),
        },
        Case {
            rule: "run-strategy-conflict",
            fire: ("spec: {running: true}", ""),
            silent: ("spec: {running: null}", ""),
        },
        Case {
            rule: "run-strategy-invalid",
            fire: ("spec: {runStrategy: Sometimes}", ""),
            silent: ("", ""),
        },
        Case {
            rule: "run-strategy-rerun-on-failure-eviction",
            fire: (
                "spec: {runStrategy: RerunOnFailure, template: {spec: {evictionStrategy: None}}}",
                "",
            ),
            silent: ("spec: {runStrategy: RerunOnFailure}", ""),
        },
        Case {
            rule: "run-strategy-standalone-vmi",
            fire: ("", standalone),
            silent: ("", owned),
        },
        Case {
            rule: "resources-memory-missing",
            fire: ("spec: {template: {spec: {domain: {resources: null}}}}", ""),
            silent: (
                "spec: {template: {spec: {domain: {resources: null, memory: {guest: 4Gi}}}}}",
                "",
            ),
        },
        Case {
            rule: "resources-cpu-missing",
            fire: (
                "spec: {template: {spec: {domain: {cpu: null, resources: {requests: {cpu: null}, limits: {cpu: null}}}}}}",
                "",
            ),
            silent: (
                "spec: {template: {spec: {domain: {resources: {requests: {cpu: null}, limits: {cpu: null}}}}}}",
                "",
            ),
        },
        Case {
            rule: "resources-limits-missing",
            fire: (
                "spec: {template: {spec: {domain: {resources: {limits: null}}}}}",
                "",
            ),
            silent: ("", ""),
        },
        Case {
            rule: "resources-instancetype-not-found",
            // Not one of KubeVirt's common instancetypes, which are built in.
            fire: (
                "spec: {instancetype: {name: gold.large}, template: {spec: {domain: {cpu: null, resources: null}}}}",
                "",
            ),
            silent: (
                "spec: {instancetype: {name: gold.large}, template: {spec: {domain: {cpu: null, resources: null}}}}",
                "apiVersion: instancetype.kubevirt.io/v1beta1\nkind: VirtualMachineClusterInstancetype\nmetadata: {name: gold.large}\nspec: {cpu: {guest: 2}, memory: {guest: 8Gi}}\n",
            ),
        },
        Case {
            rule: "resources-instancetype-conflict",
            fire: (
                "spec: {instancetype: {name: c1, kind: VirtualMachineInstancetype}}",
                "apiVersion: instancetype.kubevirt.io/v1beta1\nkind: VirtualMachineInstancetype\nmetadata: {name: c1, namespace: prod}\nspec: {cpu: {guest: 2}, memory: {guest: 4Gi}}\n",
            ),
            silent: (
                "spec: {instancetype: {name: c1, kind: VirtualMachineInstancetype}, template: {spec: {domain: {cpu: null, resources: null}}}}",
                "apiVersion: instancetype.kubevirt.io/v1beta1\nkind: VirtualMachineInstancetype\nmetadata: {name: c1, namespace: prod}\nspec: {cpu: {guest: 2}, memory: {guest: 4Gi}}\n",
            ),
        },
        Case {
            rule: "resources-memory-overcommitted",
            fire: ("spec: {template: {spec: {domain: {memory: {guest: 8Gi}}}}}", ""),
            silent: ("spec: {template: {spec: {domain: {memory: {guest: 4Gi}}}}}", ""),
        },
        Case {
            rule: "eviction-strategy-not-live-migrate",
            fire: ("spec: {template: {spec: {evictionStrategy: None}}}", ""),
            silent: ("spec: {template: {spec: {evictionStrategy: null}}}", ""),
        },
        Case {
            rule: "eviction-strategy-invalid",
            fire: ("spec: {template: {spec: {evictionStrategy: Migrate}}}", ""),
            silent: (
                "spec: {template: {spec: {evictionStrategy: LiveMigrateIfPossible}}}",
                "",
            ),
        },
        Case {
            rule: "eviction-strategy-stale",
            fire: (
                "",
                "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: web-1, namespace: prod}\nspec: {evictionStrategy: None}\nstatus: {phase: Running, nodeName: node-1}\n",
            ),
            silent: (
                "",
                "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: web-1, namespace: prod}\nspec: {evictionStrategy: LiveMigrate}\nstatus: {phase: Running, nodeName: node-1}\n",
            ),
        },
        Case {
            rule: "live-migrate-not-migratable",
            fire: (RWO_VOLUME, RWO_PVC),
            silent: ("", RWO_PVC),
        },
        Case {
            rule: "live-migration-not-migratable",
            fire: (
                "spec: {template: {spec: {evictionStrategy: None, domain: {devices: {hostDevices: [{name: nic, deviceName: intel.com/sriov}]}}}}}",
                "",
            ),
            silent: ("spec: {template: {spec: {evictionStrategy: None}}}", ""),
        },
        Case {
            rule: "live-migration-unknown",
            fire: (
                "spec: {template: {spec: {volumes: [{name: root, dataVolume: {name: not-listed}}]}}}",
                "",
            ),
            silent: ("", ""),
        },
        Case {
            rule: "node-placement-pinned",
            fire: (
                "spec: {template: {spec: {nodeSelector: {kubernetes.io/hostname: node-2}}}}",
                "",
            ),
            silent: ("spec: {template: {spec: {nodeSelector: {rack: a}}}}", ""),
        },
        Case {
            rule: "node-placement-single-node",
            fire: ("spec: {template: {spec: {nodeSelector: {rack: b}}}}", ""),
            silent: ("spec: {template: {spec: {nodeSelector: {rack: a}}}}", ""),
        },
        Case {
            rule: "node-placement-no-node",
            fire: (
                "spec: {template: {spec: {affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: rack, operator: In, values: [c]}]}]}}}}}}",
                "",
            ),
            silent: (
                "spec: {template: {spec: {affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: rack, operator: In, values: [a, b]}]}]}}}}}}",
                "",
            ),
        },
        // Only node-9 offers a named model at all; the VMI on node-1 asks for another one.
        Case {
            rule: "node-placement-no-migration-target",
            fire: (
                "",
                Box::leak(format!("{SKYLAKE_NODE}{}", named_model_vmi("Haswell-noTSX")).into_boxed_str()),
            ),
            silent: (
                "",
                Box::leak(format!("{SKYLAKE_NODE}{}", named_model_vmi("Skylake-Client")).into_boxed_str()),
            ),
        },
        Case {
            rule: "capacity-exceeds-every-node",
            fire: (
                "spec: {template: {spec: {domain: {resources: {requests: {memory: 40Gi}, limits: {memory: 40Gi}}}}}}",
                "",
            ),
            silent: (
                "spec: {template: {spec: {domain: {resources: {requests: {memory: 30Gi}, limits: {memory: 30Gi}}}}}}",
                "",
            ),
        },
        // pkg/network/multus/nad.go: an SR-IOV network whose NAD is not in the input.
        Case {
            rule: "capacity-network-resource-unknown",
            fire: (SRIOV_NETWORK, ""),
            silent: (SRIOV_NETWORK, SRIOV_NAD),
        },
        // Each of the three 20Gi VMs alone fits on node-2 or node-3, all three together do not.
        Case {
            rule: "capacity-node-evacuation",
            fire: ("", big_vmis),
            silent: ("", small_vmis),
        },
        Case {
            rule: "probes-liveness-missing",
            fire: ("spec: {template: {spec: {livenessProbe: null}}}", ""),
            silent: (
                "spec: {template: {spec: {livenessProbe: {initialDelaySeconds: 60, guestAgentPing: {}, tcpSocket: null}}}}",
                "",
            ),
        },
        Case {
            rule: "probes-readiness-missing",
            fire: ("spec: {template: {spec: {readinessProbe: null}}}", ""),
            silent: ("", ""),
        },
        Case {
            rule: "probes-invalid",
            fire: (
                "spec: {template: {spec: {readinessProbe: {tcpSocket: {port: 80}}}}}",
                "",
            ),
            silent: (
                "spec: {template: {spec: {readinessProbe: {httpGet: null, tcpSocket: {port: 80}}}}}",
                "",
            ),
        },
        Case {
            rule: "probes-liveness-too-early",
            // Kubernetes' defaults: 0 + 3 × 10 = 30 s; the baseline's period of 20 s makes 60 s.
            fire: (
                "spec: {template: {spec: {livenessProbe: {initialDelaySeconds: null, periodSeconds: null}}}}",
                "",
            ),
            silent: (
                "spec: {template: {spec: {livenessProbe: {initialDelaySeconds: null}}}}",
                "",
            ),
        },
        Case {
            rule: "probes-timeout-exceeds-period",
            fire: (
                "spec: {template: {spec: {readinessProbe: {timeoutSeconds: 30}}}}",
                "",
            ),
            silent: (
                "spec: {template: {spec: {readinessProbe: {timeoutSeconds: 20}}}}",
                "",
            ),
        },
        Case {
            rule: "configuration-grace-period-zero",
            fire: ("spec: {template: {spec: {terminationGracePeriodSeconds: 0}}}", ""),
            silent: (
                "spec: {template: {spec: {terminationGracePeriodSeconds: 180}}}",
                "",
            ),
        },
        Case {
            rule: "configuration-pdb-blocks-drain",
            fire: (
                "",
                "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: web, namespace: prod}\nspec: {maxUnavailable: 1, selector: {matchLabels: {app: web}}}\n",
            ),
            silent: (
                "",
                "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web, namespace: prod}\nspec: {minAvailable: 1, selector: {matchLabels: {app: web}}}\n",
            ),
        },
        Case {
            rule: "configuration-suppression-missing-reason",
            fire: (
                "metadata: {annotations: {vm-audit/suppress: probes-readiness-missing}}",
                "",
            ),
            silent: (
                "metadata: {annotations: {vm-audit/suppress: probes-readiness-missing, vm-audit/suppress-reason: batch}}",
                "",
            ),
        },
        Case {
            rule: "migration-timeout-exceeds-limit",
            // 64Gi is 69 GB; 69 × 150 s = 10350 s > 3600 s.
            fire: (VM_64GI, ""),
            // A policy lowers it to 69 × 50 s = 3450 s.
            silent: (
                VM_64GI,
                Box::leak(web_policy("fast", "completionTimeoutPerGiB: 50").into_boxed_str()),
            ),
        },
        Case {
            rule: "migration-large-without-convergence",
            fire: (VM_64GI, ""),
            silent: (
                VM_64GI,
                Box::leak(web_policy("converge", "allowAutoConverge: true").into_boxed_str()),
            ),
        },
        Case {
            rule: "configuration-suppression-unknown-rule",
            fire: (
                "metadata: {annotations: {vm-audit/suppress: probe-readiness, vm-audit/suppress-reason: typo}}",
                "",
            ),
            silent: (
                "metadata: {annotations: {vm-audit/suppress: probes-readiness-missing, vm-audit/suppress-reason: batch}}",
                "",
            ),
        },
    ]
}

#[test]
fn the_baseline_follows_every_practice() {
    let report = audit(&cluster("", ""));
    assert_eq!(report.findings, vec![], "baseline must be clean");
    // The VM and the KubeVirt CR's nodes: only the VM is an audited object here (no VMIs run).
    assert_eq!(report.audited.len(), 1);
}

#[test]
fn every_rule_has_a_case() {
    let covered: Vec<&str> = cases().iter().map(|c| c.rule).collect();
    for rule in RULES {
        assert!(covered.contains(&rule.id), "rule {} has no test case", rule.id);
    }
    assert_eq!(
        covered.len(),
        RULES.len(),
        "a case names a rule that does not exist"
    );
}

#[test]
fn each_rule_fires_on_a_breaking_object() {
    for case in cases() {
        let fired = rules_fired_with(&cluster(case.fire.0, case.fire.1), &options_for(case.rule));
        assert!(
            fired.iter().any(|r| r == case.rule),
            "{} did not fire; fired: {fired:?}",
            case.rule
        );
    }
}

#[test]
fn each_rule_is_silent_on_a_near_miss() {
    for case in cases() {
        let fired = rules_fired_with(&cluster(case.silent.0, case.silent.1), &options_for(case.rule));
        assert!(
            !fired.iter().any(|r| r == case.rule),
            "{} fired on its compliant twin: {fired:?}",
            case.rule
        );
    }
}

#[test]
fn findings_name_field_and_value_and_carry_category_and_hint() {
    let report = audit(&cluster(
        "spec: {runStrategy: Manual, template: {spec: {evictionStrategy: None}}}",
        "",
    ));
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "run-strategy-not-restarting")
        .unwrap();
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.category, Category::RunStrategy);
    assert!(f.message.contains("spec.runStrategy is Manual"), "{}", f.message);
    assert!(!f.hint.is_empty());
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "eviction-strategy-not-live-migrate")
        .unwrap();
    assert!(
        f.message.contains("None") && f.message.contains("spec.template.spec.evictionStrategy"),
        "{}",
        f.message
    );
}

#[test]
fn eviction_falls_back_to_the_cluster_then_none() {
    let mut snapshot = cluster("spec: {template: {spec: {evictionStrategy: null}}}", "");
    assert!(!rules_fired(&snapshot).contains(&"eviction-strategy-not-live-migrate".to_string()));
    snapshot.kubevirts.clear();
    let report = audit(&snapshot);
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "eviction-strategy-not-live-migrate")
        .unwrap();
    assert!(f.message.contains("KubeVirt's default"), "{}", f.message);
    let hco: crate::kubevirt::HyperConverged = serde_json::from_value(json!({
        "metadata": {"name": "kubevirt-hyperconverged", "namespace": "kubevirt-hyperconverged"},
        "spec": {"evictionStrategy": "LiveMigrate"}
    }))
    .unwrap();
    snapshot.hyperconvergeds.push(hco);
    assert!(!rules_fired(&snapshot).contains(&"eviction-strategy-not-live-migrate".to_string()));
}

#[test]
fn suppression_with_reason_moves_findings_aside() {
    let report = audit(&cluster(
        "metadata: {annotations: {vm-audit/suppress: 'probes-readiness-missing', vm-audit/suppress-reason: batch job}}\n\
spec: {template: {spec: {readinessProbe: null}}}",
        "",
    ));
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.suppressed.len(), 1);
    assert_eq!(report.summary().suppressed, 1);
}

#[test]
fn live_migrate_on_rwo_disk_is_an_error_naming_the_reason() {
    let report = audit(&cluster(RWO_VOLUME, RWO_PVC));
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "live-migrate-not-migratable")
        .unwrap();
    assert_eq!(f.severity, Severity::Error);
    assert!(
        f.message.contains("DisksNotLiveMigratable") && f.message.contains("db-data"),
        "{}",
        f.message
    );
}

#[test]
fn fail_threshold_compares_severities() {
    let report = audit(&cluster("spec: {runStrategy: Halted}", ""));
    assert!(report.fails_at(Severity::Info));
    assert!(!report.fails_at(Severity::Warning));
}

/// The message of `probes-liveness-too-early` on the baseline VM with `probe` as its liveness
/// probe (a tcpSocket handler is added), or `None` when the rule is silent.
fn liveness_too_early(probe: &str) -> Option<String> {
    let mut snapshot = cluster("", "");
    let mut probe: Value = serde_yaml::from_str(probe).unwrap();
    probe["tcpSocket"] = json!({"port": 1500});
    snapshot.vms[0]
        .spec
        .template
        .spec
        .as_mut()
        .unwrap()
        .liveness_probe = Some(serde_json::from_value(probe).unwrap());
    audit(&snapshot)
        .findings
        .into_iter()
        .find(|f| f.rule == "probes-liveness-too-early")
        .map(|f| f.message)
}

#[test]
fn a_liveness_probe_with_kubernetes_defaults_can_kill_after_30_s() {
    assert_eq!(
        liveness_too_early("{}").as_deref(),
        Some(
            "livenessProbe can restart the guest 30 s after start (initialDelaySeconds 0 + \
failureThreshold 3 × periodSeconds 10), below the 60 s boot allowance"
        )
    );
}

#[test]
fn a_liveness_probe_every_20_s_without_delay_cannot_kill_a_booting_guest() {
    // 0 + 3 × 20 = 60 s: not below the allowance.
    assert_eq!(liveness_too_early("{periodSeconds: 20}"), None);
    // One second less per period is.
    let message = liveness_too_early("{periodSeconds: 19}").unwrap();
    assert!(message.contains("57 s after start"), "{message}");
}

#[test]
fn an_initial_delay_counts_towards_the_boot_allowance() {
    assert_eq!(liveness_too_early("{initialDelaySeconds: 30}"), None);
    let message = liveness_too_early("{initialDelaySeconds: 29}").unwrap();
    assert!(
        message.contains("59 s after start (initialDelaySeconds 29 + failureThreshold 3 × periodSeconds 10)"),
        "{message}"
    );
}

#[test]
fn a_single_failure_every_5_s_kills_after_5_s() {
    let message = liveness_too_early("{failureThreshold: 1, periodSeconds: 5}").unwrap();
    assert!(
        message.contains("5 s after start (initialDelaySeconds 0 + failureThreshold 1 × periodSeconds 5)"),
        "{message}"
    );
    // Zero means unset to the API server, so it takes the default too.
    let message = liveness_too_early("{failureThreshold: 0, periodSeconds: 0}").unwrap();
    assert!(message.contains("30 s after start"), "{message}");
}

#[test]
fn a_guest_agent_ping_liveness_probe_is_judged_by_the_same_arithmetic() {
    let mut snapshot = cluster(
        "spec: {template: {spec: {livenessProbe: {initialDelaySeconds: null, periodSeconds: null, tcpSocket: null, guestAgentPing: {}}}}}",
        "",
    );
    assert!(rules_fired(&snapshot).contains(&"probes-liveness-too-early".to_string()));
    let probe = snapshot.vms[0].spec.template.spec.as_mut().unwrap();
    probe.liveness_probe.as_mut().unwrap().initial_delay_seconds = Some(60);
    assert!(!rules_fired(&snapshot).contains(&"probes-liveness-too-early".to_string()));
}

#[test]
fn the_liveness_explanation_states_the_formula_and_the_allowance() {
    let rule = RULES
        .iter()
        .find(|r| r.id == "probes-liveness-too-early")
        .unwrap();
    assert!(
        rule.explanation
            .contains("initialDelaySeconds + failureThreshold × periodSeconds"),
        "{}",
        rule.explanation
    );
    // The text is static; this keeps it in step with the number the rule uses.
    let allowance = format!("boot allowance of {} s", rules::probes::BOOT_ALLOWANCE_SECONDS);
    assert!(rule.explanation.contains(&allowance), "{}", rule.explanation);
}

/// The same VMI spec, without probes, CPU or memory sizing and with eviction strategy None,
/// under each kind that carries one, indented to sit at `indent` spaces.
fn unprobed_spec(indent: usize) -> String {
    let pad = " ".repeat(indent);
    ["evictionStrategy: None", "domain: {devices: {}}"]
        .iter()
        .map(|line| format!("{pad}{line}\n"))
        .collect()
}

/// A VM, a standalone VMI, a VMI ReplicaSet and a VM pool, each named after its kind.
fn one_of_each_kind() -> String {
    format!(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {{name: vm, namespace: prod}}\n\
spec:\n  runStrategy: Always\n  template:\n    spec:\n{}\
---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: vmi, namespace: prod}}\n\
spec:\n{}\
---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstanceReplicaSet\nmetadata: {{name: rs, namespace: prod}}\n\
spec:\n  replicas: 2\n  template:\n    spec:\n{}\
---\napiVersion: pool.kubevirt.io/v1alpha1\nkind: VirtualMachinePool\nmetadata: {{name: pool, namespace: prod}}\n\
spec:\n  replicas: 2\n  virtualMachineTemplate:\n    spec:\n      runStrategy: Always\n      template:\n        spec:\n{}",
        unprobed_spec(6),
        unprobed_spec(2),
        unprobed_spec(6),
        unprobed_spec(10),
    )
}

/// The message and hint of `rule` on the object named `name`.
fn finding_on(report: &AuditReport, rule: &str, name: &str) -> (String, String) {
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == rule && f.object.name == name)
        .unwrap_or_else(|| panic!("{rule} did not fire on {name}: {:#?}", report.findings));
    (f.message.clone(), f.hint.clone())
}

#[test]
fn findings_name_the_field_where_each_kind_keeps_it() {
    let mut snapshot = ClusterSnapshot::default();
    load_into(&mut snapshot, "kinds.yaml", &one_of_each_kind()).unwrap();
    let report = audit(&snapshot);
    for (name, prefix) in [
        ("vm", "spec.template.spec"),
        ("vmi", "spec"),
        ("rs", "spec.template.spec"),
        ("pool", "spec.virtualMachineTemplate.spec.template.spec"),
    ] {
        let (message, _) = finding_on(&report, "probes-liveness-missing", name);
        assert_eq!(message, format!("{prefix}.livenessProbe is not set"), "{name}");
        let (message, _) = finding_on(&report, "probes-readiness-missing", name);
        assert_eq!(message, format!("{prefix}.readinessProbe is not set"), "{name}");
        let (message, _) = finding_on(&report, "resources-memory-missing", name);
        assert!(
            message.starts_with(&format!("{prefix}.domain has no ")),
            "{name}: {message}"
        );
        let (message, hint) = finding_on(&report, "eviction-strategy-not-live-migrate", name);
        assert_eq!(
            hint,
            format!("set {prefix}.evictionStrategy: LiveMigrate"),
            "{name}"
        );
        // A standalone VMI's value is its own; the others' comes from their template.
        let source = if name == "vmi" {
            "the VMI's spec.evictionStrategy".to_string()
        } else {
            format!("{prefix}.evictionStrategy")
        };
        assert!(
            message.ends_with(&format!("(from {source})")),
            "{name}: {message}"
        );
    }
}

/// The baseline VM sized only by the cluster instancetype `name`.
fn sized_by(name: &str, extra: &str) -> ClusterSnapshot {
    cluster(
        &format!(
            "spec: {{instancetype: {{kind: VirtualMachineClusterInstancetype, name: {name}}}, \
template: {{spec: {{domain: {{cpu: null, resources: null}}}}}}}}"
        ),
        extra,
    )
}

/// The guest's vCPUs and memory as the audit sizes the first subject.
fn guest_of(snapshot: &ClusterSnapshot) -> Option<(u32, String)> {
    let ctx = AuditContext::new(snapshot);
    let subjects = subject::subjects(snapshot);
    let spec = ctx.instancetype_of(&subjects[0])?;
    Some((spec.cpu.guest, spec.memory.guest.as_ref()?.0.clone()))
}

#[test]
fn a_common_instancetype_not_in_the_input_is_sized_from_the_built_in_table() {
    let snapshot = sized_by("u1.large", "");
    assert_eq!(guest_of(&snapshot), Some((2, "8Gi".to_string())));
    let fired = rules_fired(&snapshot);
    assert!(
        !fired.iter().any(|r| r.starts_with("resources-")),
        "sized, and not missing: {fired:?}"
    );
}

#[test]
fn a_finding_that_relies_on_a_built_in_instancetype_says_so() {
    // u1.8xlarge: 32 vCPUs and 128Gi, more than the baseline's 32Gi nodes.
    let report = audit(&sized_by("u1.8xlarge", ""));
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "capacity-exceeds-every-node")
        .unwrap();
    assert!(
        f.message
            .contains("u1.8xlarge sized as in KubeVirt's common-instancetypes v1.7.0, not in the input"),
        "{}",
        f.message
    );
}

#[test]
fn an_instancetype_defined_in_the_input_wins_over_the_built_in_one() {
    let own = "apiVersion: instancetype.kubevirt.io/v1beta1\nkind: VirtualMachineClusterInstancetype\n\
metadata: {name: u1.large}\nspec: {cpu: {guest: 4}, memory: {guest: 64Gi}}\n";
    let snapshot = sized_by("u1.large", own);
    assert_eq!(guest_of(&snapshot), Some((4, "64Gi".to_string())));
    let report = audit(&snapshot);
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "capacity-exceeds-every-node")
        .unwrap();
    assert!(!f.message.contains("common-instancetypes"), "{}", f.message);
}

#[test]
fn live_mode_does_not_assume_common_instancetypes() {
    let mut snapshot = sized_by("u1.large", "");
    snapshot.source = crate::snapshot::SnapshotSource::Live;
    assert_eq!(guest_of(&snapshot), None);
    assert!(rules_fired(&snapshot).contains(&"resources-instancetype-not-found".to_string()));
}

#[test]
fn namespaced_instancetypes_are_never_built_in() {
    let snapshot = cluster(
        "spec: {instancetype: {kind: VirtualMachineInstancetype, name: u1.large}, \
template: {spec: {domain: {cpu: null, resources: null}}}}",
        "",
    );
    assert_eq!(guest_of(&snapshot), None);
    assert!(rules_fired(&snapshot).contains(&"resources-instancetype-not-found".to_string()));
}

#[test]
fn a_vm_pinned_by_its_own_selector_is_the_pinned_rules_business_not_the_target_rules() {
    // node-9 offers the named model the VMI asks for, so KubeVirt's additions leave a target;
    // but the VMI also pins itself to node-1 by hostname: nothing else can take it, which
    // node-placement-pinned says. The migration-target rule stays silent instead of saying
    // it again as if the CPU were the cause.
    let pinned = named_model_vmi("Skylake-Client").replace(
        "spec: {evictionStrategy",
        "spec: {nodeSelector: {kubernetes.io/hostname: node-1}, evictionStrategy",
    );
    let fired = rules_fired(&cluster("", &format!("{SKYLAKE_NODE}{pinned}")));
    assert!(fired.contains(&"node-placement-pinned".to_string()), "{fired:?}");
    assert!(
        !fired.contains(&"node-placement-no-migration-target".to_string()),
        "{fired:?}"
    );
    // Without the pin, a model no other node offers is this rule's.
    let fired = rules_fired(&cluster(
        "",
        &format!("{SKYLAKE_NODE}{}", named_model_vmi("Haswell-noTSX")),
    ));
    assert!(
        fired.contains(&"node-placement-no-migration-target".to_string()),
        "{fired:?}"
    );
}

fn migration_finding(
    snapshot: &ClusterSnapshot,
    options: &AuditOptions,
    rule: &str,
) -> Option<(String, String)> {
    audit_with(snapshot, options)
        .findings
        .into_iter()
        .find(|f| f.rule == rule)
        .map(|f| (f.message, f.hint))
}

#[test]
fn the_migration_timeout_rule_is_off_without_a_limit() {
    let snapshot = cluster(VM_64GI, "");
    assert!(!rules_fired(&snapshot).contains(&"migration-timeout-exceeds-limit".to_string()));
    assert_eq!(
        audit(&snapshot),
        audit_with(&snapshot, &AuditOptions::default()),
        "audit() is audit_with() with the default options"
    );
}

#[test]
fn the_migration_timeout_message_shows_the_arithmetic_and_its_source() {
    let (message, hint) =
        migration_finding(&cluster(VM_64GI, ""), &LIMIT, "migration-timeout-exceeds-limit").unwrap();
    assert_eq!(
        message,
        "KubeVirt lets a migration of its 64Gi take up to 10350 s (69 GB × 150 s per GiB, from the default), \
more than the 3600 s limit (--max-migration-time)"
    );
    assert!(hint.contains("at most 52 (3600 s ÷ 69 GB)"), "{hint}");

    let mut snapshot = cluster(VM_64GI, "");
    snapshot.kubevirts[0].spec.configuration.migrations = Some(crate::kubevirt::MigrationConfiguration {
        completion_timeout_per_gib: Some(100),
        ..Default::default()
    });
    let (message, _) = migration_finding(&snapshot, &LIMIT, "migration-timeout-exceeds-limit").unwrap();
    assert!(
        message.contains(
            "6900 s (69 GB × 100 s per GiB, from KubeVirt CR kubevirt/kubevirt spec.configuration.migrations)"
        ),
        "{message}"
    );
}

#[test]
fn a_zero_completion_timeout_exceeds_any_limit() {
    let snapshot = cluster(
        "spec: {template: {spec: {domain: {resources: {requests: {memory: 1Gi}, limits: {memory: 1Gi}}}}}}",
        Box::leak(web_policy("unbounded", "completionTimeoutPerGiB: 0").into_boxed_str()),
    );
    let (message, _) = migration_finding(&snapshot, &LIMIT, "migration-timeout-exceeds-limit").unwrap();
    assert!(message.contains("no completion timeout"), "{message}");
    assert!(message.contains("MigrationPolicy unbounded"), "{message}");
}

#[test]
fn migration_time_rules_skip_vms_that_cannot_migrate() {
    let fired = rules_fired_with(&cluster(VM_64GI, ""), &LIMIT);
    assert!(fired.contains(&"migration-large-without-convergence".to_string()));
    let mut snapshot = cluster(RWO_VOLUME, RWO_PVC);
    let mut vm = serde_json::to_value(&snapshot.vms[0]).unwrap();
    merge(&mut vm, &serde_yaml::from_str::<Value>(VM_64GI).unwrap());
    snapshot.vms[0] = serde_json::from_value(vm).unwrap();
    let fired = rules_fired_with(&snapshot, &LIMIT);
    assert!(
        fired.contains(&"live-migrate-not-migratable".to_string()),
        "{fired:?}"
    );
    assert!(!fired.iter().any(|r| r.starts_with("migration-")), "{fired:?}");
}

#[test]
fn the_convergence_rule_starts_at_32_gi_and_names_the_source() {
    let vm = |memory: &str| {
        format!(
            "spec: {{template: {{spec: {{domain: {{resources: {{requests: {{memory: {memory}}}, limits: {{memory: {memory}}}}}}}}}}}}}"
        )
    };
    let rule = "migration-large-without-convergence";
    assert!(!rules_fired(&cluster(&vm("31Gi"), "")).contains(&rule.to_string()));
    let (message, hint) =
        migration_finding(&cluster(&vm("32Gi"), ""), &AuditOptions::default(), rule).unwrap();
    assert_eq!(
        message,
        "32Gi of guest memory and neither allowAutoConverge nor allowPostCopy (from the default): if the guest \
dirties memory faster than it is copied, the migration never converges, it is cancelled after 5250 s \
(35 GB × 150 s per GiB), and a drain of its node does not finish"
    );
    assert!(
        hint.contains("MigrationPolicy with allowAutoConverge: true"),
        "{hint}"
    );
    // A policy that selects by namespace labels cannot be checked in file mode: it is said so.
    let ns_policy = "---\napiVersion: migrations.kubevirt.io/v1alpha1\nkind: MigrationPolicy\nmetadata: {name: by-ns}\n\
spec: {selectors: {namespaceSelector: {tier: gold}, virtualMachineInstanceSelector: {app: web}}, allowPostCopy: true}\n";
    let (message, _) =
        migration_finding(&cluster(&vm("32Gi"), ns_policy), &AuditOptions::default(), rule).unwrap();
    assert!(
        message.ends_with("MigrationPolicy by-ns selects by namespace labels, which are not known here, and was taken not to apply"),
        "{message}"
    );
    // Post-copy from the KubeVirt CR is enough.
    let mut snapshot = cluster(&vm("32Gi"), "");
    snapshot.kubevirts[0].spec.configuration.migrations = Some(crate::kubevirt::MigrationConfiguration {
        allow_post_copy: Some(true),
        ..Default::default()
    });
    assert!(!rules_fired(&snapshot).contains(&rule.to_string()));
}

#[test]
fn effective_migration_settings_uses_the_template_labels_in_file_mode() {
    let snapshot = cluster(
        "",
        Box::leak(web_policy("web", "allowPostCopy: true").into_boxed_str()),
    );
    let subjects = subject::subjects(&snapshot);
    let settings = effective_migration_settings(&snapshot, &subjects[0]);
    assert!(settings.allow_post_copy);
    assert!(!settings.allow_auto_converge);
    assert_eq!(settings.completion_timeout_per_gib, 150);
    assert_eq!(settings.source, "MigrationPolicy web");
}

/// The baseline VM without its interface and network: KubeVirt's webhook gives it the pod
/// network with the cluster's default binding (`pkg/network/vmispec/defaults.go`).
const NO_INTERFACE: &str =
    "spec: {template: {spec: {domain: {devices: {interfaces: null}}, networks: null}}}";

/// `pkg/network/vmispec/defaults.go` and `interface.go`: a VM that declares no interface is
/// bridged on the pod network unless the KubeVirt CR makes masquerade the default, and the
/// finding says why and how to fix it, with the KubeVirt CR of the input, or without one.
#[test]
fn a_vm_without_interfaces_is_not_migratable_under_the_default_bridge() {
    let snapshot = cluster(NO_INTERFACE, "");
    let (message, hint) = finding_on(&audit(&snapshot), "live-migrate-not-migratable", "web-1");
    assert!(message.contains("InterfaceNotLiveMigratable"), "{message}");
    assert!(message.contains("declares no interface"), "{message}");
    assert!(hint.contains("masquerade: {}"), "{hint}");
    assert!(hint.contains("defaultNetworkInterface: masquerade"), "{hint}");

    // No KubeVirt CR at all: the same default.
    let mut none = snapshot.clone();
    none.kubevirts.clear();
    let (message, hint) = finding_on(&audit(&none), "live-migrate-not-migratable", "web-1");
    assert!(message.contains("InterfaceNotLiveMigratable"), "{message}");
    assert!(hint.contains("masquerade: {}"), "{hint}");

    // The CR makes masquerade the default: migratable, nothing fires.
    let mut masquerade = snapshot;
    masquerade.kubevirts[0].spec.configuration.network = Some(crate::kubevirt::NetworkConfiguration {
        default_network_interface: Some("masquerade".into()),
        ..Default::default()
    });
    assert_eq!(rules_fired(&masquerade), Vec::<String>::new());
}
