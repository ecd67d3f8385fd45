//! Defaults of KubeVirt's VMI mutating webhook that change what the launcher pod asks for
//! and whether the VMI can migrate (`mutators/vmi-mutator.go` → `pkg/defaults/defaults.go`
//! `SetDefaultVirtualMachineInstanceSpec`). [`super::vmi::apply_defaults`] applies them with
//! the other defaults; each returns whether it changed the VMI, so the simulator patches
//! only what the webhook would have written.

use serde_json::{Value, json};

use super::config::ClusterConfig;

fn ensure_object<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    if !v.get(key).is_some_and(Value::is_object) {
        v[key] = json!({});
    }
    &mut v[key]
}

/// A CPU limit without a CPU request: the request becomes the limit
/// (`setDefaultResourceRequests`). Memory is not copied here: KubeVirt's renderer takes a
/// missing memory request from the limit itself (`WithMemoryRequests`, renderresources.go).
pub fn cpu_request_from_limit(vmi: &mut Value) -> bool {
    let Some(limit) = vmi
        .pointer("/spec/domain/resources/limits/cpu")
        .filter(|l| !l.is_null())
        .cloned()
    else {
        return false;
    };
    if vmi
        .pointer("/spec/domain/resources/requests/cpu")
        .is_some_and(|r| !r.is_null())
    {
        return false;
    }
    let spec = ensure_object(vmi, "spec");
    let domain = ensure_object(spec, "domain");
    let resources = ensure_object(domain, "resources");
    ensure_object(resources, "requests")["cpu"] = limit;
    true
}

/// A VMI that declares no interfaces and no networks (and does not turn
/// `autoattachPodInterface` off) gets the pod network, named `default`, with the cluster's
/// default binding (`SetDefaultNetworkInterface`, `pkg/network/vmispec/defaults.go`):
/// `bridge` unless `network.defaultNetworkInterface` says otherwise. Errors for a binding
/// KubeVirt refuses (slirp, or anything it does not know), as its webhook refuses the VMI.
pub fn default_network(vmi: &mut Value, cfg: &ClusterConfig) -> Result<bool, String> {
    let devices = vmi.pointer("/spec/domain/devices");
    if devices
        .and_then(|d| d.get("autoattachPodInterface"))
        .and_then(Value::as_bool)
        == Some(false)
    {
        return Ok(false);
    }
    let non_empty = |v: Option<&Value>| v.and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    if non_empty(vmi.pointer("/spec/networks")) || non_empty(devices.and_then(|d| d.get("interfaces"))) {
        return Ok(false);
    }
    let binding = match cfg.default_network_interface.as_str() {
        b @ ("bridge" | "masquerade") => b,
        "slirp" => return Err("slirp interface is deprecated as of v1.3".into()),
        other => return Err(format!("unknown default network interface {other:?}")),
    };
    let spec = ensure_object(vmi, "spec");
    spec["networks"] = json!([{"name": "default", "pod": {}}]);
    let domain = ensure_object(spec, "domain");
    let devices = ensure_object(domain, "devices");
    devices["interfaces"] = json!([{"name": "default", binding: {}}]);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_limit_becomes_the_request() {
        let mut v = json!({"spec": {"domain": {"resources": {"limits": {"cpu": "2", "memory": "2Gi"}}}}});
        assert!(cpu_request_from_limit(&mut v));
        assert_eq!(v["spec"]["domain"]["resources"]["requests"], json!({"cpu": "2"}));
        // An explicit request stays.
        let mut v =
            json!({"spec": {"domain": {"resources": {"limits": {"cpu": "2"}, "requests": {"cpu": "1"}}}}});
        assert!(!cpu_request_from_limit(&mut v));
        assert_eq!(v["spec"]["domain"]["resources"]["requests"]["cpu"], "1");
        let mut v = json!({"spec": {"domain": {}}});
        assert!(!cpu_request_from_limit(&mut v));
    }

    #[test]
    fn pod_network_with_the_cluster_default_binding() {
        let mut v = json!({"spec": {"domain": {"devices": {}}}});
        assert_eq!(default_network(&mut v, &ClusterConfig::default()), Ok(true));
        assert_eq!(v["spec"]["networks"], json!([{"name": "default", "pod": {}}]));
        assert_eq!(
            v["spec"]["domain"]["devices"]["interfaces"],
            json!([{"name": "default", "bridge": {}}])
        );
        let masq = ClusterConfig {
            default_network_interface: "masquerade".into(),
            ..ClusterConfig::default()
        };
        let mut v = json!({"spec": {}});
        assert_eq!(default_network(&mut v, &masq), Ok(true));
        assert_eq!(
            v["spec"]["domain"]["devices"]["interfaces"],
            json!([{"name": "default", "masquerade": {}}])
        );
        // Declared networks or interfaces, or no pod interface: untouched.
        for spec in [
            json!({"networks": [{"name": "n", "multus": {"networkName": "x"}}], "domain": {}}),
            json!({"domain": {"devices": {"interfaces": [{"name": "a", "bridge": {}}]}}}),
            json!({"domain": {"devices": {"autoattachPodInterface": false}}}),
        ] {
            let mut v = json!({"spec": spec});
            let before = v.clone();
            assert_eq!(default_network(&mut v, &masq), Ok(false));
            assert_eq!(v, before);
        }
        let slirp = ClusterConfig {
            default_network_interface: "slirp".into(),
            ..ClusterConfig::default()
        };
        assert!(default_network(&mut json!({"spec": {}}), &slirp).is_err());
    }
}
