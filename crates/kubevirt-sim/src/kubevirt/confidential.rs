//! Confidential-computing VMIs (`spec.domain.launchSecurity`): what KubeVirt derives from
//! them for the launcher pod. The tests that decide (`pkg/util/amd64.go`: `IsSEVVMI` is SEV
//! *or* SNP, `IsSEVESVMI` is SEV with `policy.encryptedState: true`, `IsSEVSNPVMI`;
//! `IsTDXVMI`), the node selectors they add (`template.go` `newNodeSelectorRenderer`, label
//! names from the API's `SEVLabel` …), and the SEV device-plugin resource
//! (`renderresources.go` `WithSEV`). The +256Mi memory overhead of SEV/SNP is in
//! [`super::launcher::memory_overhead`]; the LiveMigratable reasons in [`super::migratable`].

use serde_json::Value;

/// The SEV device-plugin resource, one per SEV or SNP VMI as request and limit (`SevDevice`).
pub const SEV_DEVICE: &str = "devices.kubevirt.io/sev";

fn set(vmi: &Value, key: &str) -> bool {
    vmi.pointer(&format!("/spec/domain/launchSecurity/{key}"))
        .is_some_and(|v| !v.is_null())
}

/// Whether the VMI uses AMD SEV or SEV-SNP (`IsSEVVMI`).
pub fn is_sev(vmi: &Value) -> bool {
    set(vmi, "sev") || set(vmi, "snp")
}

/// Whether the VMI uses SEV-ES (`IsSEVESVMI`).
pub fn is_sev_es(vmi: &Value) -> bool {
    vmi.pointer("/spec/domain/launchSecurity/sev/policy/encryptedState")
        .and_then(Value::as_bool)
        == Some(true)
}

/// Whether the VMI uses Intel TDX (`IsTDXVMI`).
pub fn is_tdx(vmi: &Value) -> bool {
    set(vmi, "tdx")
}

/// The node-selector labels (each `"true"`) the launcher pod gets: `kubevirt.io/sev` for
/// SEV and SNP, plus `kubevirt.io/sev-es` for SEV-ES and `kubevirt.io/sev-snp` for SNP;
/// `kubevirt.io/tdx` for TDX.
pub fn selector_labels(vmi: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if is_sev(vmi) {
        out.push("kubevirt.io/sev".to_string());
    }
    if is_sev_es(vmi) {
        out.push("kubevirt.io/sev-es".to_string());
    }
    if set(vmi, "snp") {
        out.push("kubevirt.io/sev-snp".to_string());
    }
    if is_tdx(vmi) {
        out.push("kubevirt.io/tdx".to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubevirt::config::ClusterConfig;
    use crate::kubevirt::launcher::{memory_overhead, node_selector, resources};
    use serde_json::json;

    fn vmi(launch_security: Value) -> Value {
        json!({"metadata": {"name": "v", "uid": "u"}, "spec": {"architecture": "amd64", "domain": {
            "launchSecurity": launch_security, "resources": {"requests": {"memory": "1Gi"}}, "devices": {}}}})
    }

    #[test]
    fn sev_es_and_snp_selectors() {
        assert_eq!(selector_labels(&vmi(json!({"sev": {}}))), ["kubevirt.io/sev"]);
        assert_eq!(
            selector_labels(&vmi(json!({"sev": {"policy": {"encryptedState": true}}}))),
            ["kubevirt.io/sev", "kubevirt.io/sev-es"]
        );
        assert_eq!(
            selector_labels(&vmi(json!({"sev": {"policy": {"encryptedState": false}}}))),
            ["kubevirt.io/sev"]
        );
        assert_eq!(
            selector_labels(&vmi(json!({"snp": {}}))),
            ["kubevirt.io/sev", "kubevirt.io/sev-snp"]
        );
        assert_eq!(selector_labels(&vmi(json!({"tdx": {}}))), ["kubevirt.io/tdx"]);
        assert!(selector_labels(&vmi(Value::Null)).is_empty());
        let sel = node_selector(&vmi(json!({"snp": {}})), &ClusterConfig::default());
        assert_eq!(sel["kubevirt.io/sev"], "true");
        assert_eq!(sel["kubevirt.io/sev-snp"], "true");
    }

    /// How a scenario declares an SEV node: the labeller's `kubevirt.io/sev` label and the
    /// device plugin's capacity, as on a real node; the sandbox keeps both.
    #[test]
    fn a_scenario_declares_an_sev_node_with_its_label_and_capacity() {
        let yaml = r#"
apiVersion: v1
kind: Node
metadata:
  name: sev-1
  annotations: {sandbox.kubevirt-sim.io/cpu: "vendor=AMD model=EPYC-Milan features=svm,sev"}
  labels: {kubevirt.io/sev: "true", kubevirt.io/sev-es: "true"}
status:
  capacity: {cpu: "64", memory: 256Gi, devices.kubevirt.io/sev: "15"}
"#;
        let default = crate::nodes::NodeTemplate::worker("", "32", "128Gi", "110");
        let scenario = crate::scenario::Scenario::parse(yaml, &default).unwrap();
        let node = &scenario.nodes[0];
        assert_eq!(node.labels["kubevirt.io/sev"], "true");
        assert_eq!(node.labels["kubevirt.io/sev-es"], "true");
        assert_eq!(node.capacity()[SEV_DEVICE], "15");
        assert_eq!(node.allocatable()[SEV_DEVICE], "15");
    }

    #[test]
    fn sev_device_and_overhead() {
        let cfg = ClusterConfig::default();
        for ls in [json!({"sev": {}}), json!({"snp": {}})] {
            let v = vmi(ls);
            let r = resources(&v, &cfg);
            assert_eq!(r["requests"][SEV_DEVICE], "1");
            assert_eq!(r["limits"][SEV_DEVICE], "1");
            // 290Mi for 1Gi / 1 vCPU, + 256Mi.
            assert_eq!(memory_overhead(&v), (290 + 256) << 20);
        }
        let r = resources(&vmi(json!({"tdx": {}})), &cfg);
        assert!(r["requests"].get(SEV_DEVICE).is_none());
        assert!(r["limits"].get(SEV_DEVICE).is_none());
    }
}
