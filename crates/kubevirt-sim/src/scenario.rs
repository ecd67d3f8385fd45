//! Scenarios: ordinary multi-document Kubernetes YAML. Its `Node` objects become simulated
//! nodes (labels, annotations, taints, `spec.unschedulable`, capacity and allocatable as
//! written; see [`NodeTemplate::from_node`] for the CPU helper annotation); a `KubeVirt`
//! object configures the cluster's KubeVirt CR; everything else is applied as is,
//! namespaces first.

use std::path::Path;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Discovery, Scope};
use serde::Deserialize;
use serde_json::Value;

use crate::nodes::NodeTemplate;
use crate::{Error, Result};

/// A parsed scenario.
#[derive(Debug, Clone, Default)]
pub struct Scenario {
    /// Simulated nodes to create.
    pub nodes: Vec<NodeTemplate>,
    /// `spec.configuration` of the scenario's KubeVirt CR, if it has one.
    pub kubevirt_configuration: Option<Value>,
    /// Every other object, in apply order.
    pub objects: Vec<Value>,
}

impl Scenario {
    /// Reads a scenario file.
    pub fn load(path: &Path, default_node: &NodeTemplate) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading the scenario", path, e))?;
        Self::parse(&text, default_node).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }

    /// Parses scenario YAML.
    pub fn parse(text: &str, default_node: &NodeTemplate) -> Result<Self> {
        let mut scenario = Scenario::default();
        let mut namespaces = Vec::new();
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value =
                Value::deserialize(doc).map_err(|e| Error::Other(format!("document {}: {e}", i + 1)))?;
            if value.is_null() {
                continue;
            }
            let items = match value.get("kind").and_then(Value::as_str) {
                Some(k) if k.ends_with("List") => value
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                Some(_) => vec![value],
                None => return Err(Error::Other(format!("document {} has no kind", i + 1))),
            };
            for item in items {
                match item.get("kind").and_then(Value::as_str).unwrap_or_default() {
                    "Node" => {
                        let node: Node =
                            serde_json::from_value(item).map_err(|e| Error::Other(format!("a Node: {e}")))?;
                        scenario.nodes.push(NodeTemplate::from_node(&node, default_node)?);
                    }
                    "KubeVirt" => {
                        let config = item
                            .pointer("/spec/configuration")
                            .cloned()
                            .unwrap_or(Value::Object(Default::default()));
                        scenario.kubevirt_configuration = Some(config);
                    }
                    "Namespace" => namespaces.push(item),
                    _ => scenario.objects.push(item),
                }
            }
        }
        namespaces.append(&mut scenario.objects);
        scenario.objects = namespaces;
        Ok(scenario)
    }

    /// Applies the objects (server-side apply, so applying twice is harmless).
    pub async fn apply(&self, client: &kube::Client) -> Result<()> {
        if self.objects.is_empty() {
            return Ok(());
        }
        let discovery = Discovery::new(client.clone())
            .run()
            .await
            .map_err(|e| Error::kube("discovering the API", e))?;
        let pp = PatchParams::apply("vm-sandbox-scenario").force();
        for obj in &self.objects {
            let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
            let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let gvk = GroupVersionKind::gvk(group, version, kind);
            let (ar, caps) = discovery.resolve_gvk(&gvk).ok_or_else(|| {
                Error::Other(format!("scenario object of unknown kind {api_version}/{kind}"))
            })?;
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Error::Other(format!(
                        "scenario object {kind} has no metadata.name (generateName is not supported)"
                    ))
                })?;
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Cluster => Api::all_with(client.clone(), &ar),
                Scope::Namespaced => {
                    let ns = obj
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or("default");
                    Api::namespaced_with(client.clone(), ns, &ar)
                }
            };
            api.patch(name, &pp, &Patch::Apply(obj))
                .await
                .map_err(|e| Error::kube(format!("applying {kind} {name}"), e))?;
        }
        Ok(())
    }
}
