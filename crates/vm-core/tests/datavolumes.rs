//! VMs whose disks come from CDI DataVolumes, audited from manifests shaped as KubeVirt's and
//! CDI's own docs show them. Each case says which live-migration finding KubeVirt's behaviour
//! calls for, and why.
//!
//! Sources: reference/kubevirt-semantics.md §4 (`LiveMigratable` is False with reason
//! `DisksNotLiveMigratable` when any PVC or DataVolume is not ReadWriteMany) and §3.1 (the
//! eviction webhook then denies every eviction of a `LiveMigrate` VMI, so drains hang); CDI
//! `doc/storageprofile.md` (the PVC is named after its DataVolume; `spec.storage` takes what it
//! leaves out from the StorageProfile of the class; an empty profile leaves CDI unable to create
//! the PVC) and CDI `pkg/controller/datavolume/util.go` (`renderPvcSpec`: `spec.pvc` is copied as
//! it is; the class is `storageClassName`, else the default StorageClass).
//!
//! Every case is also audited with its objects typed directly, as the live loader fills the
//! snapshot, and must give the same findings word for word.

use serde_json::Value;
use vm_core::audit::{self, Finding, Severity};
use vm_core::manifest::load_into;
use vm_core::snapshot::ClusterSnapshot;

/// The live-migration verdict rules (the ones `DisksNotLiveMigratable` feeds).
const RULES: [&str; 3] = [
    "live-migrate-not-migratable",
    "live-migration-not-migratable",
    "live-migration-unknown",
];

/// A VM as in KubeVirt's user guide (`storage/volume_migration.md`, "vm-dv"): its root disk is
/// the DataVolume template `src-dv` with `dv_spec`, and it asks to be live-migrated on eviction.
fn vm(dv_spec: &str) -> String {
    format!(
        r#"apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  labels:
    kubevirt.io/vm: vm-dv
  name: vm-dv
  namespace: prod
spec:
  dataVolumeTemplates:
  - metadata:
      name: src-dv
    spec:
{dv_spec}
      source:
        registry:
          url: docker://registry:5000/kubevirt/alpine-container-disk-demo:devel
  runStrategy: Always
  template:
    metadata:
      labels:
        kubevirt.io/vm: vm-dv
    spec:
      evictionStrategy: LiveMigrate
      domain:
        devices:
          disks:
          - disk:
              bus: virtio
            name: datavolumedisk1
          interfaces:
          - name: default
            masquerade: {{}}
        resources:
          requests:
            memory: 128Mi
      networks:
      - name: default
        pod: {{}}
      volumes:
      - dataVolume:
          name: src-dv
        name: datavolumedisk1
"#
    )
}

/// CDI's example StorageClass and StorageProfile (`doc/storageprofile.md`): hostpath-provisioner,
/// the default class, whose profile CDI fills with ReadWriteOnce/Filesystem.
const HOSTPATH_CLASS: &str = r#"apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
  name: hostpath-provisioner
provisioner: kubevirt.io/hostpath-provisioner
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
"#;

const HOSTPATH_PROFILE: &str = r#"apiVersion: cdi.kubevirt.io/v1beta1
kind: StorageProfile
metadata:
  labels:
    app: containerized-data-importer
    cdi.kubevirt.io: ""
  name: hostpath-provisioner
spec: {}
status:
  claimPropertySets:
  - accessModes:
    - ReadWriteOnce
    volumeMode: Filesystem
  provisioner: kubevirt.io/hostpath-provisioner
  storageClass: hostpath-provisioner
"#;

/// A Ceph RBD class whose profile CDI fills with ReadWriteMany/Block first (CDI's known
/// capabilities for `rbd.csi.ceph.com`).
const CEPH_PROFILE: &str = r#"apiVersion: cdi.kubevirt.io/v1beta1
kind: StorageProfile
metadata:
  name: ocs-storagecluster-ceph-rbd
spec: {}
status:
  claimPropertySets:
  - accessModes:
    - ReadWriteMany
    volumeMode: Block
  - accessModes:
    - ReadWriteOnce
    volumeMode: Block
  provisioner: openshift-storage.rbd.csi.ceph.com
  storageClass: ocs-storagecluster-ceph-rbd
"#;

/// The live-migration findings of `docs` read as manifests, after checking that the same
/// objects typed directly (as the live loader does) give the same ones.
fn findings(docs: &[&str]) -> Vec<Finding> {
    let mut from_files = ClusterSnapshot::default();
    load_into(&mut from_files, "input.yaml", &docs.join("---\n")).unwrap();
    let files = live_migration_findings(&from_files);
    assert_eq!(
        files,
        live_migration_findings(&typed(docs)),
        "live and file input disagree"
    );
    files
}

fn live_migration_findings(snapshot: &ClusterSnapshot) -> Vec<Finding> {
    audit::audit(snapshot)
        .findings
        .into_iter()
        .filter(|f| RULES.contains(&f.rule.as_str()))
        .collect()
}

/// The snapshot the live loader would build from `docs`: each object typed directly.
fn typed(docs: &[&str]) -> ClusterSnapshot {
    fn from<T: serde::de::DeserializeOwned>(doc: &Value) -> T {
        serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc}"))
    }
    let mut snapshot = ClusterSnapshot {
        source: vm_core::snapshot::SnapshotSource::Live,
        ..ClusterSnapshot::default()
    };
    for text in docs {
        let doc: Value = serde_yaml::from_str(text).unwrap();
        match doc["kind"].as_str().unwrap() {
            "VirtualMachine" => snapshot.vms.push(from(&doc)),
            "PersistentVolumeClaim" => snapshot.pvcs.push(from(&doc)),
            "DataVolume" => snapshot.data_volumes.push(from(&doc)),
            "StorageProfile" => snapshot.storage_profiles.push(from(&doc)),
            "StorageClass" => snapshot.storage_classes.push(from(&doc)),
            other => panic!("no case here uses a {other}"),
        }
    }
    snapshot
}

/// The one finding of `findings`: its rule, severity and message.
fn only(findings: &[Finding]) -> (&str, Severity, &str) {
    let [f] = findings else {
        panic!("expected one finding: {findings:#?}");
    };
    (f.rule.as_str(), f.severity, f.message.as_str())
}

/// `spec.pvc` with ReadWriteOnce: CDI copies it into PVC src-dv as it is, so the VMI gets
/// `LiveMigratable=False` (`DisksNotLiveMigratable`), and with evictionStrategy LiveMigrate
/// virt-api denies every eviction of its launcher pod: the same ERROR as for a VM whose PVC is
/// known to be ReadWriteOnce, naming the DataVolume.
#[test]
fn a_template_with_spec_pvc_read_write_once_blocks_drains() {
    let dv = "      pvc:\n        accessModes:\n        - ReadWriteOnce\n        resources:\n          requests:\n            storage: 2Gi";
    let found = findings(&[&vm(dv)]);
    assert_eq!(
        only(&found),
        (
            "live-migrate-not-migratable",
            Severity::Error,
            "evictionStrategy LiveMigrate but not live-migratable (DisksNotLiveMigratable, computed from the spec: \
DataVolume src-dv (PVC src-dv that CDI creates, volume datavolumedisk1) is ReadWriteOnce; live migration \
requires that all PVCs are shared (ReadWriteMany)); every drain of its node is blocked"
        )
    );
    // The same VM once CDI has created its PVC: the same finding, word for word.
    let pvc = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: src-dv, namespace: prod}\n\
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 2Gi}}}\nstatus: {phase: Bound, accessModes: [ReadWriteOnce]}\n";
    assert_eq!(findings(&[&vm(dv), pvc]), found);
}

/// The user guide's own `vm-dv`: `spec.storage` with ReadWriteOnce on class `local` decides
/// without any StorageProfile (CDI only consults the profile for what the DataVolume leaves out).
#[test]
fn a_template_with_spec_storage_read_write_once_blocks_drains_without_a_profile() {
    let dv = "      storage:\n        accessModes:\n        - ReadWriteOnce\n        volumeMode: Filesystem\n        resources:\n          requests:\n            storage: 2Gi\n        storageClassName: local";
    let found = findings(&[&vm(dv)]);
    let (rule, severity, message) = only(&found);
    assert_eq!((rule, severity), ("live-migrate-not-migratable", Severity::Error));
    assert!(
        message.contains(
            "DataVolume src-dv (PVC src-dv that CDI creates, volume datavolumedisk1) is ReadWriteOnce;"
        ),
        "{message}"
    );
}

/// `spec.storage` with ReadWriteMany: the PVC is shared, KubeVirt sets `LiveMigratable=True`,
/// and there is nothing to report.
#[test]
fn a_template_with_spec_storage_read_write_many_is_migratable() {
    let dv = "      storage:\n        accessModes:\n        - ReadWriteMany\n        volumeMode: Block\n        resources:\n          requests:\n            storage: 2Gi\n        storageClassName: ocs-storagecluster-ceph-rbd";
    assert_eq!(findings(&[&vm(dv)]), []);
}

/// `spec.storage` without access modes: CDI takes the first claim property set of the class's
/// StorageProfile. The Ceph profile's first set is ReadWriteMany: migratable. The default
/// class's (hostpath-provisioner) is ReadWriteOnce: not migratable, and the finding says the
/// StorageProfile decided.
#[test]
fn a_template_leaving_the_access_mode_to_cdi_is_decided_by_the_storage_profile() {
    let ceph = "      storage:\n        resources:\n          requests:\n            storage: 2Gi\n        storageClassName: ocs-storagecluster-ceph-rbd";
    assert_eq!(
        findings(&[&vm(ceph), CEPH_PROFILE, HOSTPATH_CLASS, HOSTPATH_PROFILE]),
        []
    );

    let default_class = "      storage:\n        resources:\n          requests:\n            storage: 2Gi";
    let found = findings(&[&vm(default_class), CEPH_PROFILE, HOSTPATH_CLASS, HOSTPATH_PROFILE]);
    let (rule, severity, message) = only(&found);
    assert_eq!((rule, severity), ("live-migrate-not-migratable", Severity::Error));
    assert!(
        message.contains(
            "DataVolume src-dv (PVC src-dv that CDI creates, volume datavolumedisk1) is ReadWriteOnce, \
from StorageProfile hostpath-provisioner of the default StorageClass;"
        ),
        "{message}"
    );
}

/// `spec.storage` without access modes and no StorageProfile of the class in the input: the
/// access mode is CDI's to pick and cannot be known, so an INFO says so and what to add.
#[test]
fn without_the_storage_profile_the_finding_names_the_profile_to_add() {
    let dv = "      storage:\n        resources:\n          requests:\n            storage: 2Gi\n        storageClassName: ocs-storagecluster-ceph-rbd";
    let found = findings(&[&vm(dv)]);
    assert_eq!(
        only(&found),
        (
            "live-migration-unknown",
            Severity::Info,
            "DataVolume src-dv leaves its access mode to CDI, which takes it from StorageProfile \
ocs-storagecluster-ceph-rbd, and StorageProfile ocs-storagecluster-ceph-rbd is not known"
        )
    );
    assert_eq!(
        found[0].hint,
        "add StorageProfile ocs-storagecluster-ceph-rbd (cdi.kubevirt.io/v1beta1, with its claimPropertySets), \
or spec.storage.accessModes to the VM's dataVolumeTemplates entry src-dv"
    );
    // With neither a class nor a default StorageClass, the default class is what is missing.
    let no_class = "      storage:\n        resources:\n          requests:\n            storage: 2Gi";
    let found = findings(&[&vm(no_class)]);
    let (rule, _, message) = only(&found);
    assert_eq!(rule, "live-migration-unknown");
    assert!(message.contains("no default StorageClass"), "{message}");
}

/// A standalone DataVolume object (CDI's `blank-dv` example, shaped as in
/// `doc/storageprofile.md`) used by a VM's `dataVolume` volume: read from the input instead of
/// being skipped, and decided by the StorageProfile of its class (ReadWriteOnce).
#[test]
fn a_data_volume_object_is_read_and_decides() {
    let blank_dv = r#"apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: src-dv
  namespace: prod
spec:
  storage:
    resources:
      requests:
        storage: 1Gi
    storageClassName: hostpath-provisioner
  source:
    blank: {}
"#;
    // The VM without its template: its volume refers to the DataVolume object.
    let mut vm: Value = serde_yaml::from_str(&vm("      pvc: {}")).unwrap();
    vm["spec"].as_object_mut().unwrap().remove("dataVolumeTemplates");
    let vm = serde_yaml::to_string(&vm).unwrap();
    let found = findings(&[&vm, blank_dv, HOSTPATH_PROFILE]);
    let (rule, _, message) = only(&found);
    assert_eq!(rule, "live-migrate-not-migratable");
    assert!(
        message.contains("is ReadWriteOnce, from StorageProfile hostpath-provisioner;"),
        "{message}"
    );
}
