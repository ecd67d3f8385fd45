//! Storage, as a cluster with a CSI driver has it (reference §7 "RWO volumes"). Without it
//! a PVC stays Pending and the real scheduler never places a pod that mounts it. EMULATED
//! here, for every PVC whatever its storageClassName:
//! - **Provisioner** (a CSI external-provisioner): for each Pending PVC a PV `pvc-<PVC uid>`
//!   with the claim's capacity, access modes, volume mode and class, CSI driver [`DRIVER`],
//!   reclaim policy Delete, pre-bound to the claim (`claimRef`). The real PV controller of
//!   kube-controller-manager then binds the pair (`spec.volumeName`, phases Bound) at once;
//!   should it not have after [`BIND_FALLBACK`], the provisioner binds them itself. PVs it
//!   provisioned are deleted once Released and no longer attached anywhere.
//! - **Attach/detach controller and the driver's external attacher**: for every (PV of
//!   [`DRIVER`], node) that a pod needs (bound to the node, not Succeeded/Failed, Terminating included)
//!   on a node that is up, a `storage.k8s.io/v1` VolumeAttachment named as Kubernetes names
//!   it (`csi-<sha256(volumeHandle + driver + node)>`), then `status.attached=true`. A
//!   volume whose PV is neither ReadWriteMany nor ReadOnlyMany (with access modes set) that
//!   has a VolumeAttachment to another node is not attached: each pod waiting for it gets
//!   one Warning Event `FailedAttachVolume` `Multi-Attach error for volume "<pv>" Volume is
//!   already exclusively attached to one node and can't be attached to another` (or `Volume
//!   is already used by pod(s) …` while a pod on the other node still uses it), as the real
//!   controller reports it, until that VolumeAttachment is gone.
//! - **Detach**: a VolumeAttachment that no pod needs any more is deleted when its node is
//!   up. On a node that is down it stays: the volume is pinned there (the kubelet cannot
//!   confirm the unmount) until someone deletes it, the out-of-service taint releases it
//!   ([`crate::outofservice`]), or, when [`crate::SimConfig::force_detach_timeout_ms`] is
//!   set, that time has passed (Kubernetes: 6 min).
//!
//! The kubelet side ([`crate::kubelet`]) keeps a pod Pending (ContainerCreating) until
//! [`VolumeIndex::waiting_for`] is empty: its claims bound and their volumes of [`DRIVER`]
//! attached to its node. PVs of other kinds or drivers (created by hand) are not attached
//! and nobody waits for them.
//!
//! The real attach/detach controller of the 1.20 controller manager leaves the simulated
//! nodes alone: it only manages nodes annotated
//! `volumes.kubernetes.io/controller-managed-attach-detach`, which they are not.
//! Simplifications: VolumeAttachments carry no finalizer (deleting one detaches at once;
//! only those of [`DRIVER`] are managed),
//! Node `status.volumesAttached`/`volumesInUse` are not reported, and a missing or unbound
//! claim gets no FailedMount event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::Notify;

use crate::shared::Shared;

/// The simulated CSI driver: provisioner of the PVs and attacher of their VolumeAttachments.
pub const DRIVER: &str = "sim.csi.kubevirt.io";
/// How long the provisioner leaves the binding of a PV it created to the real PV controller.
pub const BIND_FALLBACK: Duration = Duration::from_secs(3);
/// Annotation naming the provisioner of a PV.
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const MANAGER: &str = "kubevirt-sim-storage";
/// How long a write is not repeated while the watches catch up with it.
const REPEAT_AFTER: Duration = Duration::from_secs(5);

/// The name Kubernetes gives the VolumeAttachment of a CSI volume on a node.
pub fn attachment_name(volume_handle: &str, driver: &str, node: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{volume_handle}{driver}{node}").as_bytes(),
    );
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("csi-{hex}")
}

/// The Multi-Attach message of the attach/detach controller for `pv`, wanted by a pod in
/// `namespace` while `users` (namespace, pod) on other nodes still use it.
pub fn multi_attach_message(pv: &str, namespace: &str, users: &[(String, String)]) -> String {
    let detail = if users.is_empty() {
        "Volume is already exclusively attached to one node and can't be attached to another".to_string()
    } else {
        let local: Vec<&str> = users
            .iter()
            .filter(|(ns, _)| ns == namespace)
            .map(|(_, name)| name.as_str())
            .collect();
        let others = users.len() - local.len();
        match (local.is_empty(), others) {
            (false, 0) => format!("Volume is already used by pod(s) {}", local.join(", ")),
            (false, n) => format!(
                "Volume is already used by pod(s) {} and {n} pod(s) in different namespaces",
                local.join(", ")
            ),
            (true, n) => format!("Volume is already used by {n} pod(s) in different namespaces"),
        }
    };
    format!("Multi-Attach error for volume \"{pv}\" {detail}")
}

/// `(pod volume name, claim name)` of the PVCs a pod mounts.
pub fn pod_claims(pod: &Pod) -> impl Iterator<Item = (&str, &str)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let claim = v.persistent_volume_claim.as_ref()?;
            Some((v.name.as_str(), claim.claim_name.as_str()))
        })
}

/// Watches of PVCs, PVs and VolumeAttachments.
#[derive(Clone)]
pub struct VolumeView {
    pvcs: Store<PersistentVolumeClaim>,
    pvs: Store<PersistentVolume>,
    attachments: Store<VolumeAttachment>,
}

impl VolumeView {
    /// Starts the watches; `notify` is woken on every change.
    pub fn start(client: &kube::Client, notify: Arc<Notify>) -> Self {
        let cfg = watcher::Config::default;
        VolumeView {
            pvcs: crate::watch::store(Api::all(client.clone()), cfg(), notify.clone()),
            pvs: crate::watch::store(Api::all(client.clone()), cfg(), notify.clone()),
            attachments: crate::watch::store(Api::all(client.clone()), cfg(), notify),
        }
    }

    /// Waits for the first listing of each watch.
    pub async fn wait_until_ready(&self) {
        let _ = self.pvcs.wait_until_ready().await;
        let _ = self.pvs.wait_until_ready().await;
        let _ = self.attachments.wait_until_ready().await;
    }

    /// A snapshot of the bindings and attachments.
    pub fn index(&self) -> VolumeIndex {
        VolumeIndex::new(&self.pvcs.state(), &self.pvs.state(), &self.attachments.state())
    }
}

/// Who is bound and attached where, from a snapshot of PVCs, PVs and VolumeAttachments.
#[derive(Debug, Default)]
pub struct VolumeIndex {
    /// PV of each bound claim, by (namespace, claim).
    bound: HashMap<(String, String), String>,
    /// `(driver, volume handle)` of each PV of [`DRIVER`].
    csi: HashMap<String, (String, String)>,
    /// Whether multi-node attachment is forbidden, by PV.
    exclusive: HashMap<String, bool>,
    /// `(name, attached)` of the VolumeAttachment of each (PV, node).
    attachments: HashMap<(String, String), (String, bool)>,
}

impl VolumeIndex {
    /// Indexes the given objects.
    pub fn new(
        pvcs: &[Arc<PersistentVolumeClaim>],
        pvs: &[Arc<PersistentVolume>],
        attachments: &[Arc<VolumeAttachment>],
    ) -> Self {
        let mut index = VolumeIndex::default();
        for pvc in pvcs {
            if let Some(pv) = pvc
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .filter(|v| !v.is_empty())
            {
                let key = (
                    pvc.metadata.namespace.clone().unwrap_or_default(),
                    pvc.metadata.name.clone().unwrap_or_default(),
                );
                index.bound.insert(key, pv);
            }
        }
        for pv in pvs {
            let name = pv.metadata.name.clone().unwrap_or_default();
            let spec = pv.spec.as_ref();
            if let Some(csi) = spec.and_then(|s| s.csi.as_ref()).filter(|c| c.driver == DRIVER) {
                index
                    .csi
                    .insert(name.clone(), (csi.driver.clone(), csi.volume_handle.clone()));
            }
            let modes = spec.and_then(|s| s.access_modes.clone()).unwrap_or_default();
            // The attach/detach controller's isMultiAttachAllowed.
            let shared =
                modes.is_empty() || modes.iter().any(|m| m == "ReadWriteMany" || m == "ReadOnlyMany");
            index.exclusive.insert(name, !shared);
        }
        for va in attachments {
            let Some(pv) = va.spec.source.persistent_volume_name.clone() else {
                continue;
            };
            let attached = va.status.as_ref().is_some_and(|s| s.attached);
            index.attachments.insert(
                (pv, va.spec.node_name.clone()),
                (va.metadata.name.clone().unwrap_or_default(), attached),
            );
        }
        index
    }

    /// The PV bound to a claim.
    pub fn bound_pv(&self, namespace: &str, claim: &str) -> Option<&str> {
        self.bound
            .get(&(namespace.to_string(), claim.to_string()))
            .map(String::as_str)
    }

    /// The pod volumes that keep `pod` from starting on `node`: claims not bound yet, and
    /// volumes of [`DRIVER`] not attached to the node.
    pub fn waiting_for(&self, pod: &Pod, node: &str) -> Vec<String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        pod_claims(pod)
            .filter(|(_, claim)| match self.bound_pv(ns, claim) {
                None => true,
                Some(pv) => {
                    self.csi.contains_key(pv)
                        && !self
                            .attachments
                            .get(&(pv.to_string(), node.to_string()))
                            .is_some_and(|(_, attached)| *attached)
                }
            })
            .map(|(volume, _)| volume.to_string())
            .collect()
    }
}

/// A write of the storage controllers.
#[derive(Debug, Clone)]
pub enum Op {
    /// Provision: create a PV pre-bound to its claim.
    CreatePv(Box<PersistentVolume>),
    /// Bind a claim to the PV provisioned for it (when the real PV controller has not).
    Bind {
        /// The claim.
        pvc: Arc<PersistentVolumeClaim>,
        /// The PV's name.
        pv: String,
    },
    /// Delete a Released PV this provisioner created.
    DeletePv(String),
    /// Attach: create a VolumeAttachment.
    CreateAttachment(Box<VolumeAttachment>),
    /// The external attacher reports the volume attached.
    MarkAttached(String),
    /// Detach: delete a VolumeAttachment.
    DeleteAttachment(String),
    /// Record an event.
    Event(Box<Event>),
}

impl Op {
    fn key(&self) -> String {
        match self {
            Op::CreatePv(pv) => format!("create-pv/{}", pv.metadata.name.as_deref().unwrap_or_default()),
            Op::Bind { pv, .. } => format!("bind/{pv}"),
            Op::DeletePv(name) => format!("delete-pv/{name}"),
            Op::CreateAttachment(va) => {
                format!("create-va/{}", va.metadata.name.as_deref().unwrap_or_default())
            }
            Op::MarkAttached(name) => format!("attached/{name}"),
            Op::DeleteAttachment(name) => format!("delete-va/{name}"),
            Op::Event(e) => format!("event/{}", e.metadata.name.as_deref().unwrap_or_default()),
        }
    }
}

/// What the storage controllers look at in one pass.
pub struct Snapshot<'a> {
    /// All pods.
    pub pods: &'a [Arc<Pod>],
    /// All PVCs.
    pub pvcs: &'a [Arc<PersistentVolumeClaim>],
    /// All PVs.
    pub pvs: &'a [Arc<PersistentVolume>],
    /// All VolumeAttachments.
    pub attachments: &'a [Arc<VolumeAttachment>],
    /// Nodes that are down or partitioned (their kubelet cannot report).
    pub nodes_down: &'a HashSet<String>,
}

/// The provisioner's and attach/detach controller's memory between passes.
#[derive(Debug, Default)]
pub struct Controller {
    /// When a PV was created for a claim, by claim UID.
    provisioned_at: HashMap<String, Instant>,
    /// (pod UID, PV) whose Multi-Attach error was reported.
    reported: HashSet<(String, String)>,
    /// Since when a VolumeAttachment on a down node is no longer needed, by name.
    unneeded_since: HashMap<String, Instant>,
    /// After how long such a VolumeAttachment is force-detached (None: never).
    force_detach_after: Option<Duration>,
}

impl Controller {
    /// A controller that force-detaches after `force_detach_after` (None: never).
    pub fn new(force_detach_after: Option<Duration>) -> Self {
        Controller {
            force_detach_after,
            ..Default::default()
        }
    }

    /// The writes to make now.
    pub fn decide(&mut self, world: &Snapshot<'_>, now: Instant) -> Vec<Op> {
        let mut ops = self.provision(world, now);
        ops.extend(self.attach_detach(world, now));
        ops
    }

    fn provision(&mut self, world: &Snapshot<'_>, now: Instant) -> Vec<Op> {
        let mut ops = Vec::new();
        let pvs: HashMap<&str, &PersistentVolume> = world
            .pvs
            .iter()
            .filter_map(|pv| Some((pv.metadata.name.as_deref()?, pv.as_ref())))
            .collect();
        let live: HashSet<&str> = world
            .pvcs
            .iter()
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        self.provisioned_at.retain(|uid, _| live.contains(uid.as_str()));
        for pvc in world.pvcs {
            let uid = pvc.metadata.uid.clone().unwrap_or_default();
            let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
            if pvc.metadata.deletion_timestamp.is_some() || phase == Some("Bound") {
                self.provisioned_at.remove(&uid);
                continue;
            }
            let pv_name = format!("pvc-{uid}");
            let volume_name = pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref());
            if volume_name.is_some_and(|v| !v.is_empty() && v != pv_name) {
                continue; // bound by hand to another PV: the PV controller's business
            }
            match pvs.get(pv_name.as_str()) {
                None => {
                    self.provisioned_at.insert(uid, now);
                    ops.push(Op::CreatePv(Box::new(provisioned_pv(pvc, &pv_name))));
                }
                Some(pv) => {
                    let claimed = pv
                        .spec
                        .as_ref()
                        .and_then(|s| s.claim_ref.as_ref())
                        .is_some_and(|c| c.uid.as_deref() == Some(uid.as_str()));
                    let waited = self
                        .provisioned_at
                        .get(&uid)
                        .is_none_or(|t| now.duration_since(*t) >= BIND_FALLBACK);
                    if claimed && waited {
                        ops.push(Op::Bind {
                            pvc: pvc.clone(),
                            pv: pv_name,
                        });
                    }
                }
            }
        }
        let attached: HashSet<&str> = world
            .attachments
            .iter()
            .filter_map(|va| va.spec.source.persistent_volume_name.as_deref())
            .collect();
        for pv in world.pvs {
            let ours = pv
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(PROVISIONED_BY))
                .is_some_and(|p| p == DRIVER);
            let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
            let delete = pv
                .spec
                .as_ref()
                .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
                == Some("Delete");
            let name = pv.metadata.name.as_deref().unwrap_or_default();
            if ours
                && released
                && delete
                && pv.metadata.deletion_timestamp.is_none()
                && !attached.contains(name)
            {
                ops.push(Op::DeletePv(name.to_string()));
            }
        }
        ops
    }

    fn attach_detach(&mut self, world: &Snapshot<'_>, now: Instant) -> Vec<Op> {
        let index = VolumeIndex::new(world.pvcs, world.pvs, world.attachments);
        // The desired state of the world: (PV, node) → pods that need it there.
        let mut desired: BTreeMap<(String, String), Vec<&Pod>> = BTreeMap::new();
        for pod in world.pods {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
                continue;
            };
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
            for (_, claim) in pod_claims(pod) {
                if let Some(pv) = index.bound_pv(ns, claim).filter(|pv| index.csi.contains_key(*pv)) {
                    let users = desired.entry((pv.to_string(), node.to_string())).or_default();
                    if !users.iter().any(|u| u.metadata.uid == pod.metadata.uid) {
                        users.push(pod);
                    }
                }
            }
        }
        let live: HashSet<&str> = world
            .pods
            .iter()
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        self.reported
            .retain(|(pod, pv)| live.contains(pod.as_str()) && index.csi.contains_key(pv));
        let mut ops = Vec::new();
        for ((pv, node), pods) in &desired {
            if let Some((name, attached)) = index.attachments.get(&(pv.clone(), node.clone())) {
                if !attached {
                    ops.push(Op::MarkAttached(name.clone()));
                }
                continue;
            }
            if world.nodes_down.contains(node) {
                continue;
            }
            let elsewhere: Vec<&String> = index
                .attachments
                .keys()
                .filter(|(p, n)| p == pv && n != node)
                .map(|(_, n)| n)
                .collect();
            if index.exclusive.get(pv).copied().unwrap_or(false) && !elsewhere.is_empty() {
                let users: Vec<(String, String)> = desired
                    .iter()
                    .filter(|((p, n), _)| p == pv && n != node)
                    .flat_map(|(_, pods)| pods.iter())
                    .map(|p| {
                        (
                            p.metadata.namespace.clone().unwrap_or_default(),
                            p.metadata.name.clone().unwrap_or_default(),
                        )
                    })
                    .collect();
                for pod in pods {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    if self.reported.insert((uid, pv.clone())) {
                        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
                        let message = multi_attach_message(pv, ns, &users);
                        tracing::info!(
                            "pod {ns}/{}: {message} (attached to {elsewhere:?})",
                            pod.metadata.name.as_deref().unwrap_or_default()
                        );
                        ops.push(Op::Event(Box::new(failed_attach_event(pod, &message))));
                    }
                }
                continue;
            }
            let (driver, handle) = index.csi.get(pv).cloned().unwrap_or_default();
            ops.push(Op::CreateAttachment(Box::new(attachment(
                pv, &driver, &handle, node,
            ))));
        }
        let mut unneeded = HashMap::new();
        for va in world.attachments.iter().filter(|va| va.spec.attacher == DRIVER) {
            let name = va.metadata.name.clone().unwrap_or_default();
            let Some(pv) = va.spec.source.persistent_volume_name.clone() else {
                continue;
            };
            let node = va.spec.node_name.clone();
            if va.metadata.deletion_timestamp.is_some() || desired.contains_key(&(pv, node.clone())) {
                continue;
            }
            if !world.nodes_down.contains(&node) {
                ops.push(Op::DeleteAttachment(name));
                continue;
            }
            // Pinned to a node that is down: nobody can confirm the unmount.
            let since = self.unneeded_since.get(&name).copied().unwrap_or(now);
            if let Some(after) = self.force_detach_after
                && now.duration_since(since) >= after
            {
                tracing::info!("force-detaching {name} from {node} after {after:?}");
                ops.push(Op::DeleteAttachment(name.clone()));
            }
            unneeded.insert(name, since);
        }
        self.unneeded_since = unneeded;
        ops
    }
}

/// The PV the provisioner creates for `pvc`.
fn provisioned_pv(pvc: &PersistentVolumeClaim, name: &str) -> PersistentVolume {
    let spec = pvc.spec.clone().unwrap_or_default();
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "1Gi".into());
    let modes = spec
        .access_modes
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
    let mut pv = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: DRIVER}},
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": modes,
            "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
            "persistentVolumeReclaimPolicy": "Delete",
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": pvc.metadata.namespace,
                "name": pvc.metadata.name,
                "uid": pvc.metadata.uid,
            },
            "csi": {"driver": DRIVER, "volumeHandle": name},
        },
    });
    if let Some(class) = spec.storage_class_name.filter(|c| !c.is_empty()) {
        pv["spec"]["storageClassName"] = json!(class);
    }
    serde_json::from_value(pv).unwrap_or_default()
}

/// The VolumeAttachment of `pv` on `node`.
fn attachment(pv: &str, driver: &str, handle: &str, node: &str) -> VolumeAttachment {
    serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "VolumeAttachment",
        "metadata": {"name": attachment_name(handle, driver, node)},
        "spec": {"attacher": driver, "nodeName": node, "source": {"persistentVolumeName": pv}},
    }))
    .unwrap_or_default()
}

fn failed_attach_event(pod: &Pod, message: &str) -> Event {
    let now = jiff::Timestamp::now();
    let name = pod.metadata.name.clone().unwrap_or_default();
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("{name}.{:x}", now.as_nanosecond()),
            "namespace": pod.metadata.namespace,
        },
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": pod.metadata.namespace,
            "name": name,
            "uid": pod.metadata.uid,
            "resourceVersion": pod.metadata.resource_version,
        },
        "reason": "FailedAttachVolume",
        "message": message,
        "type": "Warning",
        "source": {"component": "attachdetach-controller"},
        "reportingComponent": "attachdetach-controller",
        "firstTimestamp": Time(now),
        "lastTimestamp": Time(now),
        "count": 1,
    }))
    .unwrap_or_default()
}

/// Runs the provisioner and the attach/detach controller until aborted.
pub async fn run(shared: Shared) {
    let notify = Arc::new(Notify::new());
    let client = shared.client.clone();
    let pods: Store<Pod> = crate::watch::store(
        Api::all(client.clone()),
        watcher::Config::default(),
        notify.clone(),
    );
    let view = VolumeView::start(&client, notify.clone());
    let _ = pods.wait_until_ready().await;
    view.wait_until_ready().await;
    let force = (shared.config.force_detach_timeout_ms > 0)
        .then(|| Duration::from_millis(shared.config.force_detach_timeout_ms));
    let mut controller = Controller::new(force);
    let mut recent: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = notify.notified() => {},
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
        }
        let (pods, pvcs, pvs, attachments) = (
            pods.state(),
            view.pvcs.state(),
            view.pvs.state(),
            view.attachments.state(),
        );
        // A partitioned node cannot report its unmounts either.
        let nodes_down = shared.nodes_unreachable();
        let world = Snapshot {
            pods: &pods,
            pvcs: &pvcs,
            pvs: &pvs,
            attachments: &attachments,
            nodes_down: &nodes_down,
        };
        let now = Instant::now();
        recent.retain(|_, t| now.duration_since(*t) < REPEAT_AFTER);
        // A write is sent again once REPEAT_AFTER has passed since it was last *sent*; deciding it
        // again meanwhile must not push that back, or a create that met the old object of the
        // same name (409 while it was being deleted) would never be retried.
        let ops: Vec<Op> = controller
            .decide(&world, now)
            .into_iter()
            .filter(|op| match recent.entry(op.key()) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(now);
                    true
                }
            })
            .collect();
        let failed: Vec<String> = stream::iter(ops)
            .map(|op| {
                let client = client.clone();
                async move {
                    match perform(&client, &op).await {
                        Ok(()) => None,
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => None,
                        Err(e) => {
                            tracing::warn!("{}: {e}", op.key());
                            Some(op.key())
                        }
                    }
                }
            })
            .buffer_unordered(shared.config.concurrency.max(1))
            .filter_map(|k| async move { k })
            .collect()
            .await;
        for key in failed {
            recent.remove(&key);
        }
    }
}

async fn perform(client: &kube::Client, op: &Op) -> Result<(), kube::Error> {
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let attachments: Api<VolumeAttachment> = Api::all(client.clone());
    match op {
        Op::CreatePv(pv) => {
            tracing::info!(
                "provisioning {} for {:?}",
                pv.metadata.name.as_deref().unwrap_or_default(),
                pv.spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref())
                    .and_then(|c| c.name.as_ref())
            );
            pvs.create(&PostParams::default(), pv).await.map(|_| ())
        }
        Op::Bind { pvc, pv } => {
            let ns = pvc.metadata.namespace.as_deref().unwrap_or_default();
            let name = pvc.metadata.name.as_deref().unwrap_or_default();
            tracing::info!("binding {ns}/{name} to {pv} (the PV controller has not)");
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
            let spec = pvc.spec.clone().unwrap_or_default();
            pvs.patch_status(pv, &pp, &Patch::Merge(json!({"status": {"phase": "Bound"}})))
                .await?;
            let bind = json!({
                "metadata": {"annotations": {
                    "pv.kubernetes.io/bind-completed": "yes",
                    "pv.kubernetes.io/bound-by-controller": "yes",
                }},
                "spec": {"volumeName": pv},
            });
            claims.patch(name, &pp, &Patch::Merge(bind)).await?;
            let storage = spec
                .resources
                .and_then(|r| r.requests)
                .and_then(|r| r.get("storage").cloned());
            let status = json!({"status": {
                "phase": "Bound",
                "accessModes": spec.access_modes,
                "capacity": {"storage": storage},
            }});
            claims
                .patch_status(name, &pp, &Patch::Merge(status))
                .await
                .map(|_| ())
        }
        Op::DeletePv(name) => pvs.delete(name, &DeleteParams::default()).await.map(|_| ()),
        Op::CreateAttachment(va) => {
            tracing::info!(
                "attaching {:?} to {} ({})",
                va.spec.source.persistent_volume_name,
                va.spec.node_name,
                va.metadata.name.as_deref().unwrap_or_default()
            );
            attachments.create(&PostParams::default(), va).await.map(|_| ())
        }
        Op::MarkAttached(name) => {
            let status = json!({"status": {"attached": true}});
            attachments
                .patch_status(name, &pp, &Patch::Merge(status))
                .await
                .map(|_| ())
        }
        Op::DeleteAttachment(name) => {
            tracing::info!("detaching {name}");
            attachments
                .delete(name, &DeleteParams::default())
                .await
                .map(|_| ())
        }
        Op::Event(event) => {
            let ns = event.metadata.namespace.as_deref().unwrap_or("default");
            Api::<Event>::namespaced(client.clone(), ns)
                .create(&PostParams::default(), event)
                .await
                .map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
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
}
