use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use super::*;
use crate::resources::Requests;

fn node(yaml: &str) -> NodeView {
    let node: Node = serde_yaml::from_str(yaml).unwrap();
    NodeView::new(&node, &[])
}

fn worker(name: &str, extra_labels: &str, cpu: &str, memory: &str) -> NodeView {
    node(&format!(
        "metadata: {{name: {name}, labels: {{kubevirt.io/schedulable: 'true'{extra_labels}}}}}\n\
         status: {{allocatable: {{cpu: '{cpu}', memory: {memory}}}, conditions: [{{type: Ready, status: 'True'}}]}}"
    ))
}

fn constraints(yaml: &str) -> Constraints {
    Constraints::of(&serde_yaml::from_str(yaml).unwrap())
}

const GI: f64 = 1024.0 * 1024.0 * 1024.0;

#[test]
fn node_selector_must_match_every_label() {
    let n = worker("n1", ", zone: a", "4", "8Gi");
    assert!(constraints("nodeSelector: {zone: a}").admit(&n).is_ok());
    let err = constraints("nodeSelector: {zone: b}").admit(&n).unwrap_err();
    assert!(err.contains("zone=b"), "{err}");
}

#[test]
fn required_affinity_terms_are_ored_and_expressions_anded() {
    let n = worker("n1", ", zone: a, disk: ssd", "4", "8Gi");
    let c = constraints(
        "affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [\
         {matchExpressions: [{key: zone, operator: In, values: [b]}]},\
         {matchExpressions: [{key: zone, operator: In, values: [a]}, {key: disk, operator: Exists}]}]}}}",
    );
    assert!(c.admit(&n).is_ok());
    let c = constraints(
        "affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [\
         {matchExpressions: [{key: disk, operator: NotIn, values: [ssd]}]}]}}}",
    );
    assert!(c.admit(&n).is_err());
    let by_name = constraints(
        "affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [\
         {matchFields: [{key: metadata.name, operator: In, values: [n1]}]}]}}}",
    );
    assert!(by_name.admit(&n).is_ok());
}

#[test]
fn taints_need_a_matching_toleration() {
    let mut n = worker("n1", "", "4", "8Gi");
    n.taints = vec![Taint {
        key: "dedicated".into(),
        value: Some("db".into()),
        effect: "NoSchedule".into(),
        ..Default::default()
    }];
    let err = constraints("{}").admit(&n).unwrap_err();
    assert!(err.contains("dedicated=db:NoSchedule"), "{err}");
    assert!(
        constraints("tolerations: [{key: dedicated, operator: Equal, value: db}]")
            .admit(&n)
            .is_ok()
    );
    assert!(
        constraints("tolerations: [{key: dedicated, operator: Exists}]")
            .admit(&n)
            .is_ok()
    );
    assert!(
        constraints("tolerations: [{key: dedicated, value: web}]")
            .admit(&n)
            .is_err()
    );
    assert!(constraints("tolerations: [{operator: Exists}]").admit(&n).is_ok());
    n.taints[0].effect = "PreferNoSchedule".into();
    assert!(constraints("{}").admit(&n).is_ok(), "soft taints do not filter");
}

#[test]
fn joint_placement_sees_room_taken_by_earlier_vms() {
    let nodes = vec![worker("n2", "", "8", "6Gi"), worker("n3", "", "8", "6Gi")];
    let demand = |id: &str| Demand {
        id: id.into(),
        requests: Requests::new(1.0, 4.0 * GI),
        constraints: Constraints::default(),
        pod: PodTerms::default(),
    };
    // Each alone fits; three of them do not.
    let result = place_jointly(&[demand("a"), demand("b"), demand("c")], &nodes);
    assert!(matches!(result[0], Placement::Placed(_)));
    assert!(matches!(result[1], Placement::Placed(_)));
    assert_ne!(result[0], result[1], "spread across the two nodes");
    let Placement::Unplaceable(reasons) = &result[2] else {
        panic!("{result:?}")
    };
    assert!(reasons.iter().any(|r| r.contains("memory free")), "{reasons:?}");
}

#[test]
fn cordoned_notready_and_non_kubevirt_nodes_take_nothing() {
    let mut cordoned = worker("c", "", "8", "8Gi");
    cordoned.cordoned = true;
    let mut down = worker("d", "", "8", "8Gi");
    down.ready = false;
    let bare = node(
        "metadata: {name: bare}\nstatus: {allocatable: {cpu: '8', memory: 8Gi}, conditions: [{type: Ready, status: 'True'}]}",
    );
    let d = Demand {
        id: "x".into(),
        requests: Requests::new(0.1, GI),
        constraints: Constraints::default(),
        pod: PodTerms::default(),
    };
    let Placement::Unplaceable(reasons) = &place_jointly(&[d], &[cordoned, down, bare])[0] else {
        panic!()
    };
    assert_eq!(reasons.len(), 3);
    assert!(
        reasons[0].contains("cordoned")
            && reasons[1].contains("not Ready")
            && reasons[2].contains(SCHEDULABLE_LABEL)
    );
}

#[test]
fn pod_requests_count_toward_node_usage() {
    let node: Node =
        serde_yaml::from_str("metadata: {name: n1}\nstatus: {allocatable: {cpu: '4', memory: 8Gi}}").unwrap();
    let pod: Pod = serde_yaml::from_str(
        "spec: {nodeName: n1, containers: [{name: a, resources: {requests: {cpu: 500m, memory: 1Gi}}}, \
         {name: b, resources: {requests: {memory: 1Gi}}}]}\nstatus: {phase: Running}",
    )
    .unwrap();
    let mut done = pod.clone();
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let view = NodeView::new(&node, &[pod, done]);
    assert_eq!(view.requested, Requests::new(0.5, 2.0 * GI));
    assert_eq!(view.free().memory, 6.0 * GI);
}

#[test]
fn extended_resources_and_the_pod_limit_are_room_too() {
    let n = node(
        "metadata: {name: n2, labels: {kubevirt.io/schedulable: 'true'}}
status: {allocatable: {cpu: '8', memory: 16Gi, pods: '2', hugepages-1Gi: 4Gi, devices.kubevirt.io/kvm: '1000'},
         conditions: [{type: Ready, status: 'True'}]}",
    );
    let mut big_pages = Requests::new(1.0, GI);
    big_pages.add("hugepages-1Gi", 8.0 * GI);
    let mut gpu = Requests::new(1.0, GI);
    gpu.add("nvidia.com/A100", 1.0);
    // Not reported by the node: KubeVirt's own devices are not checked, a GPU is missing.
    gpu.add("devices.kubevirt.io/vhost-net", 1.0);
    let d = |id: &str, requests: Requests| Demand {
        id: id.into(),
        requests,
        constraints: Constraints::default(),
        pod: PodTerms::default(),
    };
    let result = place_jointly(
        &[
            d("pages", big_pages),
            d("gpu", gpu),
            d("a", Requests::new(0.1, GI)),
            d("b", Requests::new(0.1, GI)),
            d("c", Requests::new(0.1, GI)),
        ],
        std::slice::from_ref(&n),
    );
    let Placement::Unplaceable(r) = &result[0] else {
        panic!("{result:?}")
    };
    assert_eq!(
        r,
        &vec!["node n2 has 4Gi hugepages-1Gi free, 8Gi needed".to_string()]
    );
    let Placement::Unplaceable(r) = &result[1] else {
        panic!("{result:?}")
    };
    assert_eq!(r, &vec!["node n2 has no nvidia.com/A100, 1 needed".to_string()]);
    let placed = result
        .iter()
        .filter(|p| matches!(p, Placement::Placed(_)))
        .count();
    assert_eq!(placed, 2, "two pod slots: {result:?}");
    assert!(
        matches!(&result[4], Placement::Unplaceable(r) if r[0].contains("maximum of 2 pods")),
        "{result:?}"
    );
}

#[test]
fn a_vm_that_tolerates_the_cordon_may_go_to_a_cordoned_node() {
    let mut n = worker("n2", "", "8", "8Gi");
    n.cordoned = true;
    let tolerant = Demand {
        id: "t".into(),
        requests: Requests::new(0.1, GI),
        constraints: constraints("tolerations: [{operator: Exists}]"),
        pod: PodTerms::default(),
    };
    let plain = Demand {
        id: "p".into(),
        requests: Requests::new(0.1, GI),
        constraints: Constraints::default(),
        pod: PodTerms::default(),
    };
    let result = place_jointly(&[tolerant, plain], &[n]);
    assert_eq!(result[0], Placement::Placed("n2".into()));
    assert_eq!(
        result[1],
        Placement::Unplaceable(vec!["node n2 is cordoned".into()])
    );
}

#[test]
fn missing_selector_labels_are_grouped_by_why_kubevirt_asks_for_them() {
    let n = worker("n2", "", "4", "8Gi");
    let mut c = constraints("nodeSelector: {disk: nvme}");
    for (key, why) in [
        ("cpu-vendor.node.kubevirt.io/Intel", "the CPU vendor of node n1"),
        (
            "cpu-model-migration.node.kubevirt.io/Skylake",
            "host-model on node n1",
        ),
        ("cpu-feature.node.kubevirt.io/pku", "host-model on node n1"),
        ("cpu-feature.node.kubevirt.io/vmx", "host-model on node n1"),
        ("kubevirt.io/cpumanager", "dedicated CPUs"),
    ] {
        c.node_selector.insert(key.into(), "true".into());
        c.origins.insert(key.into(), why.into());
    }
    assert_eq!(
        c.admit(&n).unwrap_err(),
        "nodeSelector cpu-feature.node.kubevirt.io/{pku,vmx}, \
         cpu-model-migration.node.kubevirt.io/Skylake (host-model on node n1), \
         cpu-vendor.node.kubevirt.io/Intel (the CPU vendor of node n1), \
         kubevirt.io/cpumanager=true (dedicated CPUs), disk=nvme does not match node n2"
    );
}

#[test]
fn every_constraint_that_keeps_a_pod_off_a_node_is_named() {
    let mut n = worker("n2", "", "4", "8Gi");
    n.taints.push(Taint {
        key: "dedicated".into(),
        value: Some("infra".into()),
        effect: "NoSchedule".into(),
        ..Taint::default()
    });
    let failures = constraints("nodeSelector: {disk: nvme}").failures(&n);
    assert_eq!(
        failures,
        [
            "nodeSelector disk=nvme does not match node n2",
            "node n2 has taint dedicated=infra:NoSchedule that the VM does not tolerate",
        ]
    );
}

#[test]
fn each_vm_goes_to_the_node_with_the_most_memory_left_the_first_among_equals() {
    // Free memory 10, 30, 30 and 20 Gi: the placer offers the roomiest nodes first and stops
    // early, which must choose exactly what a scan of every node in order would.
    let nodes = vec![
        worker("n1", "", "64", "10Gi"),
        worker("n2", "", "64", "30Gi"),
        worker("n3", "", "64", "30Gi"),
        worker("n4", "", "64", "20Gi"),
    ];
    let demand = |id: &str| Demand {
        id: id.into(),
        requests: Requests::new(1.0, 12.0 * GI),
        constraints: Constraints::default(),
        pod: PodTerms::default(),
    };
    let placed: Vec<Placement> = place_jointly(&[demand("a"), demand("b"), demand("c"), demand("d")], &nodes);
    let on = |n: &str| Placement::Placed(n.into());
    // a: n2 (30, first of the two 30s); b: n3 (30 against n2's 18); c: n4 (20 against 18, 18);
    // d: n2 (18, first among n2 and n3 at 18; n4 has 8 left).
    assert_eq!(placed, vec![on("n2"), on("n3"), on("n4"), on("n2")]);

    // One placer for several groups, as the audit uses it: each group starts from the nodes'
    // own room again, and a node left out is never chosen.
    let mut placer = Placer::new(&nodes);
    let first = placer.place_except(&[demand("a")], &Occupancy::default(), &["n2"]);
    assert_eq!(first, vec![on("n3")]);
    let second = placer.place_except(&[demand("a")], &Occupancy::default(), &["n3"]);
    assert_eq!(second, vec![on("n2")]);
    let big = Demand {
        requests: Requests::new(1.0, 25.0 * GI),
        ..demand("big")
    };
    let Placement::Unplaceable(reasons) =
        &placer.place_except(&[big], &Occupancy::default(), &["n2", "n3"])[0]
    else {
        panic!("25Gi fits neither n1 nor n4");
    };
    assert!(
        reasons.iter().any(|r| r.contains("node n4 has 20")),
        "{reasons:?}"
    );
    assert!(
        !reasons.iter().any(|r| r.contains("n2") || r.contains("n3")),
        "{reasons:?}"
    );
}
