//! The `LiveMigratable` condition virt-handler reports (`calculateLiveMigrationCondition`):
//! True, or False with the first matching reason in KubeVirt's order. Tools decide whether
//! a drain can migrate a VM from this condition, so the reasons and order matter.

use std::collections::HashMap;

use serde_json::{Value, json};

/// Access modes of the PVCs in the VMI's namespace, by claim name.
pub type PvcAccessModes = HashMap<String, Vec<String>>;

/// `(status, reason, message)` of the LiveMigratable condition, checked in the order of
/// `calculateLiveMigrationCondition` (`pkg/virt-handler/vm.go`). `node_has_host_model`:
/// whether the VMI's node has a host-model CPU (a `host-model-cpu.node.kubevirt.io/*`
/// label; arm64 nodes have none), without which a host-model VMI cannot migrate.
pub fn live_migratable(
    vmi: &Value,
    pvcs: &PvcAccessModes,
    node_has_host_model: bool,
) -> (bool, &'static str, String) {
    if let Some(msg) = interface_blocker(vmi) {
        return (false, "InterfaceNotLiveMigratable", msg);
    }
    // `isHostModelMigratable`: only an explicit `host-model` (the webhook writes it as the
    // default); host-passthrough is not checked here. The reason string is KubeVirt's own
    // (`VirtualMachineInstanceReasonCPUModeNotMigratable`, spelled without "Not").
    if vmi.pointer("/spec/domain/cpu/model").and_then(Value::as_str) == Some("host-model")
        && !node_has_host_model
    {
        let node = vmi
            .pointer("/status/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return (
            false,
            "CPUModeLiveMigratable",
            format!("the node \"{node}\" does not allow migration with host-model"),
        );
    }
    let devices = vmi
        .pointer("/spec/domain/devices")
        .cloned()
        .unwrap_or(Value::Null);
    let count = |k: &str| devices.get(k).and_then(Value::as_array).map_or(0, Vec::len);
    if count("hostDevices") > 0 {
        return (
            false,
            "HostDeviceNotLiveMigratable",
            "VMI uses a PCI host devices".into(),
        );
    }
    if count("gpus") > 0 {
        return (
            false,
            "HostDeviceNotLiveMigratable",
            "VMI uses a GPU that cannot be live migrated".into(),
        );
    }
    let set = |p: &str| vmi.pointer(p).is_some_and(|v| !v.is_null());
    if super::confidential::is_sev(vmi) {
        return (false, "SEVNotLiveMigratable", "VMI uses SEV".into());
    }
    if set("/spec/domain/launchSecurity/tdx") {
        return (false, "TDXNotLiveMigratable", "VMI uses TDX".into());
    }
    if set("/spec/domain/launchSecurity/secureExecution") {
        return (
            false,
            "SecureExecutionNotLiveMigratable",
            "VMI uses Secure Execution".into(),
        );
    }
    // Reenlightenment without a TSC hint (`RequiredForMigration`); invtsc is required for
    // boot instead, so it does not block here.
    let reenlightenment = vmi
        .pointer("/spec/domain/features/hyperv/reenlightenment/enabled")
        .and_then(Value::as_bool)
        == Some(true);
    let hinted = vmi
        .pointer("/status/topologyHints/tscFrequency")
        .and_then(Value::as_u64)
        .is_some_and(|f| f > 0);
    if reenlightenment && !super::tsc::required_for_boot(vmi) && !hinted {
        return (
            false,
            "NoTSCFrequencyNotLiveMigratable",
            "HyperV Reenlightenment VMIs cannot migrate when TSC Frequency is not exposed on the cluster: guest timers might be inconsistent".into(),
        );
    }
    if vmi
        .pointer("/spec/domain/features/hypervPassthrough/enabled")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return (
            false,
            "HypervPassthroughNotLiveMigratable",
            "VMI uses hyperv passthrough".into(),
        );
    }
    for vol in vmi
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let claim = vol
            .pointer("/persistentVolumeClaim/claimName")
            .or_else(|| vol.pointer("/dataVolume/name"))
            .and_then(Value::as_str);
        if let Some(claim) = claim {
            let shared = pvcs
                .get(claim)
                .is_some_and(|modes| modes.iter().any(|m| m == "ReadWriteMany"));
            if !shared {
                return (
                    false,
                    "DisksNotLiveMigratable",
                    format!(
                        "cannot migrate VMI: PVC {claim} is not shared, live migration requires that all PVCs must be shared (using ReadWriteMany access mode)"
                    ),
                );
            }
        }
        if vol.get("hostDisk").is_some()
            && vol.pointer("/hostDisk/shared").and_then(Value::as_bool) != Some(true)
        {
            return (
                false,
                "DisksNotLiveMigratable",
                "cannot migrate VMI with non-shared HostDisk".into(),
            );
        }
    }
    (true, "", String::new())
}

/// `VerifyVMIMigratable` (`pkg/network/vmispec/interface.go`): the interface of the pod
/// network must use masquerade or `passtBinding`, a binding plugin (assumed migratable: the
/// simulator does not model plugins' `migration` setting), or bridge with the VMI annotation
/// `kubevirt.io/allow-pod-bridge-network-live-migration`; a pod network without its
/// interface blocks too. No interfaces or no pod network: nothing to check.
fn interface_blocker(vmi: &Value) -> Option<String> {
    let ifaces = vmi
        .pointer("/spec/domain/devices/interfaces")
        .and_then(Value::as_array)
        .filter(|i| !i.is_empty())?;
    let pod_net = vmi
        .pointer("/spec/networks")
        .and_then(Value::as_array)?
        .iter()
        .find(|n| n.get("pod").is_some())?
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(iface) = ifaces
        .iter()
        .find(|i| i.get("name").and_then(Value::as_str) == Some(pod_net))
    else {
        return Some(format!("no primary interface found for network {pod_net}"));
    };
    let has = |k: &str| iface.get(k).is_some_and(|v| !v.is_null());
    let allowed = has("masquerade")
        || has("passtBinding")
        || has("binding")
        || (has("bridge")
            && vmi
                .pointer("/metadata/annotations/kubevirt.io~1allow-pod-bridge-network-live-migration")
                .is_some());
    (!allowed).then(|| {
        "cannot migrate VMI which does not use masquerade or a migratable plugin to connect to the pod network".to_string()
    })
}

/// The condition as JSON, with `now` as the transition time.
pub fn condition(vmi: &Value, pvcs: &PvcAccessModes, node_has_host_model: bool, now: &str) -> Value {
    let (ok, reason, message) = live_migratable(vmi, pvcs, node_has_host_model);
    if ok {
        json!({"type": "LiveMigratable", "status": "True", "lastProbeTime": null, "lastTransitionTime": now})
    } else {
        json!({"type": "LiveMigratable", "status": "False", "reason": reason, "message": message, "lastProbeTime": null, "lastTransitionTime": now})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmi(volumes: Value, devices: Value) -> Value {
        json!({"metadata": {"name": "v"}, "spec": {
            "domain": {"devices": devices},
            "networks": [{"name": "default", "pod": {}}],
            "volumes": volumes,
        }})
    }

    #[test]
    fn reasons_in_kubevirt_order() {
        let mut pvcs = PvcAccessModes::new();
        pvcs.insert("rwo".into(), vec!["ReadWriteOnce".into()]);
        pvcs.insert("rwx".into(), vec!["ReadWriteMany".into()]);
        let masq = json!({"interfaces": [{"name": "default", "masquerade": {}}]});
        let ok = vmi(
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": "rwx"}}]),
            masq.clone(),
        );
        assert!(live_migratable(&ok, &pvcs, true).0);
        let rwo = vmi(
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": "rwo"}}]),
            masq.clone(),
        );
        assert_eq!(live_migratable(&rwo, &pvcs, true).1, "DisksNotLiveMigratable");
        let host_disk = vmi(
            json!([{"name": "d", "hostDisk": {"path": "/x", "type": "Disk"}}]),
            masq.clone(),
        );
        assert_eq!(
            live_migratable(&host_disk, &pvcs, true).1,
            "DisksNotLiveMigratable"
        );
        let mut dev = masq.clone();
        dev["hostDevices"] = json!([{"name": "nic", "deviceName": "x/y"}]);
        let hd = vmi(
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": "rwo"}}]),
            dev,
        );
        assert_eq!(
            live_migratable(&hd, &pvcs, true).1,
            "HostDeviceNotLiveMigratable",
            "host devices come before disks"
        );
        let bridge = vmi(
            json!([]),
            json!({"interfaces": [{"name": "default", "bridge": {}}]}),
        );
        assert_eq!(
            live_migratable(&bridge, &pvcs, true).1,
            "InterfaceNotLiveMigratable"
        );
    }

    fn masq_vmi(domain_extra: Value) -> Value {
        let mut v = vmi(
            json!([]),
            json!({"interfaces": [{"name": "default", "masquerade": {}}]}),
        );
        if let (Some(d), Value::Object(extra)) = (v["spec"]["domain"].as_object_mut(), domain_extra) {
            d.extend(extra);
        }
        v
    }

    #[test]
    fn pod_network_interface_rules() {
        let pvcs = PvcAccessModes::new();
        let with = |iface: Value| vmi(json!([]), json!({"interfaces": [iface]}));
        for ok in [
            json!({"name": "default", "masquerade": {}}),
            json!({"name": "default", "passtBinding": {}}),
            json!({"name": "default", "binding": {"name": "passt"}}),
        ] {
            assert!(live_migratable(&with(ok.clone()), &pvcs, true).0, "{ok}");
        }
        // The deprecated `passt` field is not a migratable binding.
        let (ok, reason, msg) = live_migratable(&with(json!({"name": "default", "passt": {}})), &pvcs, true);
        assert_eq!((ok, reason), (false, "InterfaceNotLiveMigratable"));
        assert_eq!(
            msg,
            "cannot migrate VMI which does not use masquerade or a migratable plugin to connect to the pod network"
        );
        // Bridge with the opt-in annotation.
        let mut bridge = with(json!({"name": "default", "bridge": {}}));
        assert!(!live_migratable(&bridge, &pvcs, true).0);
        bridge["metadata"]["annotations"] =
            json!({"kubevirt.io/allow-pod-bridge-network-live-migration": ""});
        assert!(live_migratable(&bridge, &pvcs, true).0);
        // The pod network without its interface.
        let other = with(json!({"name": "other", "masquerade": {}}));
        assert_eq!(
            live_migratable(&other, &pvcs, true).2,
            "no primary interface found for network default"
        );
        // Only secondary networks: nothing to check.
        let mut multus = with(json!({"name": "fast", "sriov": {}}));
        multus["spec"]["networks"] = json!([{"name": "fast", "multus": {"networkName": "sriov"}}]);
        assert!(live_migratable(&multus, &pvcs, true).0);
    }

    #[test]
    fn cpu_mode_launch_security_tsc_and_hyperv_reasons() {
        let pvcs = PvcAccessModes::new();
        // host-model needs a node with a host-model CPU (none on arm64 nodes);
        // host-passthrough (the arm64 default) is not checked by virt-handler.
        let host_model = masq_vmi(json!({"cpu": {"model": "host-model"}}));
        assert!(live_migratable(&host_model, &pvcs, true).0);
        assert_eq!(
            live_migratable(&host_model, &pvcs, false).1,
            "CPUModeLiveMigratable"
        );
        let passthrough = masq_vmi(json!({"cpu": {"model": "host-passthrough"}}));
        assert!(live_migratable(&passthrough, &pvcs, false).0);
        // SEV and SNP, TDX.
        for ls in [json!({"sev": {}}), json!({"snp": {}})] {
            let v = masq_vmi(json!({"launchSecurity": ls}));
            assert_eq!(
                live_migratable(&v, &pvcs, true),
                (false, "SEVNotLiveMigratable", "VMI uses SEV".to_string())
            );
        }
        let tdx = masq_vmi(json!({"launchSecurity": {"tdx": {}}}));
        assert_eq!(live_migratable(&tdx, &pvcs, true).1, "TDXNotLiveMigratable");
        // The interface is checked first.
        let mut bridge_sev = masq_vmi(json!({"launchSecurity": {"sev": {}}}));
        bridge_sev["spec"]["domain"]["devices"]["interfaces"] = json!([{"name": "default", "bridge": {}}]);
        assert_eq!(
            live_migratable(&bridge_sev, &pvcs, true).1,
            "InterfaceNotLiveMigratable"
        );
        // Reenlightenment without a TSC hint, then with one.
        let mut re = masq_vmi(json!({"features": {"hyperv": {"reenlightenment": {"enabled": true}}}}));
        assert_eq!(
            live_migratable(&re, &pvcs, true).1,
            "NoTSCFrequencyNotLiveMigratable"
        );
        re["status"] = json!({"topologyHints": {"tscFrequency": 2_400_000_000u64}});
        assert!(live_migratable(&re, &pvcs, true).0);
        let hp = masq_vmi(json!({"features": {"hypervPassthrough": {"enabled": true}}}));
        assert_eq!(
            live_migratable(&hp, &pvcs, true).1,
            "HypervPassthroughNotLiveMigratable"
        );
    }
}
