use k8s_openapi::api::core::v1::{Node, Pod};

use super::*;
use crate::kubevirt::VirtualMachineInstance;
use crate::placement::{Constraints, Demand, NodeView, Placement, TargetSources, place_jointly_except};
use crate::resources::Requests;
use crate::snapshot::ClusterSnapshot;

const GI: f64 = 1024.0 * 1024.0 * 1024.0;

/// A Ready KubeVirt node with room, in `zone`.
fn node(name: &str, zone: &str) -> NodeView {
    let node: Node = serde_yaml::from_str(&format!(
        "metadata: {{name: {name}, labels: {{kubevirt.io/schedulable: 'true', kubernetes.io/hostname: {name}, \
         topology.kubernetes.io/zone: {zone}}}}}\n\
         status: {{allocatable: {{cpu: '16', memory: 64Gi, pods: '110'}}, conditions: [{{type: Ready, status: 'True'}}]}}"
    ))
    .unwrap();
    NodeView::new(&node, &[])
}

/// A running pod on `node`; `rest` is more of its spec (YAML flow mapping entries).
fn pod(namespace: &str, name: &str, node: &str, labels: &str, rest: &str) -> Pod {
    serde_yaml::from_str(&format!(
        "metadata: {{namespace: {namespace}, name: {name}, labels: {{{labels}}}}}\n\
         spec: {{nodeName: {node}, containers: [{{name: c}}]{rest}}}\n\
         status: {{phase: Running}}"
    ))
    .unwrap()
}

/// The terms of a pod that is not yet scheduled, with these labels and spec entries.
fn incoming(namespace: &str, labels: &str, rest: &str) -> PodTerms {
    PodTerms::of_pod(&pod(namespace, "incoming", "", labels, rest))
}

const ANTI_DB_BY_HOST: &str = ", affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: \
     [{labelSelector: {matchLabels: {app: db}}, topologyKey: kubernetes.io/hostname}]}}";
const ANTI_DB_BY_ZONE: &str = ", affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: \
     [{labelSelector: {matchLabels: {app: db}}, topologyKey: topology.kubernetes.io/zone}]}}";
const AFFINE_WEB_BY_HOST: &str = ", affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: \
     [{labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}]}}";

fn admitted(check: &InterPodCheck<'_>, nodes: &[NodeView]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| check.admits(n))
        .map(|n| n.name.clone())
        .collect()
}

#[test]
fn an_existing_pods_anti_affinity_keeps_a_matching_pod_off_its_node() {
    let nodes = [node("n1", "a"), node("n2", "a")];
    let db1 = pod(
        "shop",
        "virt-launcher-db-1-x",
        "n1",
        "app: db, vm.kubevirt.io/name: db-1",
        ANTI_DB_BY_HOST,
    );
    let occupancy = Occupancy::of(&[db1]);
    let db2 = incoming("shop", "app: db", "");
    let check = occupancy.prepare(&db2, &Constraints::default(), &nodes);
    assert_eq!(admitted(&check, &nodes), ["n2"]);
    let reasons = check.admit(&nodes[0]).unwrap_err();
    assert_eq!(
        reasons,
        ["VM shop/db-1 has required anti-affinity against it on node n1"]
    );
    // A pod the term does not select is not kept off.
    let web = incoming("shop", "app: web", "");
    assert_eq!(
        admitted(&occupancy.prepare(&web, &Constraints::default(), &nodes), &nodes),
        ["n1", "n2"]
    );
}

#[test]
fn the_incoming_pods_anti_affinity_by_zone_forbids_the_whole_zone() {
    let nodes = [node("n1", "a"), node("n2", "a"), node("n3", "b")];
    let db1 = pod(
        "shop",
        "virt-launcher-db-1-x",
        "n1",
        "app: db, vm.kubevirt.io/name: db-1",
        "",
    );
    let occupancy = Occupancy::of(&[db1]);
    let db2 = incoming("shop", "app: db", ANTI_DB_BY_ZONE);
    let check = occupancy.prepare(&db2, &Constraints::default(), &nodes);
    assert_eq!(admitted(&check, &nodes), ["n3"]);
    assert_eq!(
        check.admit(&nodes[1]).unwrap_err(),
        ["anti-affinity with VM shop/db-1 (same topology.kubernetes.io/zone=a) on node n2"]
    );
}

#[test]
fn terms_select_their_own_namespace_unless_they_list_others() {
    let nodes = [node("n1", "a"), node("n2", "a")];
    let other_ns = pod("lab", "db-x", "n1", "app: db", "");
    let occupancy = Occupancy::of(&[other_ns]);
    let same_ns_only = incoming("shop", "app: db", ANTI_DB_BY_HOST);
    let check = occupancy.prepare(&same_ns_only, &Constraints::default(), &nodes);
    assert_eq!(admitted(&check, &nodes), ["n1", "n2"]);

    let listing = incoming(
        "shop",
        "app: db",
        ", affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: \
         [{labelSelector: {matchLabels: {app: db}}, namespaces: [lab], topologyKey: kubernetes.io/hostname}]}}",
    );
    let check = occupancy.prepare(&listing, &Constraints::default(), &nodes);
    assert_eq!(admitted(&check, &nodes), ["n2"]);
    assert_eq!(
        check.admit(&nodes[0]).unwrap_err(),
        ["anti-affinity with pod lab/db-x on node n1"]
    );
}

#[test]
fn affinity_needs_a_matching_pod_in_the_domain_except_for_the_first_of_a_group() {
    let nodes = [node("n1", "a"), node("n2", "a")];
    let web = pod("shop", "web-x", "n2", "app: web", "");
    let occupancy = Occupancy::of(&[web]);
    let cache = incoming("shop", "app: cache", AFFINE_WEB_BY_HOST);
    let check = occupancy.prepare(&cache, &Constraints::default(), &nodes);
    assert_eq!(admitted(&check, &nodes), ["n2"]);
    assert_eq!(
        check.admit(&nodes[0]).unwrap_err(),
        ["pod affinity: no pod matching app=web in the same kubernetes.io/hostname as node n1"]
    );

    // No pod matches anywhere: a pod that is not itself a match cannot go anywhere ...
    let empty = Occupancy::default();
    let check = empty.prepare(&cache, &Constraints::default(), &nodes);
    assert!(admitted(&check, &nodes).is_empty());
    // ... while one that matches its own term may start the group on any node.
    let first_web = incoming("shop", "app: web", AFFINE_WEB_BY_HOST);
    let check = empty.prepare(&first_web, &Constraints::default(), &nodes);
    assert_eq!(admitted(&check, &nodes), ["n1", "n2"]);
}

#[test]
fn topology_spread_counts_matching_pods_per_domain_against_the_emptiest() {
    let nodes = [node("n1", "a"), node("n2", "a"), node("n3", "b")];
    let spread = ", topologySpreadConstraints: [{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, \
                  whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}]";
    // Zone a holds two web pods (one being deleted, which is not counted), zone b one.
    let mut terminating = pod("shop", "web-3", "n2", "app: web", "");
    terminating.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    let pods = [
        pod("shop", "web-1", "n1", "app: web", ""),
        pod("shop", "web-2", "n2", "app: web", ""),
        terminating,
        pod("shop", "web-4", "n3", "app: web", ""),
        pod("lab", "web-5", "n3", "app: web", ""),
    ];
    let occupancy = Occupancy::of(&pods);
    let web = incoming("shop", "app: web", spread);
    let check = occupancy.prepare(&web, &Constraints::default(), &nodes);
    assert_eq!(admitted(&check, &nodes), ["n3"]);
    assert_eq!(
        check.admit(&nodes[0]).unwrap_err(),
        [
            "topology spread over topology.kubernetes.io/zone (maxSkew 1): 2 matching pods in \
             topology.kubernetes.io/zone=a against 1 in the emptiest, so skew 2 on node n1"
        ]
    );
    // Only the nodes the pod's node selector admits are counted: without zone b, zone a is
    // the emptiest and takes it.
    let in_zone_a = Constraints {
        node_selector: [("topology.kubernetes.io/zone".to_string(), "a".to_string())].into(),
        ..Constraints::default()
    };
    let check = occupancy.prepare(&web, &in_zone_a, &nodes);
    assert!(check.admits(&nodes[0]));
    // A pod its own selector does not match does not add to the skew.
    let other = incoming("shop", "app: other", spread);
    let check = occupancy.prepare(&other, &Constraints::default(), &nodes);
    assert_eq!(admitted(&check, &nodes), ["n1", "n2", "n3"]);
}

#[test]
fn topology_spread_rejects_nodes_without_the_key() {
    let mut bare = node("n9", "a");
    bare.labels.remove("topology.kubernetes.io/zone");
    let nodes = [node("n1", "a"), bare];
    let spread = ", topologySpreadConstraints: [{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, \
                  whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}]";
    let web = incoming("shop", "app: web", spread);
    let nobody = Occupancy::default();
    let check = nobody.prepare(&web, &Constraints::default(), &nodes);
    assert_eq!(admitted(&check, &nodes), ["n1"]);
    assert_eq!(
        check.admit(&nodes[1]).unwrap_err(),
        ["topology spread over topology.kubernetes.io/zone: no topology.kubernetes.io/zone label on node n9"]
    );
    // ScheduleAnyway constraints are not filters.
    let soft_spread = spread.replace("DoNotSchedule", "ScheduleAnyway");
    let soft = incoming("shop", "app: web", &soft_spread);
    assert!(!soft.has_terms());
}

#[test]
fn a_migration_target_avoids_every_node_with_a_pod_of_its_own_vmi() {
    let nodes = [node("n1", "a"), node("n2", "a"), node("n3", "a")];
    let vmi: VirtualMachineInstance = serde_yaml::from_str(
        "metadata: {namespace: shop, name: db-1, uid: u-1, labels: {app: db}}\n\
         spec: {domain: {devices: {}}}\n\
         status: {nodeName: n1, phase: Running}",
    )
    .unwrap();
    let own = "kubevirt.io: virt-launcher, kubevirt.io/created-by: u-1, vm.kubevirt.io/name: db-1, app: db";
    let launcher = pod("shop", "virt-launcher-db-1-a", "n1", own, "");
    let leftover_target = pod("shop", "virt-launcher-db-1-b", "n2", own, "");
    let occupancy = Occupancy::of(&[launcher.clone(), leftover_target]);
    let target = PodTerms::of_migration_target(&vmi, Some(&launcher));
    assert_eq!(
        target.labels.get(CREATED_BY_LABEL).map(String::as_str),
        Some("u-1")
    );
    let check = occupancy.prepare(&target, &Constraints::default(), &nodes);
    assert_eq!(admitted(&check, &nodes), ["n3"]);
    // Without a launcher pod (from manifests) the labels are KubeVirt's, from the VMI.
    let rendered = PodTerms::of_migration_target(&vmi, None);
    assert_eq!(rendered.labels.get("app").map(String::as_str), Some("db"));
    assert_eq!(rendered.anti_affinity, target.anti_affinity);
}

#[test]
fn jointly_placed_vms_see_each_other() {
    let nodes = [node("n0", "a"), node("n1", "a"), node("n2", "a")];
    let db = |name: &str| Demand {
        id: format!("shop/{name}"),
        requests: Requests::new(1.0, 2.0 * GI),
        constraints: Constraints::default(),
        pod: incoming("shop", "app: db", ANTI_DB_BY_HOST),
    };
    // Two of them fit on the two nodes left when n0 is drained, one on each.
    let result = place_jointly_except(&[db("db-1"), db("db-2")], &nodes, &Occupancy::default(), &["n0"]);
    let mut targets: Vec<_> = result
        .iter()
        .map(|p| match p {
            Placement::Placed(n) => n.clone(),
            Placement::Unplaceable(r) => panic!("{r:?}"),
        })
        .collect();
    targets.sort();
    assert_eq!(targets, ["n1", "n2"]);
    // The third has nowhere to go, and the reasons name the VMs the plan put there.
    let result = place_jointly_except(
        &[db("db-1"), db("db-2"), db("db-3")],
        &nodes,
        &Occupancy::default(),
        &["n0"],
    );
    let Placement::Unplaceable(reasons) = &result[2] else {
        panic!("{result:?}")
    };
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .all(|r| r.contains("(placed there by this plan)") && r.contains("anti-affinity")),
        "{reasons:?}"
    );
}

#[test]
fn the_vms_a_snapshot_lists_without_pods_are_occupants_on_their_nodes() {
    let snapshot = ClusterSnapshot {
        vmis: vec![
            serde_yaml::from_str(
                "metadata: {namespace: shop, name: db-1, labels: {app: db}}\n\
                 spec: {domain: {devices: {}}}\nstatus: {nodeName: n1, phase: Running}",
            )
            .unwrap(),
        ],
        ..ClusterSnapshot::default()
    };
    let nodes = [node("n1", "a"), node("n2", "a")];
    let occupancy = Occupancy::of_snapshot(&snapshot, &TargetSources::of(&snapshot));
    let db2 = incoming("shop", "app: db", ANTI_DB_BY_HOST);
    let check = occupancy.prepare(&db2, &Constraints::default(), &nodes);
    assert_eq!(admitted(&check, &nodes), ["n2"]);
    assert_eq!(
        check.admit(&nodes[0]).unwrap_err(),
        ["anti-affinity with VM shop/db-1 on node n1"]
    );
}
