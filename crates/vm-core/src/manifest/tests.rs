//! Reading manifests: every kind the loader knows, the errors with their lines, the limits
//! against hostile input, and duplicate objects refused or read in layers.

use super::*;

#[test]
fn reads_a_cluster_scoped_migration_policy() {
    let mut snap = ClusterSnapshot::default();
    let text = "apiVersion: migrations.kubevirt.io/v1alpha1\nkind: MigrationPolicy\nmetadata: {name: big-vms}\n\
spec: {selectors: {namespaceSelector: {team: a}, virtualMachineInstanceSelector: {size: big}}, \
completionTimeoutPerGiB: 300, allowAutoConverge: true, allowPostCopy: false, bandwidthPerMigration: 1Gi}\n";
    let notes = load_into(&mut snap, "p.yaml", text).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let [policy] = snap.migration_policies.as_slice() else {
        panic!("expected one policy: {:?}", snap.migration_policies);
    };
    let spec = &policy.spec;
    let selectors = spec.selectors.as_ref().unwrap();
    assert_eq!(
        selectors.namespace_selector.get("team").map(String::as_str),
        Some("a")
    );
    assert_eq!(
        selectors
            .virtual_machine_instance_selector
            .get("size")
            .map(String::as_str),
        Some("big")
    );
    assert_eq!(spec.completion_timeout_per_gib, Some(300));
    assert_eq!(
        (spec.allow_auto_converge, spec.allow_post_copy),
        (Some(true), Some(false))
    );
    assert_eq!(
        spec.bandwidth_per_migration.as_ref().map(|q| q.0.as_str()),
        Some("1Gi")
    );
    // Cluster-scoped: recorded without a namespace.
    let object = ObjectRef {
        kind: "MigrationPolicy".into(),
        namespace: None,
        name: "big-vms".into(),
        source: None,
    };
    assert!(snap.origins.contains_key(&object));
    // A second document with the same name is a duplicate, not a second policy.
    assert!(load_into(&mut snap, "q.yaml", text).is_err());
}

#[test]
fn reads_data_volumes_storage_profiles_and_storage_classes_with_their_origins() {
    let mut snap = ClusterSnapshot::default();
    let text = "apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata: {name: fedora, namespace: prod}\n\
spec: {source: {http: {url: \"https://example.com/f.qcow2\"}}, storage: {accessModes: [ReadWriteMany], volumeMode: Block, storageClassName: ceph-rbd, resources: {requests: {storage: 30Gi}}}}\n\
---\napiVersion: cdi.kubevirt.io/v1beta1\nkind: StorageProfile\nmetadata: {name: ceph-rbd}\nspec: {}\n\
status: {storageClass: ceph-rbd, provisioner: rbd.csi.ceph.com, claimPropertySets: [{accessModes: [ReadWriteMany], volumeMode: Block}]}\n\
---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: ceph-rbd, annotations: {storageclass.kubernetes.io/is-default-class: \"true\"}}\nprovisioner: rbd.csi.ceph.com\n";
    let notes = load_into(&mut snap, "storage.yaml", text).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let storage = snap.data_volumes[0].spec.storage.as_ref().unwrap();
    assert_eq!(
        storage.access_modes.as_deref(),
        Some(&["ReadWriteMany".to_string()][..])
    );
    assert_eq!(
        (
            storage.volume_mode.as_deref(),
            storage.storage_class_name.as_deref()
        ),
        (Some("Block"), Some("ceph-rbd"))
    );
    assert!(snap.data_volumes[0].spec.source.is_some());
    let status = snap.storage_profiles[0].status.as_ref().unwrap();
    assert_eq!(
        status.claim_property_sets[0].volume_mode.as_deref(),
        Some("Block")
    );
    assert_eq!(snap.storage_classes[0].provisioner, "rbd.csi.ceph.com");
    let origin = |kind: &str, namespace: Option<&str>, name: &str| {
        snap.origins
            .get(&ObjectRef {
                kind: kind.into(),
                namespace: namespace.map(str::to_string),
                name: name.into(),
                source: None,
            })
            .map(|o| format!("{}:{}", o.source, o.line))
    };
    assert_eq!(
        origin("DataVolume", Some("prod"), "fedora").as_deref(),
        Some("storage.yaml:1")
    );
    // StorageProfiles and StorageClasses are cluster-scoped.
    assert_eq!(
        origin("StorageProfile", None, "ceph-rbd").as_deref(),
        Some("storage.yaml:6")
    );
    assert_eq!(
        origin("StorageClass", None, "ceph-rbd").as_deref(),
        Some("storage.yaml:12")
    );
    // Each may appear once; a StorageProfile and a StorageClass of one name are two objects.
    for doc in text.split("---\n") {
        let err = load_into(&mut snap, "again.yaml", doc).unwrap_err().to_string();
        assert!(
            err.contains("duplicate ") && err.contains("each object may appear once"),
            "{err}"
        );
    }
    assert_eq!(
        (
            snap.data_volumes.len(),
            snap.storage_profiles.len(),
            snap.storage_classes.len()
        ),
        (1, 1, 1)
    );
}

#[test]
fn reads_a_vms_data_volume_templates() {
    let mut snap = ClusterSnapshot::default();
    let text = r#"apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: vm1}
spec:
  dataVolumeTemplates:
  - apiVersion: cdi.kubevirt.io/v1beta1
    kind: DataVolume
    metadata: {name: vm1-root}
    spec: {pvc: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Gi}}}, source: {blank: {}}}
"#;
    load_into(&mut snap, "vm.yaml", text).unwrap();
    let [template] = snap.vms[0].spec.data_volume_templates.as_slice() else {
        panic!("expected one template");
    };
    assert_eq!(template.metadata.name.as_deref(), Some("vm1-root"));
    let pvc = template.spec.pvc.as_ref().unwrap();
    assert_eq!(
        pvc.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_string()][..])
    );
}

#[test]
fn reads_multi_document_yaml_lists_and_json() {
    let mut snap = ClusterSnapshot::default();
    let text = "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: a}\n---\n# comment only\n---\n\
apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Node, metadata: {name: n1}}\n- {apiVersion: kubevirt.io/v1, kind: VirtualMachineInstance, metadata: {name: b}}\n";
    let notes = load_into(&mut snap, "f.yaml", text).unwrap();
    assert!(notes.is_empty());
    assert_eq!((snap.vms.len(), snap.nodes.len(), snap.vmis.len()), (1, 1, 1));
    load_into(
        &mut snap,
        "f.json",
        r#"{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachine","metadata":{"name":"c"}}"#,
    )
    .unwrap();
    assert_eq!(snap.vms.len(), 2);
}

#[test]
fn unknown_kinds_are_notes_not_errors() {
    let mut snap = ClusterSnapshot::default();
    let notes = load_into(
        &mut snap,
        "f.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
    )
    .unwrap();
    assert_eq!(notes.len(), 1);
    assert!(notes[0].message.contains("Deployment d"), "{notes:?}");
    assert_eq!(notes[0].location, "f.yaml:1");
}

#[test]
fn syntax_errors_name_the_line_of_the_whole_file() {
    let mut snap = ClusterSnapshot::default();
    let text = "apiVersion: v1\nkind: Node\nmetadata: {name: n}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: [}\n";
    let err = load_into(&mut snap, "bad.yaml", text).unwrap_err().to_string();
    assert!(err.starts_with("bad.yaml:7:"), "{err}");
}

#[test]
fn type_errors_name_the_field_path() {
    let mut snap = ClusterSnapshot::default();
    let text = "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: vm1}\nspec:\n  template:\n    spec:\n      domain: {cpu: {cores: two}}\n";
    let err = load_into(&mut snap, "vm.yaml", text).unwrap_err().to_string();
    assert!(
        err.contains("vm.yaml:2: VirtualMachine vm1: field spec.template.spec.domain.cpu.cores"),
        "{err}"
    );
}

#[test]
fn non_objects_are_rejected() {
    let mut snap = ClusterSnapshot::default();
    let err = load_into(&mut snap, "x", "- 1\n- 2\n").unwrap_err().to_string();
    assert!(err.contains("not a Kubernetes object"), "{err}");
    let err = load_into(&mut snap, "x", "name: hello\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no `kind`"), "{err}");
}

/// The classic "billion laughs": ten levels of nine aliases each, 9^10 values if expanded.
#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("apiVersion: v1\nkind: Node\nmetadata: {name: n}\n");
    text.push_str("a: &a [x, x, x, x, x, x, x, x, x]\n");
    for i in 0..9 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("a{}", i - 1)
        };
        text.push_str(&format!(
            "a{i}: &a{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
    }
    let mut snap = ClusterSnapshot::default();
    let err = load_into(&mut snap, "bomb.yaml", &text).unwrap_err().to_string();
    assert!(err.starts_with("bomb.yaml:"), "{err}");
    assert!(
        err.contains("alias bomb") || err.contains("aliases expanded"),
        "{err}"
    );
    assert!(snap.nodes.is_empty());
    // Two levels of the same bomb are an ordinary document.
    let small: String = text.lines().take(6).map(|l| format!("{l}\n")).collect();
    load_into(&mut snap, "small.yaml", &small).unwrap();
    assert_eq!(snap.nodes.len(), 1);
}

/// A bomb that serde_yaml's own repetition limit lets through: 20,000 aliases of one
/// 20,000-item anchor (100 KB of text, 400 million values) is stopped by the value budget.
#[test]
fn quadratic_alias_expansion_stops_at_the_value_budget() {
    let n = 20_000;
    let text = format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: n}}\nitems: &a [{}]\nmore: [{}]\n",
        vec!["x"; n].join(","),
        vec!["*a"; n].join(",")
    );
    let mut snap = ClusterSnapshot::default();
    let err = load_into(&mut snap, "quad.yaml", &text).unwrap_err().to_string();
    assert!(
        err.starts_with("quad.yaml:") && err.contains(&format!("more than {MAX_VALUES} values")),
        "{err}"
    );
}

#[test]
fn the_value_budget_is_for_the_whole_input_not_per_document() {
    // 9 values a document (the mapping, 3 keys and their values, the name key and value):
    // with a budget of 20, two documents pass and the third is refused.
    let doc = |i| format!("apiVersion: v1\nkind: Node\nmetadata: {{name: n{i}}}\n");
    let docs = |n| (0..n).map(doc).collect::<Vec<_>>().join("---\n");
    let mut snap = ClusterSnapshot::default();
    load_with_budget(&mut snap, "two.yaml", &docs(2), 20, &Duplicates::Refuse).unwrap();
    let mut snap = ClusterSnapshot::default();
    let err = load_with_budget(&mut snap, "three.yaml", &docs(3), 20, &Duplicates::Refuse)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("three.yaml:") && err.contains("values with aliases expanded"),
        "{err}"
    );
    let mut snap = ClusterSnapshot::default();
    load_with_budget(&mut snap, "one.yaml", &doc(9), 9, &Duplicates::Refuse).unwrap();
    assert!(load_with_budget(&mut snap, "one.yaml", &doc(8), 8, &Duplicates::Refuse).is_err());
}

#[test]
fn deep_nesting_is_refused_with_the_place() {
    let mut snap = ClusterSnapshot::default();
    let flow = format!("kind: Node\nx: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let err = load_into(&mut snap, "deep.yaml", &flow).unwrap_err().to_string();
    assert!(
        err.starts_with("deep.yaml:2:") && err.contains("nested more than 128 levels"),
        "{err}"
    );
    let maps = format!("kind: Node\nx: {}1{}\n", "{a: ".repeat(5_000), "}".repeat(5_000));
    let err = load_into(&mut snap, "maps.json", &maps).unwrap_err().to_string();
    assert!(err.contains("nested more than 128 levels"), "{err}");
    let block: String = (0..1_000).map(|i| format!("{}k{i}:\n", "  ".repeat(i))).collect();
    let err = load_into(&mut snap, "block.yaml", &block)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("block.yaml:12"), "{err}");
    // Brackets in quoted strings, comments and plain text do not nest anything.
    let text = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n # {open}\n  annotations:\n    a: \"{open}\\\"{open}\"\n    b: '{open}''{open}'\n    c: see {open}\nextra: {{e: \"{close}\", f: [\"{open}\"]}}\n",
        open = "[".repeat(200),
        close = "]".repeat(200)
    );
    load_into(&mut snap, "text.yaml", &text).unwrap();
    assert_eq!(
        snap.nodes.last().unwrap().metadata.annotations.as_ref().unwrap()["c"].len(),
        204
    );
    // 100 levels is deep but allowed.
    let ok = format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: ok}}\nx: {}{}\n",
        "[".repeat(100),
        "]".repeat(100)
    );
    load_into(&mut snap, "ok.yaml", &ok).unwrap();
}

#[test]
fn inputs_over_the_size_limit_are_refused() {
    let text = format!("kind: Node\nx: {}\n", "y".repeat(MAX_INPUT_BYTES));
    let mut snap = ClusterSnapshot::default();
    let err = load_into(&mut snap, "huge.yaml", &text).unwrap_err().to_string();
    assert!(
        err.starts_with("huge.yaml:1: ") && err.contains("32 MiB"),
        "{err}"
    );
}

const WEB: &str =
    "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: web, namespace: prod}\n";

#[test]
fn a_second_document_with_the_same_identity_is_an_error_naming_both() {
    let mut snap = ClusterSnapshot::default();
    let other = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n";
    load_into(&mut snap, "a.yaml", &format!("{other}---\n{WEB}")).unwrap();
    let err = load_into(&mut snap, "b.yaml", WEB).unwrap_err().to_string();
    assert_eq!(
        err,
        "b.yaml:1: duplicate VirtualMachine prod/web: in a.yaml:5 and in b.yaml:1; each object may appear once"
    );
    assert_eq!(snap.vms.len(), 1, "the second copy must not be merged in");
}

#[test]
fn an_omitted_namespace_is_the_default_one_for_duplicates() {
    let mut snap = ClusterSnapshot::default();
    let vm =
        |ns: &str| format!("apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {{name: web{ns}}}\n");
    load_into(&mut snap, "a.yaml", &vm("")).unwrap();
    let err = load_into(&mut snap, "b.yaml", &vm(", namespace: default"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("duplicate VirtualMachine default/web: in a.yaml:1 and in b.yaml:1"),
        "{err}"
    );
}

#[test]
fn same_names_in_other_namespaces_or_kinds_are_different_objects() {
    let mut snap = ClusterSnapshot::default();
    let text = format!(
        "{WEB}---\n{}---\n{}---\napiVersion: v1\nkind: Node\nmetadata: {{name: web}}\n",
        WEB.replace("prod", "staging"),
        WEB.replace("VirtualMachine", "VirtualMachineInstance")
    );
    load_into(&mut snap, "f.yaml", &text).unwrap();
    assert_eq!((snap.vms.len(), snap.vmis.len(), snap.nodes.len()), (2, 1, 1));
}

#[test]
fn in_layers_each_copy_is_read_beside_one_copy_of_everything_else() {
    let vm = |strategy: &str| {
        format!(
            "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {{name: web, namespace: prod}}\nspec: {{runStrategy: {strategy}}}\n"
        )
    };
    let node = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n";
    let inputs = [
        ("a.yaml", format!("{node}---\n{}", vm("Always"))),
        ("b.yaml", vm("Manual")),
        ("c.yaml", vm("Halted")),
    ];
    let web = ObjectRef {
        kind: "VirtualMachine".into(),
        namespace: Some("prod".into()),
        name: "web".into(),
        source: None,
    };
    let load = |duplicates: &Duplicates| {
        let mut snap = ClusterSnapshot::default();
        for (name, text) in &inputs {
            load_into_with(&mut snap, name, text, duplicates).unwrap();
        }
        snap
    };
    let strategy = |snap: &ClusterSnapshot| {
        assert_eq!(snap.vms.len(), 1, "one copy at a time");
        assert_eq!(snap.nodes.len(), 1, "the rest once");
        snap.vms[0].spec.run_strategy.clone().unwrap_or_default()
    };
    let first = load(&Duplicates::Layer {
        layer: 1,
        deep: BTreeSet::new(),
    });
    assert_eq!(strategy(&first), "Always");
    let places: Vec<String> = first.copies[&web]
        .iter()
        .map(|o| format!("{}:{}", o.source, o.line))
        .collect();
    assert_eq!(places, ["a.yaml:5", "b.yaml:1", "c.yaml:1"]);
    for (layer, expected, place) in [(2, "Manual", "b.yaml"), (3, "Halted", "c.yaml")] {
        let deep = BTreeSet::from([web.clone()]);
        let snap = load(&Duplicates::Layer { layer, deep });
        assert_eq!(strategy(&snap), expected);
        assert_eq!(
            snap.origins[&web].source, place,
            "the copy read is the one located"
        );
    }
    // Refused, as by default.
    let mut snap = ClusterSnapshot::default();
    load_into(&mut snap, "a.yaml", &inputs[0].1).unwrap();
    let err = load_into(&mut snap, "b.yaml", &inputs[1].1).unwrap_err();
    assert!(err.is_duplicate(), "{err}");
}

#[test]
fn duplicates_inside_one_list_and_cluster_scoped_ones_are_errors_too() {
    let mut snap = ClusterSnapshot::default();
    let list = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Node, metadata: {name: n1}}\n- {apiVersion: v1, kind: Node, metadata: {name: n1}}\n";
    let err = load_into(&mut snap, "list.yaml", list).unwrap_err().to_string();
    assert_eq!(
        err,
        "list.yaml:1: duplicate Node n1: twice in list.yaml:1; each object may appear once"
    );
}

#[test]
fn unnamed_objects_and_kinds_that_are_not_read_are_not_duplicates() {
    let mut snap = ClusterSnapshot::default();
    let unnamed = "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {generateName: web-}\n";
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n";
    let text = [unnamed, unnamed, deployment, deployment].join("---\n");
    let notes = load_into(&mut snap, "f.yaml", &text).unwrap();
    assert_eq!((snap.vms.len(), notes.len()), (2, 2));
}

#[test]
fn a_million_document_markers_cost_no_memory() {
    let text = "---\n".repeat(1_000_000);
    let mut snap = ClusterSnapshot::default();
    assert!(load_into(&mut snap, "markers.yaml", &text).unwrap().is_empty());
}
