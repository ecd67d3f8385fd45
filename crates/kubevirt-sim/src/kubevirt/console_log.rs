//! The `guest-console-log` container of the launcher pod (virt-controller,
//! `pkg/virt-controller/services/serialconsolelog.go`): virt-tail following the guest's
//! serial console log. It asks for 5m CPU / 35M memory with limits 15m / 60M, and
//! request = limit when the VMI wants a Guaranteed pod or dedicated CPUs (so the pod stays
//! Guaranteed); the KubeVirt CR's `supportContainerResources` entry of type
//! `guest-console-log` overrides each quantity it sets.
//!
//! KubeVirt renders it as a native sidecar (an init container with `restartPolicy:
//! Always`). Kubernetes 1.20 has no native sidecars, so the simulator renders it as a second
//! ordinary container with the same requests and limits: the scheduler adds a native
//! sidecar's requests to the containers' sum exactly as it adds another container's, so
//! what the scheduler packs is the same.

use serde_json::{Value, json};

use super::config::ClusterConfig;
use super::launcher::guest::dedicated_cpus;
use super::launcher::names::LAUNCHER_IMAGE;
use super::launcher::resources::wants_guaranteed;

/// The container's name.
pub const NAME: &str = "guest-console-log";

/// Whether the VMI gets the container (`isSerialConsoleLogEnabled`): not when
/// `autoattachSerialConsole` is false; else `logSerialConsole` decides when set (so a VMI
/// may turn it back on against the cluster setting); else on unless the cluster disables it.
pub fn enabled(vmi: &Value, cfg: &ClusterConfig) -> bool {
    let devices = vmi.pointer("/spec/domain/devices");
    let flag = |k: &str| devices.and_then(|d| d.get(k)).and_then(Value::as_bool);
    if flag("autoattachSerialConsole") == Some(false) {
        return false;
    }
    flag("logSerialConsole").unwrap_or(!cfg.disable_serial_console_log)
}

/// The quantity `kind` (`requests` or `limits`) of `resource` set by the cluster's
/// override, if any and not zero (`GetSupportContainerRequest`/`Limit` skip zero values).
fn cluster_override<'a>(cfg: &'a ClusterConfig, kind: &str, resource: &str) -> Option<&'a Value> {
    cfg.console_log_resources
        .get(kind)
        .and_then(|m| m.get(resource))
        .filter(|q| !matches!(q.as_str(), Some("0" | "")) && !q.is_null())
}

/// The container's `resources` (`resourcesForSerialConsoleLogContainer`).
pub fn resources(vmi: &Value, cfg: &ClusterConfig) -> Value {
    let pick = |kind: &str, resource: &str, default: &str| {
        cluster_override(cfg, kind, resource)
            .cloned()
            .unwrap_or_else(|| json!(default))
    };
    let limits = json!({"cpu": pick("limits", "cpu", "15m"), "memory": pick("limits", "memory", "60M")});
    let requests = if dedicated_cpus(vmi) || wants_guaranteed(vmi) {
        limits.clone()
    } else {
        json!({"cpu": pick("requests", "cpu", "5m"), "memory": pick("requests", "memory", "35M")})
    };
    json!({"requests": requests, "limits": limits})
}

/// The container, or `None` when the VMI does not get one.
pub fn container(vmi: &Value, cfg: &ClusterConfig) -> Option<Value> {
    if !enabled(vmi, cfg) {
        return None;
    }
    let uid = vmi
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some(json!({
        "name": NAME,
        "image": LAUNCHER_IMAGE,
        "command": ["/usr/bin/virt-tail"],
        "args": ["--logfile", format!("/var/run/kubevirt-private/{uid}/virt-serial0-log")],
        "volumeMounts": [{"name": "private", "mountPath": "/var/run/kubevirt-private", "readOnly": true}],
        "resources": resources(vmi, cfg),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmi(resources: Value, devices: Value) -> Value {
        json!({"metadata": {"name": "v", "uid": "u-1"}, "spec": {"domain": {
            "resources": resources, "devices": devices}}})
    }

    #[test]
    fn on_by_default_and_off_by_vmi_or_cluster() {
        let cfg = ClusterConfig::default();
        assert!(enabled(&vmi(json!({}), json!({})), &cfg));
        assert!(!enabled(
            &vmi(json!({}), json!({"logSerialConsole": false})),
            &cfg
        ));
        assert!(!enabled(
            &vmi(
                json!({}),
                json!({"autoattachSerialConsole": false, "logSerialConsole": true})
            ),
            &cfg
        ));
        let off = ClusterConfig {
            disable_serial_console_log: true,
            ..ClusterConfig::default()
        };
        assert!(!enabled(&vmi(json!({}), json!({})), &off));
        assert!(container(&vmi(json!({}), json!({})), &off).is_none());
        // The VMI's own logSerialConsole: true wins over the cluster setting.
        assert!(enabled(&vmi(json!({}), json!({"logSerialConsole": true})), &off));
    }

    #[test]
    fn burstable_guaranteed_and_overridden_resources() {
        let cfg = ClusterConfig::default();
        let c = container(&vmi(json!({"requests": {"memory": "1Gi"}}), json!({})), &cfg).unwrap();
        assert_eq!(c["name"], NAME);
        assert_eq!(
            c["resources"],
            json!({"requests": {"cpu": "5m", "memory": "35M"}, "limits": {"cpu": "15m", "memory": "60M"}})
        );
        // Guaranteed: requests = limits.
        let g = vmi(
            json!({"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}),
            json!({}),
        );
        assert_eq!(
            resources(&g, &cfg)["requests"],
            json!({"cpu": "15m", "memory": "60M"})
        );
        // Dedicated CPUs likewise.
        let mut d = vmi(json!({"requests": {"memory": "1Gi"}}), json!({}));
        d["spec"]["domain"]["cpu"] = json!({"dedicatedCpuPlacement": true});
        assert_eq!(resources(&d, &cfg)["requests"]["cpu"], "15m");
        // The cluster override replaces what it sets, a zero is ignored.
        let cfg = ClusterConfig {
            console_log_resources: json!({"requests": {"cpu": "10m", "memory": "0"}, "limits": {"memory": "100M"}}),
            ..ClusterConfig::default()
        };
        let r = resources(&vmi(json!({}), json!({})), &cfg);
        assert_eq!(
            r,
            json!({"requests": {"cpu": "10m", "memory": "35M"}, "limits": {"cpu": "15m", "memory": "100M"}})
        );
    }
}
