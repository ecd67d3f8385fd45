//! The KubeVirt API as the sandbox serves it: the CRDs with KubeVirt's names, scopes,
//! short names, printer columns and subresources (the VMI has **no** status subresource,
//! as in KubeVirt, so status is written on the main resource), and the cluster's KubeVirt
//! CR. Schemas keep unknown fields: the simulator, not the schema, gives the semantics.
//! CDI's DataVolume and StorageProfile kinds are served too, as on a cluster where CDI is
//! installed, so that tools can read them; CDI's controllers are not simulated (a DataVolume
//! gets no PVC, a StorageProfile no computed status).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

use crate::{Error, Result};

const MANAGER: &str = "vm-sandbox";

/// The namespace of the KubeVirt CR.
pub const KUBEVIRT_NAMESPACE: &str = "kubevirt";

/// The KubeVirt release whose API the sandbox serves. Only what the tools depend on and our
/// users' releases (1.3 to 1.9) differ in is modelled: a VirtualMachineInstanceMigration's
/// `spec.addedNodeSelector` exists from v1.6.0 (kubevirt/kubevirt#12725); before, KubeVirt's
/// structural CRD schema does not list it, so the API server prunes it on every write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubeVirtRelease {
    /// `1.<minor>`.
    pub minor: u32,
}

impl KubeVirtRelease {
    /// The release the sandbox serves unless told otherwise.
    pub const CURRENT: Self = Self { minor: 6 };

    /// Whether migrations keep `spec.addedNodeSelector`.
    #[must_use]
    pub fn has_added_node_selector(self) -> bool {
        self.minor >= 6
    }

    /// As the KubeVirt CR's status reports it.
    #[must_use]
    pub fn version(self) -> String {
        format!("v1.{}.0-sim", self.minor)
    }

    /// Parses `1.5` (or `v1.5`, `1.5.2`).
    ///
    /// # Errors
    /// A message naming the text, when it is not a 1.x release.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let bare = text.trim_start_matches('v');
        let mut parts = bare.split('.');
        match (parts.next(), parts.next().map(str::parse::<u32>)) {
            (Some("1"), Some(Ok(minor))) => Ok(Self { minor }),
            _ => Err(format!("`{text}` is not a KubeVirt release such as 1.5")),
        }
    }
}

impl Default for KubeVirtRelease {
    fn default() -> Self {
        Self::CURRENT
    }
}

struct Crd {
    group: &'static str,
    versions: &'static [&'static str],
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
    status: bool,
    scale: bool,
    columns: fn() -> Value,
}

fn no_columns() -> Value {
    json!([{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}])
}

fn vm_columns() -> Value {
    json!([
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Status", "type": "string", "jsonPath": ".status.printableStatus"},
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].status"},
    ])
}

fn vmi_columns() -> Value {
    json!([
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "IP", "type": "string", "jsonPath": ".status.interfaces[0].ipAddress"},
        {"name": "NodeName", "type": "string", "jsonPath": ".status.nodeName"},
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].status"},
        {"name": "Live-Migratable", "type": "string", "jsonPath": ".status.conditions[?(@.type=='LiveMigratable')].status", "priority": 1},
        {"name": "Paused", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Paused')].status", "priority": 1},
    ])
}

fn vmim_columns() -> Value {
    json!([
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "VMI", "type": "string", "jsonPath": ".spec.vmiName"},
    ])
}

fn kubevirt_columns() -> Value {
    json!([
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    ])
}

const CRDS: &[Crd] = &[
    // Multus's NetworkAttachmentDefinition: virt-controller reads the
    // `k8s.v1.cni.cncf.io/resourceName` annotation of the NADs a VMI's networks name.
    Crd {
        group: "k8s.cni.cncf.io",
        versions: &["v1"],
        kind: "NetworkAttachmentDefinition",
        plural: "network-attachment-definitions",
        singular: "network-attachment-definition",
        short: &["net-attach-def"],
        namespaced: true,
        status: false,
        scale: false,
        columns: no_columns,
    },
    Crd {
        group: "kubevirt.io",
        versions: &["v1", "v1alpha3"],
        kind: "VirtualMachine",
        plural: "virtualmachines",
        singular: "virtualmachine",
        short: &["vm", "vms"],
        namespaced: true,
        status: true,
        scale: false,
        columns: vm_columns,
    },
    Crd {
        group: "kubevirt.io",
        versions: &["v1", "v1alpha3"],
        kind: "VirtualMachineInstance",
        plural: "virtualmachineinstances",
        singular: "virtualmachineinstance",
        short: &["vmi", "vmis"],
        namespaced: true,
        status: false,
        scale: false,
        columns: vmi_columns,
    },
    Crd {
        group: "kubevirt.io",
        versions: &["v1", "v1alpha3"],
        kind: "VirtualMachineInstanceMigration",
        plural: "virtualmachineinstancemigrations",
        singular: "virtualmachineinstancemigration",
        short: &["vmim", "vmims"],
        namespaced: true,
        status: true,
        scale: false,
        columns: vmim_columns,
    },
    Crd {
        group: "kubevirt.io",
        versions: &["v1", "v1alpha3"],
        kind: "VirtualMachineInstanceReplicaSet",
        plural: "virtualmachineinstancereplicasets",
        singular: "virtualmachineinstancereplicaset",
        short: &["vmirs", "vmirss"],
        namespaced: true,
        status: true,
        scale: true,
        columns: no_columns,
    },
    Crd {
        group: "kubevirt.io",
        versions: &["v1", "v1alpha3"],
        kind: "KubeVirt",
        plural: "kubevirts",
        singular: "kubevirt",
        short: &["kv", "kvs"],
        namespaced: true,
        status: true,
        scale: false,
        columns: kubevirt_columns,
    },
    Crd {
        group: "pool.kubevirt.io",
        versions: &["v1alpha1"],
        kind: "VirtualMachinePool",
        plural: "virtualmachinepools",
        singular: "virtualmachinepool",
        short: &["vmpool", "vmpools"],
        namespaced: true,
        status: true,
        scale: true,
        columns: no_columns,
    },
    Crd {
        group: "instancetype.kubevirt.io",
        versions: &["v1beta1", "v1alpha2"],
        kind: "VirtualMachineInstancetype",
        plural: "virtualmachineinstancetypes",
        singular: "virtualmachineinstancetype",
        short: &["vminstancetype", "vminstancetypes", "vmf", "vmfs"],
        namespaced: true,
        status: false,
        scale: false,
        columns: no_columns,
    },
    Crd {
        group: "instancetype.kubevirt.io",
        versions: &["v1beta1", "v1alpha2"],
        kind: "VirtualMachineClusterInstancetype",
        plural: "virtualmachineclusterinstancetypes",
        singular: "virtualmachineclusterinstancetype",
        short: &["vmclusterinstancetype", "vmclusterinstancetypes", "vmcf", "vmcfs"],
        namespaced: false,
        status: false,
        scale: false,
        columns: no_columns,
    },
    Crd {
        group: "instancetype.kubevirt.io",
        versions: &["v1beta1", "v1alpha2"],
        kind: "VirtualMachinePreference",
        plural: "virtualmachinepreferences",
        singular: "virtualmachinepreference",
        short: &["vmpref", "vmprefs", "vmp", "vmps"],
        namespaced: true,
        status: false,
        scale: false,
        columns: no_columns,
    },
    Crd {
        group: "instancetype.kubevirt.io",
        versions: &["v1beta1", "v1alpha2"],
        kind: "VirtualMachineClusterPreference",
        plural: "virtualmachineclusterpreferences",
        singular: "virtualmachineclusterpreference",
        short: &["vmcp", "vmcps"],
        namespaced: false,
        status: false,
        scale: false,
        columns: no_columns,
    },
    Crd {
        group: "cdi.kubevirt.io",
        versions: &["v1beta1"],
        kind: "DataVolume",
        plural: "datavolumes",
        singular: "datavolume",
        short: &["dv", "dvs"],
        namespaced: true,
        status: true,
        scale: false,
        columns: no_columns,
    },
    Crd {
        group: "cdi.kubevirt.io",
        versions: &["v1beta1"],
        kind: "StorageProfile",
        plural: "storageprofiles",
        singular: "storageprofile",
        short: &[],
        namespaced: false,
        status: true,
        scale: false,
        columns: no_columns,
    },
];

/// The schema of a kind: anything goes, except that before v1.6 a migration's spec has only
/// the fields KubeVirt's schema listed then that the tools write, and loses any other.
fn schema(c: &Crd, release: KubeVirtRelease) -> Value {
    if c.kind == "VirtualMachineInstanceMigration" && !release.has_added_node_selector() {
        return json!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
            "properties": {"spec": {"type": "object", "properties": {"vmiName": {"type": "string"}}}},
        });
    }
    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

fn crd_object(c: &Crd, release: KubeVirtRelease) -> Value {
    let versions: Vec<Value> = c
        .versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut subresources = serde_json::Map::new();
            if c.status {
                subresources.insert("status".into(), json!({}));
            }
            if c.scale {
                subresources.insert(
                    "scale".into(),
                    json!({"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.labelSelector"}),
                );
            }
            json!({
                "name": v,
                "served": true,
                "storage": i == 0,
                "schema": {"openAPIV3Schema": schema(c, release)},
                "subresources": subresources,
                "additionalPrinterColumns": (c.columns)(),
            })
        })
        .collect();
    let mut categories = vec![json!("all")];
    if c.group != "kubevirt.io" || c.kind == "KubeVirt" {
        categories.clear();
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.{}", c.plural, c.group), "labels": {"app.kubernetes.io/component": "kubevirt", "kubevirt.io": ""}},
        "spec": {
            "group": c.group,
            "scope": if c.namespaced { "Namespaced" } else { "Cluster" },
            "names": {"kind": c.kind, "plural": c.plural, "singular": c.singular, "shortNames": c.short, "categories": categories},
            "versions": versions,
        }
    })
}

/// Installs (or updates) the CRDs of `release` and waits until they are established.
pub async fn install(client: &kube::Client, release: KubeVirtRelease) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply(MANAGER).force();
    for c in CRDS {
        let obj = crd_object(c, release);
        let name = format!("{}.{}", c.plural, c.group);
        api.patch(&name, &pp, &Patch::Apply(&obj))
            .await
            .map_err(|e| Error::kube(format!("installing CRD {name}"), e))?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for c in CRDS {
        let name = format!("{}.{}", c.plural, c.group);
        loop {
            let crd = api
                .get(&name)
                .await
                .map_err(|e| Error::kube(format!("reading CRD {name}"), e))?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("CRD {name} to be established"),
                    seconds: 60,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// The API resource of a kind in `kubevirt.io/v1`.
pub fn kubevirt_resource(kind: &str) -> ApiResource {
    let c = CRDS.iter().find(|c| c.kind == kind).expect("known KubeVirt kind");
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(c.group, c.versions[0], kind), c.plural)
}

/// Creates the `kubevirt` namespace and the KubeVirt CR (default configuration, status
/// `Deployed`), unless one exists. `configuration` is the CR's `spec.configuration`.
pub async fn install_kubevirt_cr(
    client: &kube::Client,
    configuration: Value,
    release: KubeVirtRelease,
) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KUBEVIRT_NAMESPACE}});
    namespaces
        .patch(
            KUBEVIRT_NAMESPACE,
            &PatchParams::apply(MANAGER),
            &Patch::Apply(&ns),
        )
        .await
        .map_err(|e| Error::kube("creating namespace kubevirt", e))?;
    let ar = kubevirt_resource("KubeVirt");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), KUBEVIRT_NAMESPACE, &ar);
    let existing = api
        .list(&Default::default())
        .await
        .map_err(|e| Error::kube("listing KubeVirt CRs", e))?;
    let name = match existing.items.first().and_then(|o| o.metadata.name.clone()) {
        Some(name) => name,
        None => {
            let cr = json!({
                "apiVersion": "kubevirt.io/v1",
                "kind": "KubeVirt",
                "metadata": {"name": "kubevirt", "namespace": KUBEVIRT_NAMESPACE},
                "spec": {"configuration": configuration, "certificateRotateStrategy": {}, "imagePullPolicy": "IfNotPresent", "workloadUpdateStrategy": {}},
            });
            api.patch("kubevirt", &PatchParams::apply(MANAGER), &Patch::Apply(&cr))
                .await
                .map_err(|e| Error::kube("creating the KubeVirt CR", e))?;
            "kubevirt".to_string()
        }
    };
    let status = json!({"status": {
        "phase": "Deployed",
        "conditions": [
            {"type": "Available", "status": "True", "reason": "AllComponentsReady", "message": "All components are ready."},
            {"type": "Progressing", "status": "False", "reason": "AllComponentsReady", "message": "All components are ready."},
            {"type": "Degraded", "status": "False", "reason": "AllComponentsReady", "message": "All components are ready."},
        ],
        "observedKubeVirtVersion": release.version(),
        "targetKubeVirtVersion": release.version(),
        "operatorVersion": release.version(),
    }});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(|e| Error::kube("setting the KubeVirt CR status", e))?;
    Ok(())
}
