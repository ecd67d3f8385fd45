//! `kubectl vm-audit -f` on `examples/docs-shapes/`: manifests written the way KubeVirt's and
//! CDI's documentation and templates write them (DataVolume templates with `spec.pvc` and
//! `spec.storage`, a StorageProfile, common cluster instancetypes, a standalone VMI, a VMI
//! ReplicaSet, a VM pool). Every finding the audit reports is listed here with the KubeVirt
//! behaviour that calls for it, and nothing else may be reported: the false alarms of earlier
//! versions (unknown DataVolume disks, "not in the input" common instancetypes, a liveness
//! probe every 20 s judged too early, a VMI's probe under `spec.template`) stay gone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/docs-shapes")
}

fn audit(args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_kubectl-vm_audit"))
        .env_clear()
        .env("HOME", home.path())
        .env("NO_COLOR", "1")
        .env("PATH", std::env::var("PATH").unwrap())
        .args(args)
        .output()
        .unwrap()
}

/// `(kind, name, rule)` of every finding.
fn findings(doc: &Value) -> BTreeSet<(String, String, String)> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["name"].as_str().unwrap().to_string(),
                f["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn message<'a>(doc: &'a Value, name: &str, rule: &str) -> &'a str {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name && f["rule"] == rule)
        .and_then(|f| f["message"].as_str())
        .unwrap_or_else(|| panic!("no {rule} on {name}: {doc:#}"))
}

#[test]
fn the_documented_shapes_get_exactly_the_findings_kubevirt_behaviour_supports() {
    let out = audit(&["-f", corpus().to_str().unwrap(), "-o", "json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an error is found: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected: BTreeSet<(String, String, String)> = [
        // fedora-rwo declares no interface, as KubeVirt's own example does: the webhook gives
        // it the pod network with the cluster's default binding, bridge when no KubeVirt CR
        // says otherwise (none in the input), and virt-handler sets LiveMigratable=False
        // (InterfaceNotLiveMigratable, the first reason it checks) for bridge on the pod
        // network. Its disk would block it too: CDI creates PVC fedora-rwo-root from the
        // template's spec.pvc as written, ReadWriteOnce (DisksNotLiveMigratable). With
        // evictionStrategy LiveMigrate the eviction webhook refuses every eviction of the
        // launcher pod: each drain of its node waits for ever.
        ("VirtualMachine", "fedora-rwo", "live-migrate-not-migratable"),
        // The guide asks for liveness and readiness probes; it has neither.
        ("VirtualMachine", "fedora-rwo", "probes-liveness-missing"),
        ("VirtualMachine", "fedora-rwo", "probes-readiness-missing"),
        // vmi-fedora: nothing owns a standalone VMI, so no runStrategy restarts it after a
        // failure or a drain.
        (
            "VirtualMachineInstance",
            "vmi-fedora",
            "run-strategy-standalone-vmi",
        ),
        // Its liveness probe can fail 5 + 3 × 5 = 20 s after start (Kubernetes' default
        // failureThreshold 3); a guest takes longer than that to boot, and virt-launcher then
        // kills it.
        (
            "VirtualMachineInstance",
            "vmi-fedora",
            "probes-liveness-too-early",
        ),
        // Requests without limits: the guide's own advice (info only).
        ("VirtualMachineInstance", "vmi-fedora", "resources-limits-missing"),
        // testreplicaset: no readiness probe (the guide); requests without limits (info).
        (
            "VirtualMachineInstanceReplicaSet",
            "testreplicaset",
            "probes-readiness-missing",
        ),
        (
            "VirtualMachineInstanceReplicaSet",
            "testreplicaset",
            "resources-limits-missing",
        ),
        // vm-pool-cirros: no liveness probe (the guide); requests without limits (info).
        ("VirtualMachinePool", "vm-pool-cirros", "probes-liveness-missing"),
        ("VirtualMachinePool", "vm-pool-cirros", "resources-limits-missing"),
    ]
    .into_iter()
    .map(|(k, n, r)| (k.to_string(), n.to_string(), r.to_string()))
    .collect();
    // Not reported, and why:
    // - rhel-rwx: its DataVolume asks for ReadWriteMany, so the VM migrates; u1.large is one of
    //   KubeVirt's common instancetypes (4 vCPU, 8Gi), installed with every KubeVirt since
    //   v1.1, so it is sized; its liveness probe every 20 s cannot act before 0 + 3 × 20 = 60 s.
    // - ubuntu-profile: spec.storage leaves the access mode to CDI, which takes it from the
    //   StorageProfile of the default class ceph-rbd: ReadWriteMany. RerunOnFailure with
    //   LiveMigrate keeps it running through a drain.
    // - fedora-rwo is sized by u1.medium (common instancetypes): no resources finding.
    assert_eq!(findings(&doc), expected, "{doc:#}");
    assert_eq!(doc["summary"]["objects"], 6, "{doc:#}");

    // The words name KubeVirt's reason and the default binding that causes it.
    let rwo = message(&doc, "fedora-rwo", "live-migrate-not-migratable");
    assert!(
        rwo.contains("InterfaceNotLiveMigratable") && rwo.contains("declares no interface"),
        "{rwo}"
    );
    // The probe's arithmetic is shown.
    let early = message(&doc, "vmi-fedora", "probes-liveness-too-early");
    assert!(
        early.contains("initialDelaySeconds 5 + failureThreshold 3 × periodSeconds 5"),
        "{early}"
    );
    // Each kind's own field path.
    assert!(
        message(&doc, "fedora-rwo", "probes-liveness-missing")
            .starts_with("spec.template.spec.livenessProbe")
    );
    assert!(
        message(&doc, "testreplicaset", "probes-readiness-missing")
            .starts_with("spec.template.spec.readinessProbe")
    );
    assert!(
        message(&doc, "vm-pool-cirros", "probes-liveness-missing")
            .starts_with("spec.virtualMachineTemplate.spec.template.spec.livenessProbe")
    );
}

#[test]
fn the_same_object_in_two_files_is_an_input_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let vm = std::fs::read_to_string(corpus().join("rhel-datavolume-storage-rwx.yaml")).unwrap();
    std::fs::write(dir.path().join("a.yaml"), &vm).unwrap();
    std::fs::write(dir.path().join("b.yaml"), format!("# a copy\n{vm}")).unwrap();
    let out = audit(&["-f", dir.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("duplicate VirtualMachine shop/rhel-rwx")
            && stderr.contains("a.yaml:")
            && stderr.contains("b.yaml:")
            && stderr.contains("each object may appear once"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no report for a bad input");
}

/// fedora-rwo under a KubeVirt CR whose `network.defaultNetworkInterface` is masquerade
/// (`pkg/network/vmispec/defaults.go`): its pod network no longer blocks, and its disk is what
/// KubeVirt reports, with the words naming the DataVolume and the PVC that CDI creates from it.
#[test]
fn with_masquerade_as_the_cluster_default_the_rwo_disk_is_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let vm = std::fs::read_to_string(corpus().join("fedora-datavolume-pvc.yaml")).unwrap();
    std::fs::write(dir.path().join("vm.yaml"), vm).unwrap();
    std::fs::write(
        dir.path().join("kubevirt.yaml"),
        "apiVersion: kubevirt.io/v1\nkind: KubeVirt\nmetadata: {name: kubevirt, namespace: kubevirt}\n\
spec: {configuration: {network: {defaultNetworkInterface: masquerade}}}\n",
    )
    .unwrap();
    let out = audit(&["-f", dir.path().to_str().unwrap(), "-o", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rwo = message(&doc, "fedora-rwo", "live-migrate-not-migratable");
    assert!(
        rwo.contains("DisksNotLiveMigratable")
            && rwo.contains("DataVolume fedora-rwo-root (PVC fedora-rwo-root that CDI creates")
            && rwo.contains("ReadWriteOnce")
            && !rwo.contains("InterfaceNotLiveMigratable"),
        "{rwo}"
    );
}
