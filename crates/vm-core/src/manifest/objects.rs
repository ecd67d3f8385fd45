//! One document's value into the snapshot: a `List`'s items one by one, each known kind into
//! its typed list (field errors with their path), the duplicate check, and a note for a kind
//! that is not read.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::{DUPLICATE_ENDING, Duplicates, ManifestError, Note};
use crate::audit::ObjectRef;
use crate::snapshot::{ClusterSnapshot, Origin};

/// Adds `value`, the document of `source_name` that starts on `line`, to `snapshot`.
pub(super) fn add_value(
    snapshot: &mut ClusterSnapshot,
    source_name: &str,
    line: usize,
    value: Value,
    notes: &mut Vec<Note>,
    duplicates: &Duplicates,
) -> Result<(), ManifestError> {
    let not_object = |message: &str| ManifestError {
        source_name: source_name.to_string(),
        line,
        column: None,
        message: message.to_string(),
    };
    let Value::Mapping(map) = &value else {
        return Err(not_object(
            "document is not a Kubernetes object (expected a mapping with apiVersion and kind)",
        ));
    };
    let kind = map.get("kind").and_then(Value::as_str).map(str::to_string);
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(kind) = kind else {
        return Err(not_object(
            "document has no `kind`; it is not a Kubernetes object",
        ));
    };
    if kind == "List" || (kind.ends_with("List") && map.contains_key("items")) {
        let Some(Value::Sequence(items)) = map.get("items").cloned() else {
            return Err(not_object("a List without an `items` sequence"));
        };
        for item in items {
            add_value(snapshot, source_name, line, item, notes, duplicates)?;
        }
        return Ok(());
    }
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)")
        .to_string();
    let namespaced = !matches!(
        kind.as_str(),
        "Node"
            | "VirtualMachineClusterInstancetype"
            | "VolumeAttachment"
            | "MigrationPolicy"
            | "StorageProfile"
            | "StorageClass"
    );
    let namespace = value
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str);
    let object = ObjectRef {
        kind: kind.clone(),
        namespace: namespaced.then(|| namespace.unwrap_or("default").to_string()),
        name: name.clone(),
        source: None,
    };
    let origin = Origin {
        source: source_name.to_string(),
        line,
    };
    // Objects without a name (generateName) are each their own; the rest may appear once.
    let named = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .is_some_and(Value::is_string);
    macro_rules! push {
        ($list:expr) => {
            push!($list, value)
        };
        ($list:expr, $value:expr) => {{
            match duplicates {
                _ if !named => {
                    snapshot.origins.entry(object).or_insert(origin);
                }
                Duplicates::Refuse => claim(&mut snapshot.origins, object, origin)?,
                Duplicates::Layer { layer, deep } => {
                    let copies = snapshot.copies.entry(object.clone()).or_default();
                    copies.push(origin.clone());
                    let wanted = if deep.contains(&object) { *layer } else { 1 };
                    if copies.len() != wanted {
                        return Ok(());
                    }
                    snapshot.origins.insert(object, origin);
                }
            }
            $list.push(typed($value, source_name, line, &kind, &name)?)
        }};
    }
    let group = api_version.split('/').next().unwrap_or_default();
    match (group, kind.as_str()) {
        ("kubevirt.io", "VirtualMachine") => push!(snapshot.vms),
        ("kubevirt.io", "VirtualMachineInstance") => push!(snapshot.vmis),
        ("kubevirt.io", "VirtualMachineInstanceReplicaSet") => push!(snapshot.replica_sets),
        ("kubevirt.io", "VirtualMachineInstanceMigration") => push!(snapshot.migrations),
        ("kubevirt.io", "KubeVirt") => push!(snapshot.kubevirts),
        ("pool.kubevirt.io", "VirtualMachinePool") => push!(snapshot.pools),
        ("hco.kubevirt.io", "HyperConverged") => push!(snapshot.hyperconvergeds),
        ("instancetype.kubevirt.io", "VirtualMachineInstancetype") => push!(snapshot.instancetypes),
        ("instancetype.kubevirt.io", "VirtualMachineClusterInstancetype") => {
            push!(snapshot.cluster_instancetypes)
        }
        ("migrations.kubevirt.io", "MigrationPolicy") => push!(snapshot.migration_policies),
        ("cdi.kubevirt.io", "DataVolume") => push!(snapshot.data_volumes),
        ("cdi.kubevirt.io", "StorageProfile") => push!(snapshot.storage_profiles),
        ("storage.k8s.io", "StorageClass") => push!(snapshot.storage_classes),
        ("k8s.cni.cncf.io", "NetworkAttachmentDefinition") => {
            push!(snapshot.network_attachment_definitions)
        }
        ("v1", "Node") => push!(snapshot.nodes),
        ("v1", "Pod") => push!(snapshot.pods),
        ("v1", "PersistentVolumeClaim") => push!(snapshot.pvcs),
        ("coordination.k8s.io", "Lease") => push!(snapshot.leases),
        ("storage.k8s.io", "VolumeAttachment") => push!(snapshot.volume_attachments),
        ("policy", "PodDisruptionBudget") => {
            // policy/v1beta1 (served by older clusters) has the shape of policy/v1 for every field
            // the rules read; k8s-openapi only accepts its own apiVersion.
            let mut value = value;
            if let Value::Mapping(map) = &mut value {
                map.insert("apiVersion".into(), "policy/v1".into());
            }
            push!(snapshot.pdbs, value);
        }
        _ => {
            snapshot.origins.entry(object).or_insert(origin);
            notes.push(Note {
                location: format!("{source_name}:{line}"),
                message: format!("skipped {kind} {name} ({api_version}): not a kind vm-audit reads"),
            });
        }
    }
    Ok(())
}

/// Records where `object` was read. A second document with the same kind, namespace and name
/// is an error naming both places: merged, the two would be audited as one object with every
/// finding twice, and which copy the user meant cannot be known. (Each kind read here belongs
/// to one API group, so the kind stands for the group too.)
fn claim(
    origins: &mut BTreeMap<ObjectRef, Origin>,
    object: ObjectRef,
    origin: Origin,
) -> Result<(), ManifestError> {
    let first = match origins.entry(object) {
        Entry::Vacant(entry) => {
            entry.insert(origin);
            return Ok(());
        }
        Entry::Occupied(entry) => entry,
    };
    let (object, first) = (first.key(), first.get());
    let id = match &object.namespace {
        Some(ns) => format!("{} {ns}/{}", object.kind, object.name),
        None => format!("{} {}", object.kind, object.name),
    };
    let places = if *first == origin {
        // Two items of one List, or the same file given twice.
        format!("twice in {}:{}", first.source, first.line)
    } else {
        format!(
            "in {}:{} and in {}:{}",
            first.source, first.line, origin.source, origin.line
        )
    };
    Err(ManifestError {
        source_name: origin.source,
        line: origin.line,
        column: None,
        message: format!("duplicate {id}: {places}; {DUPLICATE_ENDING}"),
    })
}

fn typed<T: DeserializeOwned>(
    value: Value,
    source_name: &str,
    line: usize,
    kind: &str,
    name: &str,
) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(value).map_err(|e| ManifestError {
        source_name: source_name.to_string(),
        line,
        column: None,
        message: format!("{kind} {name}: field {}: {}", e.path(), e.inner()),
    })
}
