//! The decisions of the simulated storage: the CSI provisioner (a PV per Pending PVC,
//! bound if the PV controller has not), the attach/detach controller with its Multi-Attach
//! errors, and detach or force-detach (Kubernetes: external-provisioner,
//! `pkg/controller/volume/attachdetach`). [`Controller::decide`] over a
//! [`Snapshot`] returns the [`Op`]s that [`super::perform`] makes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::volumes::{DRIVER, VolumeIndex, attachment_name, multi_attach_message, pod_claims};

/// How long the provisioner leaves the binding of a PV it created to the real PV controller.
pub const BIND_FALLBACK: Duration = Duration::from_secs(3);
/// Annotation naming the provisioner of a PV.
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

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
    pub(super) fn key(&self) -> String {
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
pub(super) fn provisioned_pv(pvc: &PersistentVolumeClaim, name: &str) -> PersistentVolume {
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
pub(super) fn attachment(pv: &str, driver: &str, handle: &str, node: &str) -> VolumeAttachment {
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
