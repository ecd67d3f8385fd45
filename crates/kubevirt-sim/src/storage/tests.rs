//! Unit tests of the simulated storage (`storage.rs` and its modules).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use serde_json::json;

use super::controller::{attachment, provisioned_pv};
use super::*;

fn pvc(name: &str, mode: &str, volume: Option<&str>) -> Arc<PersistentVolumeClaim> {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}")},
        "spec": {"accessModes": [mode], "resources": {"requests": {"storage": "5Gi"}}, "storageClassName": "fast"},
    });
    if let Some(pv) = volume {
        v["spec"]["volumeName"] = json!(pv);
        v["status"] = json!({"phase": "Bound"});
    }
    Arc::new(serde_json::from_value(v).unwrap())
}

fn pod(name: &str, node: &str, claim: &str) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("p-{name}")},
            "spec": {"nodeName": node, "containers": [{"name": "compute"}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]},
        }))
        .unwrap(),
    )
}

fn va(pv: &str, node: &str, attached: bool) -> Arc<VolumeAttachment> {
    let mut a = attachment(pv, DRIVER, pv, node);
    a.status = Some(serde_json::from_value(json!({"attached": attached})).unwrap());
    Arc::new(a)
}

struct World {
    pods: Vec<Arc<Pod>>,
    pvcs: Vec<Arc<PersistentVolumeClaim>>,
    pvs: Vec<Arc<PersistentVolume>>,
    vas: Vec<Arc<VolumeAttachment>>,
    down: HashSet<String>,
}

impl World {
    /// One RWO claim `data`, bound to its provisioned PV.
    fn bound(mode: &str) -> World {
        let claim = pvc("data", mode, Some("pvc-u-data"));
        let pv = provisioned_pv(&claim, "pvc-u-data");
        World {
            pods: vec![],
            pvcs: vec![claim],
            pvs: vec![Arc::new(pv)],
            vas: vec![],
            down: HashSet::new(),
        }
    }

    fn decide(&self, c: &mut Controller, now: Instant) -> Vec<Op> {
        c.decide(
            &Snapshot {
                pods: &self.pods,
                pvcs: &self.pvcs,
                pvs: &self.pvs,
                attachments: &self.vas,
                nodes_down: &self.down,
            },
            now,
        )
    }
}

#[test]
fn a_pending_claim_gets_a_pre_bound_pv_of_its_size_and_modes() {
    let w = World {
        pods: vec![],
        pvcs: vec![pvc("data", "ReadWriteOnce", None)],
        pvs: vec![],
        vas: vec![],
        down: HashSet::new(),
    };
    let ops = w.decide(&mut Controller::default(), Instant::now());
    let [Op::CreatePv(pv)] = ops.as_slice() else {
        panic!("{ops:?}")
    };
    let spec = pv.spec.as_ref().unwrap();
    assert_eq!(pv.metadata.name.as_deref(), Some("pvc-u-data"));
    assert_eq!(spec.capacity.as_ref().unwrap()["storage"].0, "5Gi");
    assert_eq!(
        spec.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_string()][..])
    );
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(spec.claim_ref.as_ref().unwrap().uid.as_deref(), Some("u-data"));
    assert_eq!(spec.csi.as_ref().unwrap().driver, DRIVER);
}

#[test]
fn the_provisioner_binds_only_when_the_pv_controller_has_not() {
    let claim = pvc("data", "ReadWriteOnce", None);
    let pv = Arc::new(provisioned_pv(&claim, "pvc-u-data"));
    let mut c = Controller::default();
    let t0 = Instant::now();
    let empty = World {
        pods: vec![],
        pvcs: vec![claim.clone()],
        pvs: vec![],
        vas: vec![],
        down: HashSet::new(),
    };
    assert_eq!(empty.decide(&mut c, t0).len(), 1);
    let created = World {
        pvs: vec![pv],
        ..empty
    };
    assert!(created.decide(&mut c, t0 + Duration::from_secs(1)).is_empty());
    let ops = created.decide(&mut c, t0 + BIND_FALLBACK);
    assert!(
        matches!(ops.as_slice(), [Op::Bind { pv, .. }] if pv == "pvc-u-data"),
        "{ops:?}"
    );
}

#[test]
fn a_pod_on_an_up_node_gets_its_volume_attached_and_may_start() {
    let mut w = World::bound("ReadWriteOnce");
    w.pods.push(pod("a", "node-1", "data"));
    let mut c = Controller::default();
    let ops = w.decide(&mut c, Instant::now());
    let [Op::CreateAttachment(a)] = ops.as_slice() else {
        panic!("{ops:?}")
    };
    assert_eq!(a.spec.node_name, "node-1");
    assert_eq!(a.spec.attacher, DRIVER);
    assert_eq!(
        a.spec.source.persistent_volume_name.as_deref(),
        Some("pvc-u-data")
    );
    assert!(a.metadata.name.as_deref().unwrap().starts_with("csi-"));
    let index = VolumeIndex::new(&w.pvcs, &w.pvs, &[Arc::new((**a).clone())]);
    assert_eq!(index.waiting_for(&w.pods[0], "node-1"), vec!["data".to_string()]);
    w.vas = vec![Arc::new((**a).clone())];
    let ops = w.decide(&mut c, Instant::now());
    assert!(matches!(ops.as_slice(), [Op::MarkAttached(_)]), "{ops:?}");
    w.vas = vec![va("pvc-u-data", "node-1", true)];
    assert!(w.decide(&mut c, Instant::now()).is_empty());
    let index = VolumeIndex::new(&w.pvcs, &w.pvs, &w.vas);
    assert!(index.waiting_for(&w.pods[0], "node-1").is_empty());
    assert_eq!(index.waiting_for(&w.pods[0], "node-2"), vec!["data".to_string()]);
}

#[test]
fn an_rwo_volume_attached_elsewhere_is_a_multi_attach_error_reported_once() {
    let mut w = World::bound("ReadWriteOnce");
    w.vas = vec![va("pvc-u-data", "node-1", true)];
    w.down.insert("node-1".into());
    w.pods.push(pod("b", "node-2", "data"));
    let mut c = Controller::default();
    let ops = w.decide(&mut c, Instant::now());
    let [Op::Event(e)] = ops.as_slice() else {
        panic!("{ops:?}")
    };
    assert_eq!(e.reason.as_deref(), Some("FailedAttachVolume"));
    assert_eq!(
        e.message.as_deref(),
        Some(
            "Multi-Attach error for volume \"pvc-u-data\" Volume is already exclusively attached to one node and can't be attached to another"
        )
    );
    assert_eq!(e.involved_object.name.as_deref(), Some("b"));
    assert!(
        w.decide(&mut c, Instant::now()).is_empty(),
        "reported once, attachment pinned"
    );
    // While the old pod still exists (Terminating on the dead node), it is named.
    w.pods.push(pod("a", "node-1", "data"));
    let ops = w.decide(&mut Controller::default(), Instant::now());
    let [Op::Event(e)] = ops.as_slice() else {
        panic!("{ops:?}")
    };
    assert!(
        e.message
            .as_deref()
            .unwrap()
            .ends_with("Volume is already used by pod(s) a")
    );
}

#[test]
fn rwx_volumes_attach_to_several_nodes() {
    let mut w = World::bound("ReadWriteMany");
    w.vas = vec![va("pvc-u-data", "node-1", true)];
    w.pods = vec![pod("a", "node-1", "data"), pod("b", "node-2", "data")];
    let ops = w.decide(&mut Controller::default(), Instant::now());
    assert!(
        matches!(ops.as_slice(), [Op::CreateAttachment(a)] if a.spec.node_name == "node-2"),
        "{ops:?}"
    );
}

#[test]
fn unneeded_attachments_detach_on_up_nodes_and_stay_pinned_on_down_ones() {
    let mut w = World::bound("ReadWriteOnce");
    w.vas = vec![va("pvc-u-data", "node-1", true)];
    let ops = w.decide(&mut Controller::default(), Instant::now());
    assert!(matches!(ops.as_slice(), [Op::DeleteAttachment(_)]), "{ops:?}");
    w.down.insert("node-1".into());
    let t0 = Instant::now();
    assert!(w.decide(&mut Controller::default(), t0).is_empty());
    let mut forced = Controller::new(Some(Duration::from_secs(360)));
    assert!(w.decide(&mut forced, t0).is_empty());
    assert!(w.decide(&mut forced, t0 + Duration::from_secs(359)).is_empty());
    let ops = w.decide(&mut forced, t0 + Duration::from_secs(360));
    assert!(matches!(ops.as_slice(), [Op::DeleteAttachment(_)]), "{ops:?}");
}

#[test]
fn attachment_names_follow_kubernetes() {
    let name = attachment_name("pvc-1", DRIVER, "node-1");
    assert_eq!(name.len(), 4 + 64);
    assert_ne!(name, attachment_name("pvc-1", DRIVER, "node-2"));
}
