//! Manifests to snapshot: multi-document YAML or JSON, `kind: List`, every error with its line.
//!
//! Documents are split on `---` at the start of a line (a document marker in YAML wherever it
//! appears, even inside a block scalar), so each document knows the line it starts on and an
//! error can name `file:line`. Each document is read as a generic value first (syntax errors),
//! then converted to its typed object (type errors, with the field path).

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::audit::ObjectRef;
use crate::snapshot::{ClusterSnapshot, Origin};

/// Why a manifest could not be read: not YAML/JSON, not a Kubernetes object, or a known kind
/// whose fields have the wrong shape. Always names the source and the line.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}:{line}{}: {message}", column.map(|c| format!(":{c}")).unwrap_or_default())]
pub struct ManifestError {
    /// File name, or `-` for stdin.
    pub source_name: String,
    /// 1-based line (of the error, or of the document it is in).
    pub line: usize,
    /// 1-based column, for syntax errors.
    pub column: Option<usize>,
    /// What is wrong, e.g. `VirtualMachine vm1: field spec.running: invalid type`.
    pub message: String,
}

/// Something worth telling the user that is not an error (an unknown kind, skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// `file:line`.
    pub location: String,
    /// What happened.
    pub message: String,
}

/// Splits `text` into documents with the 1-based line each starts on.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut start = 1;
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        let is_end = line == "...";
        if is_marker || is_end {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 2;
            if let Some(rest) = line.strip_prefix("---").filter(|r| !r.trim().is_empty()) {
                // `--- {inline: document}`: keep the content, on this line.
                start = i + 1;
                current.push_str(rest);
                current.push('\n');
            }
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push((start, current));
    docs.retain(|(_, d)| {
        d.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

/// Reads every document of `text` (named `source_name` in errors) into `snapshot`.
///
/// # Errors
/// The first document that is not valid YAML/JSON, not an object, or a known kind of the wrong
/// shape. Documents of unknown kinds are skipped and reported as [`Note`]s.
pub fn load_into(
    snapshot: &mut ClusterSnapshot,
    source_name: &str,
    text: &str,
) -> Result<Vec<Note>, ManifestError> {
    let mut notes = Vec::new();
    for (line, doc) in split_documents(text) {
        let value: Value = serde_yaml::from_str(&doc).map_err(|e| {
            let loc = e.location();
            ManifestError {
                source_name: source_name.to_string(),
                line: loc.as_ref().map_or(line, |l| line + l.line() - 1),
                column: Some(loc.as_ref().map_or(1, serde_yaml::Location::column)),
                message: strip_location(&e.to_string()),
            }
        })?;
        add_value(snapshot, source_name, line, value, &mut notes)?;
    }
    Ok(notes)
}

/// serde_yaml appends " at line X column Y"; the error already says where.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn add_value(
    snapshot: &mut ClusterSnapshot,
    source_name: &str,
    line: usize,
    value: Value,
    notes: &mut Vec<Note>,
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
            add_value(snapshot, source_name, line, item, notes)?;
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
        "Node" | "VirtualMachineClusterInstancetype" | "VolumeAttachment"
    );
    let namespace = value
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str);
    let object = ObjectRef {
        kind: kind.clone(),
        namespace: namespaced.then(|| namespace.unwrap_or("default").to_string()),
        name: name.clone(),
    };
    snapshot.origins.entry(object).or_insert_with(|| Origin {
        source: source_name.to_string(),
        line,
    });
    macro_rules! push {
        ($list:expr) => {
            $list.push(typed(value, source_name, line, &kind, &name)?)
        };
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
            snapshot.pdbs.push(typed(value, source_name, line, &kind, &name)?);
        }
        _ => notes.push(Note {
            location: format!("{source_name}:{line}"),
            message: format!("skipped {kind} {name} ({api_version}): not a kind vm-audit reads"),
        }),
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        for i in 0..9 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("a{}", i - 1)
            };
            text.push_str(&format!("a{i}: &a{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        text.push_str("kind: Node\napiVersion: v1\n");
        let mut snap = ClusterSnapshot::default();
        assert!(load_into(&mut snap, "bomb.yaml", &text).is_err());
    }
}
