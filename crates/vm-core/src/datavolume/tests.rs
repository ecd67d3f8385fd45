//! Every branch of the resolution, on objects shaped as CDI's docs show them.

use super::*;
use crate::manifest::load_into;
use crate::migratability::Migratability;
use crate::planning::vmi_migratability;

/// The snapshot of `docs` (YAML, `---`-separated).
fn snapshot(docs: &str) -> ClusterSnapshot {
    let mut snapshot = ClusterSnapshot::default();
    load_into(&mut snapshot, "test.yaml", docs).unwrap();
    snapshot
}

/// A DataVolume `name` in `prod` with `spec` (a YAML flow mapping).
fn dv(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata: {{name: {name}, namespace: prod}}\nspec: {spec}\n---\n"
    )
}

/// A StorageProfile with `body` (YAML, `spec:` and/or `status:`).
fn profile(name: &str, body: &str) -> String {
    format!(
        "apiVersion: cdi.kubevirt.io/v1beta1\nkind: StorageProfile\nmetadata: {{name: {name}}}\n{body}\n---\n"
    )
}

/// A StorageClass, annotated default with `annotation` when given.
fn class(name: &str, annotation: Option<&str>) -> String {
    let annotations = annotation.map_or(String::new(), |a| format!(", annotations: {{{a}: \"true\"}}"));
    format!(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: {name}{annotations}}}\nprovisioner: example.com/{name}\n---\n"
    )
}

const SOURCE: &str = "source: {http: {url: \"https://example.com/fedora.qcow2\"}}";

fn resolve<'a>(
    snapshot: &'a ClusterSnapshot,
    templates: &[DataVolumeTemplateSpec],
    name: &str,
) -> VolumeClaim<'a> {
    resolve_claim(StorageObjects::of(snapshot), "prod", templates, name)
}

/// The modes of DataVolume `name`, which must resolve to a DataVolume.
fn modes(snapshot: &ClusterSnapshot, name: &str) -> ClaimModes {
    match resolve(snapshot, &[], name) {
        VolumeClaim::DataVolume(claim) => claim.modes,
        other => panic!("expected a DataVolume, got {other:?}"),
    }
}

fn known(access: &[&str], volume_mode: Option<&str>, from: ModesFrom) -> ClaimModes {
    ClaimModes::Known {
        access_modes: access.iter().map(|m| (*m).to_string()).collect(),
        volume_mode: volume_mode.map(str::to_string),
        from,
    }
}

fn from_profile(class: &str, default_class: bool) -> ModesFrom {
    ModesFrom::StorageProfile {
        class: class.into(),
        default_class,
    }
}

#[test]
fn spec_pvc_is_copied_as_it_is() {
    let s = snapshot(&dv(
        "root",
        &format!(
            "{{pvc: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 10Gi}}}}}}, {SOURCE}}}"
        ),
    ));
    assert_eq!(
        modes(&s, "root"),
        known(&["ReadWriteOnce"], None, ModesFrom::PvcSpec)
    );
    // A StorageProfile fills nothing into spec.pvc, even with a default class about.
    let s = snapshot(&format!(
        "{}{}{}",
        dv("root", "{pvc: {resources: {requests: {storage: 10Gi}}}}"),
        class("standard", Some(DEFAULT_CLASS_ANNOTATION)),
        profile(
            "standard",
            "status: {claimPropertySets: [{accessModes: [ReadWriteMany], volumeMode: Block}]}"
        )
    ));
    let ClaimModes::Unknown { why, add } = modes(&s, "root") else {
        panic!("spec.pvc without accessModes must be unknown");
    };
    assert!(why.contains("spec.pvc without accessModes"), "{why}");
    assert_eq!(add, "add spec.pvc.accessModes to DataVolume root");
}

#[test]
fn spec_storage_with_access_modes_needs_no_profile() {
    let s = snapshot(&dv(
        "root",
        "{storage: {accessModes: [ReadWriteMany], volumeMode: Block, storageClassName: ceph-rbd}}",
    ));
    assert_eq!(
        modes(&s, "root"),
        known(&["ReadWriteMany"], Some("Block"), ModesFrom::StorageSpec)
    );
}

#[test]
fn spec_storage_without_modes_takes_the_first_set_of_the_named_class_profile() {
    let s = snapshot(&format!(
        "{}{}",
        dv(
            "root",
            "{storage: {storageClassName: ceph-rbd, resources: {requests: {storage: 10Gi}}}}"
        ),
        profile(
            "ceph-rbd",
            "status: {storageClass: ceph-rbd, claimPropertySets: [{accessModes: [ReadWriteMany], volumeMode: Block}, {accessModes: [ReadWriteOnce], volumeMode: Filesystem}]}"
        )
    ));
    assert_eq!(
        modes(&s, "root"),
        known(&["ReadWriteMany"], Some("Block"), from_profile("ceph-rbd", false))
    );
}

#[test]
fn a_volume_mode_picks_the_first_set_of_that_mode() {
    let s = snapshot(&format!(
        "{}{}",
        dv(
            "root",
            "{storage: {storageClassName: ceph-rbd, volumeMode: Filesystem}}"
        ),
        profile(
            "ceph-rbd",
            "status: {claimPropertySets: [{accessModes: [ReadWriteMany], volumeMode: Block}, {accessModes: [ReadWriteOnce], volumeMode: Filesystem}]}"
        )
    ));
    assert_eq!(
        modes(&s, "root"),
        known(
            &["ReadWriteOnce"],
            Some("Filesystem"),
            from_profile("ceph-rbd", false)
        )
    );
    // No set of that volume mode: CDI cannot render the PVC.
    let s = snapshot(&format!(
        "{}{}",
        dv(
            "root",
            "{storage: {storageClassName: ceph-rbd, volumeMode: Filesystem}}"
        ),
        profile(
            "ceph-rbd",
            "status: {claimPropertySets: [{accessModes: [ReadWriteMany], volumeMode: Block}]}"
        )
    ));
    let ClaimModes::Unknown { why, .. } = modes(&s, "root") else {
        panic!("expected unknown");
    };
    assert!(
        why.contains("no claimPropertySet with access modes for volumeMode Filesystem"),
        "{why}"
    );
}

#[test]
fn without_a_class_the_default_class_profile_decides() {
    let s = snapshot(&format!(
        "{}{}{}{}{}",
        dv("root", "{storage: {resources: {requests: {storage: 10Gi}}}}"),
        class("local", None),
        class("standard", Some(DEFAULT_CLASS_ANNOTATION)),
        profile(
            "local",
            "status: {claimPropertySets: [{accessModes: [ReadWriteMany], volumeMode: Filesystem}]}"
        ),
        profile(
            "standard",
            "status: {claimPropertySets: [{accessModes: [ReadWriteOnce], volumeMode: Filesystem}]}"
        )
    ));
    assert_eq!(
        modes(&s, "root"),
        known(
            &["ReadWriteOnce"],
            Some("Filesystem"),
            from_profile("standard", true)
        )
    );
}

#[test]
fn the_default_virt_class_comes_before_the_default_class_except_for_archives() {
    let classes = snapshot(&format!(
        "{}{}",
        class("standard", Some(DEFAULT_CLASS_ANNOTATION)),
        class("virt", Some(DEFAULT_VIRT_CLASS_ANNOTATION))
    ))
    .storage_classes;
    let name = |c: Option<&StorageClass>| c.and_then(|c| c.metadata.name.clone());
    assert_eq!(name(default_storage_class(&classes, None)), Some("virt".into()));
    assert_eq!(
        name(default_storage_class(&classes, Some("kubevirt"))),
        Some("virt".into())
    );
    assert_eq!(
        name(default_storage_class(&classes, Some("archive"))),
        Some("standard".into())
    );
    assert_eq!(name(default_storage_class(&classes[..0], None)), None);
}

#[test]
fn among_several_defaults_the_newest_then_the_first_by_name_wins() {
    let mut classes = snapshot(&format!(
        "{}{}{}",
        class("b", Some(DEFAULT_CLASS_ANNOTATION)),
        class("a", Some(DEFAULT_CLASS_ANNOTATION)),
        class("c", Some(DEFAULT_CLASS_ANNOTATION))
    ))
    .storage_classes;
    let name = |c: Option<&StorageClass>| c.and_then(|c| c.metadata.name.clone());
    assert_eq!(name(default_storage_class(&classes, None)), Some("a".into()));
    let newest: StorageClass = serde_yaml::from_str(
        "metadata: {name: c, creationTimestamp: \"2025-01-02T00:00:00Z\", annotations: {storageclass.kubernetes.io/is-default-class: \"true\"}}\nprovisioner: x",
    )
    .unwrap();
    classes[2] = newest;
    assert_eq!(name(default_storage_class(&classes, None)), Some("c".into()));
}

#[test]
fn a_profile_spec_overrides_its_status() {
    let s = snapshot(&format!(
        "{}{}",
        dv("root", "{storage: {storageClassName: nfs}}"),
        profile(
            "nfs",
            "spec: {claimPropertySets: [{accessModes: [ReadWriteMany], volumeMode: Filesystem}]}\nstatus: {claimPropertySets: [{accessModes: [ReadWriteOnce], volumeMode: Filesystem}]}"
        )
    ));
    assert_eq!(
        modes(&s, "root"),
        known(&["ReadWriteMany"], Some("Filesystem"), from_profile("nfs", false))
    );
    // A profile written with a spec only (as an administrator edits it) counts too.
    let s = snapshot(&format!(
        "{}{}",
        dv("root", "{storage: {storageClassName: nfs}}"),
        profile(
            "nfs",
            "spec: {claimPropertySets: [{accessModes: [ReadWriteMany], volumeMode: Filesystem}]}"
        )
    ));
    assert!(matches!(modes(&s, "root"), ClaimModes::Known { .. }));
}

#[test]
fn unknown_modes_say_what_to_add() {
    // The named class's profile is not known.
    let s = snapshot(&dv("root", "{storage: {storageClassName: ceph-rbd}}"));
    assert_eq!(
        modes(&s, "root"),
        ClaimModes::Unknown {
            why: "DataVolume root leaves its access mode to CDI, which takes it from StorageProfile ceph-rbd, and StorageProfile ceph-rbd is not known".into(),
            add: "add StorageProfile ceph-rbd (cdi.kubevirt.io/v1beta1, with its claimPropertySets), or spec.storage.accessModes to DataVolume root".into(),
        }
    );
    // No class named and no default class.
    let s = snapshot(&format!(
        "{}{}",
        dv("root", "{storage: {}}"),
        class("local", None)
    ));
    assert_eq!(
        modes(&s, "root"),
        ClaimModes::Unknown {
            why: "DataVolume root leaves its access mode and storage class to CDI, and no default StorageClass (annotation storageclass.kubernetes.io/is-default-class: \"true\") is known".into(),
            add: "add the default StorageClass and its StorageProfile, or spec.storage.accessModes to DataVolume root".into(),
        }
    );
    // The default class's profile is not known.
    let s = snapshot(&format!(
        "{}{}",
        dv("root", "{storage: {}}"),
        class("standard", Some(DEFAULT_CLASS_ANNOTATION))
    ));
    let ClaimModes::Unknown { why, add } = modes(&s, "root") else {
        panic!("expected unknown");
    };
    assert!(
        why.contains("from StorageProfile standard (of the default StorageClass), and StorageProfile standard is not known"),
        "{why}"
    );
    assert!(add.starts_with("add StorageProfile standard "), "{add}");
    // The profile is empty, as CDI makes it for a provisioner it does not know.
    let s = snapshot(&format!(
        "{}{}",
        dv("root", "{storage: {storageClassName: local}}"),
        profile(
            "local",
            "spec: {}\nstatus: {storageClass: local, provisioner: example.com/unknown}"
        )
    ));
    assert_eq!(
        modes(&s, "root"),
        ClaimModes::Unknown {
            why: "DataVolume root leaves its access mode to CDI, and StorageProfile local has no claimPropertySets with access modes, so CDI cannot create PVC root".into(),
            add: "set spec.claimPropertySets on StorageProfile local, or add spec.storage.accessModes to DataVolume root".into(),
        }
    );
    // Neither spec.pvc nor spec.storage.
    let s = snapshot(&dv("root", &format!("{{{SOURCE}}}")));
    let ClaimModes::Unknown { why, .. } = modes(&s, "root") else {
        panic!("expected unknown");
    };
    assert!(why.contains("neither spec.pvc nor spec.storage"), "{why}");
}

#[test]
fn an_existing_pvc_wins_over_its_data_volume() {
    let s = snapshot(&format!(
        "{}apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: root, namespace: prod}}\nspec: {{accessModes: [ReadWriteMany]}}\n",
        dv("root", "{pvc: {accessModes: [ReadWriteOnce]}}")
    ));
    let templates: Vec<DataVolumeTemplateSpec> =
        serde_yaml::from_str("[{metadata: {name: root}, spec: {pvc: {accessModes: [ReadWriteOnce]}}}]")
            .unwrap();
    assert!(matches!(resolve(&s, &templates, "root"), VolumeClaim::Pvc(_)));
}

#[test]
fn the_vm_template_comes_before_a_data_volume_object() {
    let s = snapshot(&dv("root", "{pvc: {accessModes: [ReadWriteMany]}}"));
    let templates: Vec<DataVolumeTemplateSpec> =
        serde_yaml::from_str("[{metadata: {name: root}, spec: {pvc: {accessModes: [ReadWriteOnce]}}}]")
            .unwrap();
    let VolumeClaim::DataVolume(claim) = resolve(&s, &templates, "root") else {
        panic!("expected a DataVolume");
    };
    assert_eq!(claim.origin, DataVolumeOrigin::Template);
    assert_eq!(claim.modes, known(&["ReadWriteOnce"], None, ModesFrom::PvcSpec));
    let VolumeClaim::DataVolume(claim) = resolve(&s, &[], "root") else {
        panic!("expected a DataVolume");
    };
    assert_eq!(claim.origin, DataVolumeOrigin::Object);
    assert_eq!(claim.modes, known(&["ReadWriteMany"], None, ModesFrom::PvcSpec));
    // A template's missing modes are to be added to the template.
    let templates: Vec<DataVolumeTemplateSpec> =
        serde_yaml::from_str("[{metadata: {name: root}, spec: {storage: {storageClassName: fast}}}]")
            .unwrap();
    let VolumeClaim::DataVolume(claim) = resolve(&s, &templates, "root") else {
        panic!("expected a DataVolume");
    };
    let ClaimModes::Unknown { add, .. } = claim.modes else {
        panic!("expected unknown");
    };
    assert!(
        add.ends_with("or spec.storage.accessModes to the VM's dataVolumeTemplates entry root"),
        "{add}"
    );
}

#[test]
fn a_data_volume_in_another_namespace_is_not_it() {
    let s = snapshot(&dv("root", "{pvc: {accessModes: [ReadWriteMany]}}"));
    assert_eq!(
        resolve_claim(StorageObjects::of(&s), "staging", &[], "root"),
        VolumeClaim::NotFound
    );
}

/// A VMI of VM `db` in `prod`, on node-1, using `volume`.
fn vmi(volume: &str) -> String {
    format!(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: db, namespace: prod, ownerReferences: [{{apiVersion: kubevirt.io/v1, kind: VirtualMachine, name: db, uid: u1, controller: true}}]}}\n\
spec: {{volumes: [{volume}]}}\nstatus: {{phase: Running, nodeName: node-1}}\n---\n"
    )
}

/// VM `db` in `prod` with one dataVolumeTemplate `root` of `spec`.
fn vm_with_template(spec: &str) -> String {
    format!(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {{name: db, namespace: prod}}\n\
spec: {{runStrategy: Always, dataVolumeTemplates: [{{metadata: {{name: root}}, spec: {spec}}}], template: {{spec: {{volumes: [{{name: rootdisk, dataVolume: {{name: root}}}}]}}}}}}\n---\n"
    )
}

#[test]
fn the_planners_see_the_vm_templates_of_a_running_vmi() {
    let volume = "{name: rootdisk, dataVolume: {name: root}}";
    let rwo = snapshot(&format!(
        "{}{}",
        vm_with_template("{pvc: {accessModes: [ReadWriteOnce]}}"),
        vmi(volume)
    ));
    assert_eq!(
        vmi_migratability(&rwo, &rwo.vmis[0], &masquerade_by_default()),
        Migratability::NotMigratable {
            reason: "DisksNotLiveMigratable".into(),
            message: "DataVolume root (PVC root that CDI creates, volume rootdisk) is ReadWriteOnce; live migration requires that all PVCs are shared (ReadWriteMany)".into(),
            reported: false,
        }
    );
    let rwx = snapshot(&format!(
        "{}{}",
        vm_with_template("{storage: {accessModes: [ReadWriteMany]}}"),
        vmi(volume)
    ));
    assert_eq!(
        vmi_migratability(&rwx, &rwx.vmis[0], &masquerade_by_default()),
        Migratability::Migratable
    );
}

#[test]
fn a_claim_volume_without_its_pvc_uses_the_data_volume_of_that_name() {
    let s = snapshot(&format!(
        "{}{}{}",
        dv("root", "{storage: {storageClassName: local}}"),
        profile(
            "local",
            "status: {claimPropertySets: [{accessModes: [ReadWriteOnce], volumeMode: Filesystem}]}"
        ),
        vmi("{name: rootdisk, persistentVolumeClaim: {claimName: root}}")
    ));
    let Migratability::NotMigratable { message, .. } =
        vmi_migratability(&s, &s.vmis[0], &masquerade_by_default())
    else {
        panic!("expected not migratable");
    };
    assert_eq!(
        message,
        "DataVolume root (PVC root that CDI creates, volume rootdisk) is ReadWriteOnce, from StorageProfile local; live migration requires that all PVCs are shared (ReadWriteMany)"
    );
}

#[test]
fn the_data_volume_words_do_not_change_once_cdi_created_the_pvc() {
    let volume = "{name: rootdisk, dataVolume: {name: root}}";
    let before = snapshot(&format!(
        "{}{}",
        vm_with_template("{storage: {accessModes: [ReadWriteOnce]}}"),
        vmi(volume)
    ));
    let after = snapshot(&format!(
        "{}{}apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: root, namespace: prod}}\nspec: {{accessModes: [ReadWriteOnce]}}\nstatus: {{phase: Bound, accessModes: [ReadWriteOnce]}}\n",
        vm_with_template("{storage: {accessModes: [ReadWriteOnce]}}"),
        vmi(volume)
    ));
    assert_eq!(
        vmi_migratability(&before, &before.vmis[0], &masquerade_by_default()),
        vmi_migratability(&after, &after.vmis[0], &masquerade_by_default())
    );
}

#[test]
fn the_first_unknown_volume_is_reported_and_a_blocking_one_wins() {
    let s = snapshot(&vmi(
        "{name: a, dataVolume: {name: missing}}, {name: b, persistentVolumeClaim: {claimName: also-missing}}",
    ));
    let Migratability::Unknown { why, add } = vmi_migratability(&s, &s.vmis[0], &masquerade_by_default())
    else {
        panic!("expected unknown");
    };
    assert_eq!(
        why,
        "PVC missing is not known, nor a DataVolume missing that would create it, so its access mode is not either"
    );
    assert!(
        add.starts_with("include PVC missing or DataVolume missing"),
        "{add}"
    );
    let s = snapshot(&format!(
        "{}{}",
        dv("rwo", "{pvc: {accessModes: [ReadWriteOnce]}}"),
        vmi("{name: a, dataVolume: {name: missing}}, {name: b, dataVolume: {name: rwo}}")
    ));
    assert!(matches!(
        vmi_migratability(&s, &s.vmis[0], &masquerade_by_default()),
        Migratability::NotMigratable { .. }
    ));
}

/// A cluster whose default pod binding is masquerade, so that the VMIs here, which declare no
/// interface, are judged on their volumes alone.
fn masquerade_by_default() -> crate::effective::ClusterConfig {
    crate::effective::ClusterConfig {
        default_network_interface: "masquerade".into(),
        ..crate::effective::ClusterConfig::defaults()
    }
}
