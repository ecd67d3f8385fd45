//! The launcher pod's requests against the reference's table (`kubevirt-pod-constraints.md`
//! §1d and §2), row by row.

use super::*;

fn spec(yaml: &str) -> VirtualMachineInstanceSpec {
    serde_yaml::from_str(yaml).unwrap()
}

fn defaults() -> ClusterConfig {
    ClusterConfig::defaults()
}

/// The `guest-console-log` sidecar every launcher pod has by default
/// (`pkg/virt-controller/services/serialconsolelog.go`): 5m / 35M, or 15m / 60M when the pod
/// is Guaranteed or the guest has dedicated CPUs.
const LOG_CPU: f64 = 0.005;
const LOG_MEMORY: f64 = 35_000_000.0;
const LOG_CPU_GUARANTEED: f64 = 0.015;
const LOG_MEMORY_GUARANTEED: f64 = 60_000_000.0;

#[test]
fn a_plain_2gi_vm_matches_kubevirts_renderer_to_the_mib() {
    // Measured against KubeVirt's own renderer: 2340Mi and 100m for a 2Gi, 1-vCPU VM's compute
    // container, and the console-log sidecar beside it.
    let r = launcher_requests(
        &spec("domain: {resources: {requests: {memory: 2Gi}}}"),
        None,
        &defaults(),
    )
    .unwrap();
    assert_eq!(r.memory, 2340.0 * MI + LOG_MEMORY);
    assert!((r.cpu - 0.1 - LOG_CPU).abs() < 1e-12);
}

#[test]
fn overhead_checks_of_the_reference() {
    // hypervisorbackend_test.go: 1Gi request, 1 vCPU → 290Mi.
    let s = spec("domain: {resources: {requests: {memory: 1Gi}}}");
    let g = guest_size(&s, None);
    assert_eq!(memory_overhead(&s, g), 290.0 * MI);
    // 2 vCPU with a 4Gi request → 304Mi + 1 byte (the page-table term rounds to 1000 bytes).
    let s = spec("domain: {resources: {requests: {memory: 4Gi}}, cpu: {cores: 2}}");
    assert_eq!(memory_overhead(&s, guest_size(&s, None)), 304.0 * MI + 1.0);
    // An instancetype VM with 2 vCPUs and only a guest size: no page-table term → 296Mi.
    let it: InstancetypeSpec = serde_yaml::from_str("{cpu: {guest: 2}, memory: {guest: 4Gi}}").unwrap();
    let s = spec("domain: {}");
    assert_eq!(memory_overhead(&s, guest_size(&s, Some(&it))), 296.0 * MI);
}

#[test]
fn requests_add_kubevirt_overhead() {
    let s = spec("domain: {resources: {requests: {memory: 1Gi}}, cpu: {cores: 2}}");
    let r = launcher_requests(&s, None, &defaults()).unwrap();
    // 1Gi + 2Mi page tables + 240Mi + 16Mi vCPUs + 8Mi IOThread + 32Mi video
    assert_eq!(
        r.memory,
        1024.0 * MI + 2.0 * MI + 240.0 * MI + 16.0 * MI + 8.0 * MI + 32.0 * MI + LOG_MEMORY
    );
    assert!((r.cpu - 0.2 - LOG_CPU).abs() < 1e-9, "2 vCPUs / ratio 10");
}

#[test]
fn cpu_allocation_ratio_divides_the_vcpus() {
    let mut cluster = defaults();
    cluster.cpu_allocation_ratio = 4;
    let s = spec("domain: {resources: {requests: {memory: 1Gi}}, cpu: {sockets: 2, cores: 2, threads: 2}}");
    let r = launcher_requests(&s, None, &cluster).unwrap();
    assert!((r.cpu - 2.0 - LOG_CPU).abs() < 1e-12, "8 vCPUs / 4");
}

#[test]
fn explicit_cpu_request_wins_and_overhead_can_be_dropped() {
    let s =
        spec("domain: {resources: {requests: {memory: 2Gi, cpu: '1500m'}, overcommitGuestOverhead: true}}");
    let r = launcher_requests(&s, None, &defaults()).unwrap();
    assert_eq!(r.memory, 2048.0 * MI + LOG_MEMORY);
    assert!((r.cpu - 1.5 - LOG_CPU).abs() < 1e-12);
}

#[test]
fn memory_overcommit_shrinks_the_request_not_the_guest() {
    let mut cluster = defaults();
    cluster.memory_overcommit = 200;
    let s = spec("domain: {memory: {guest: 4Gi}, devices: {autoattachGraphicsDevice: false}}");
    let r = launcher_requests(&s, None, &cluster).unwrap();
    assert_eq!(
        r.memory,
        2048.0 * MI + 240.0 * MI + 8.0 * MI + 8.0 * MI + LOG_MEMORY
    );
}

#[test]
fn instancetype_sizes_the_guest() {
    let it: InstancetypeSpec = serde_yaml::from_str("{cpu: {guest: 4}, memory: {guest: 8Gi}}").unwrap();
    let s = spec("domain: {devices: {autoattachGraphicsDevice: false}}");
    let g = guest_size(&s, Some(&it));
    assert_eq!(g.vcpus, 4);
    let r = launcher_requests(&s, Some(&it), &defaults()).unwrap();
    // No page tables (no memory request), 240Mi + 4 × 8Mi + 8Mi IOThread, no video.
    assert_eq!(
        r.memory,
        8192.0 * MI + 240.0 * MI + 32.0 * MI + 8.0 * MI + LOG_MEMORY
    );
}

#[test]
fn dedicated_cpus_and_hugepages_move_the_guest_out_of_memory() {
    // Measured against KubeVirt's renderer: 4 dedicated vCPUs, 4Gi of 1Gi hugepages → memory
    // 420Mi (the overhead only), hugepages-1Gi 4Gi, 4 whole CPUs; the console log at its limits.
    let s = spec(
        "domain: {resources: {requests: {memory: 4Gi}}, memory: {hugepages: {pageSize: 1Gi}},
                  cpu: {cores: 4, dedicatedCpuPlacement: true}}",
    );
    let r = launcher_requests(&s, None, &defaults()).unwrap();
    assert_eq!(r.memory, 420.0 * MI + 1.0 + LOG_MEMORY_GUARANTEED);
    assert_eq!(r.get("hugepages-1Gi"), 4096.0 * MI);
    assert_eq!(r.cpu, 4.0 + LOG_CPU_GUARANTEED);
}

#[test]
fn an_isolated_emulator_thread_takes_one_more_cpu() {
    let s = spec(
        "domain: {resources: {requests: {memory: 1Gi}}, cpu: {cores: 2, dedicatedCpuPlacement: true, isolateEmulatorThread: true}}",
    );
    assert_eq!(
        launcher_requests(&s, None, &defaults()).unwrap().cpu,
        3.0 + LOG_CPU_GUARANTEED
    );
}

#[test]
fn every_launcher_takes_the_device_plugin_resources() {
    let s = spec("domain: {resources: {requests: {memory: 1Gi}}}");
    let r = launcher_requests(&s, None, &defaults()).unwrap();
    assert_eq!(r.get(KVM_DEVICE), 1.0);
    assert_eq!(r.get(TUN_DEVICE), 1.0);
    assert_eq!(
        r.get(VHOST_NET_DEVICE),
        1.0,
        "the default pod interface is virtio"
    );
    assert_eq!(r.get("ephemeral-storage"), 50_000_000.0);
    let e1000 = spec(
        "domain: {resources: {requests: {memory: 1Gi}}, devices: {interfaces: [{name: default, model: e1000, masquerade: {}}]}}",
    );
    assert_eq!(
        launcher_requests(&e1000, None, &defaults())
            .unwrap()
            .get(VHOST_NET_DEVICE),
        0.0
    );
}

#[test]
fn gpus_and_host_devices_request_their_resource_names_and_vfio_overhead() {
    let s = spec(
        "domain: {resources: {requests: {memory: 1Gi}}, devices: {gpus: [{name: g1, deviceName: nvidia.com/A100}],
                  hostDevices: [{name: h1, deviceName: intel.com/qat}, {name: h2, deviceName: intel.com/qat}]}}",
    );
    let r = launcher_requests(&s, None, &defaults()).unwrap();
    assert_eq!(r.get("nvidia.com/A100"), 1.0);
    assert_eq!(r.get("intel.com/qat"), 2.0);
    assert_eq!(
        r.memory,
        (1024.0 + 290.0 + 1024.0) * MI + LOG_MEMORY,
        "1Gi + 290Mi + 1Gi VFIO"
    );
}

#[test]
fn exec_probes_passt_and_arm64_add_their_overhead() {
    let base = "domain: {resources: {requests: {memory: 1Gi}}";
    let plain = launcher_requests(&spec(&format!("{base}}}")), None, &defaults())
        .unwrap()
        .memory;
    let probes = spec(&format!(
        "{base}}}\nlivenessProbe: {{exec: {{command: [x]}}}}\nreadinessProbe: {{exec: {{command: [x]}}}}"
    ));
    assert_eq!(
        launcher_requests(&probes, None, &defaults()).unwrap().memory - plain,
        120.0 * MI
    );
    let passt = spec(&format!(
        "{base}, devices: {{interfaces: [{{name: default, passt: {{}}}}]}}}}"
    ));
    assert_eq!(
        launcher_requests(&passt, None, &defaults()).unwrap().memory - plain,
        250.0 * MI
    );
    let arm = spec(&format!("{base}}}\narchitecture: arm64"));
    assert_eq!(
        launcher_requests(&arm, None, &defaults()).unwrap().memory - plain,
        128.0 * MI
    );
}

#[test]
fn no_memory_means_no_requests() {
    assert!(launcher_requests(&spec("domain: {cpu: {cores: 1}}"), None, &defaults()).is_none());
}

/// `pkg/defaults/defaults.go` `setDefaultResourceRequests` copies the CPU limit into the
/// missing request, `renderresources.go` `WithMemoryRequests` the memory limit, and
/// `types.go` `WantsToHaveQOSGuaranteed` then holds: +100Mi overhead, and the console log at
/// its limits. KubeVirt requests 2015m and 2444Mi + 60M for this VM.
#[test]
fn limits_without_requests_are_the_requests_and_make_the_pod_guaranteed() {
    let s = spec("domain: {resources: {limits: {cpu: '2', memory: 2Gi}}}");
    assert!(wants_guaranteed_qos(&s));
    let r = launcher_requests(&s, None, &defaults()).unwrap();
    assert!((r.cpu - 2.015).abs() < 1e-12, "{}", r.cpu);
    // 2Gi + 240Mi + 2 × 8Mi vCPUs + 8Mi IOThread + 32Mi video + 100Mi Guaranteed (no page
    // tables: the VMI requests no memory), and the 60M console log.
    assert_eq!(r.memory, (2048.0 + 396.0) * MI + LOG_MEMORY_GUARANTEED);
    assert_eq!((r.memory / MI).round(), 2501.0);
    // A CPU request below the limit: Burstable, nothing added.
    let burstable = spec("domain: {resources: {requests: {cpu: '1'}, limits: {cpu: '2', memory: 2Gi}}}");
    assert!(!wants_guaranteed_qos(&burstable));
    let r = launcher_requests(&burstable, None, &defaults()).unwrap();
    assert!((r.cpu - 1.0 - LOG_CPU).abs() < 1e-12, "{}", r.cpu);
    assert_eq!(r.memory, (2048.0 + 296.0) * MI + LOG_MEMORY);
}

/// `pkg/virt-controller/services/serialconsolelog.go`: the sidecar is off without a serial
/// console, with `logSerialConsole: false`, or when the KubeVirt CR disables it (unless the
/// VMI asks for it); `supportContainerResources` of type guest-console-log replaces its sizes.
#[test]
fn the_console_log_sidecar_follows_the_vmi_and_the_kubevirt_cr() {
    let plain = "domain: {resources: {requests: {memory: 1Gi}}";
    let memory =
        |yaml: &str, cluster: &ClusterConfig| launcher_requests(&spec(yaml), None, cluster).unwrap().memory;
    let with = memory(&format!("{plain}}}"), &defaults());
    for off in ["autoattachSerialConsole: false", "logSerialConsole: false"] {
        assert_eq!(
            with - memory(&format!("{plain}, devices: {{{off}}}}}"), &defaults()),
            LOG_MEMORY,
            "{off}"
        );
    }
    let kv = |configuration: &str| {
        let kv: crate::kubevirt::KubeVirt =
            serde_yaml::from_str(&format!("spec: {{configuration: {configuration}}}")).unwrap();
        ClusterConfig::from_crs(&[kv], &[])
    };
    let disabled = kv("{virtualMachineOptions: {disableSerialConsoleLog: {}}}");
    assert_eq!(with - memory(&format!("{plain}}}"), &disabled), LOG_MEMORY);
    assert_eq!(
        memory(
            &format!("{plain}, devices: {{logSerialConsole: true}}}}"),
            &disabled
        ),
        with,
        "the VMI's own setting wins over the cluster's"
    );
    let sized = kv(
        "{supportContainerResources: [{type: guest-console-log, resources: {requests: {cpu: 50m, memory: 100M}}}]}",
    );
    let r = launcher_requests(&spec(&format!("{plain}}}")), None, &sized).unwrap();
    assert_eq!(r.memory, with - LOG_MEMORY + 100_000_000.0);
    assert!((r.cpu - 0.1 - 0.05).abs() < 1e-12, "{}", r.cpu);
}

/// `renderresources.go` `WithSEV` / `WithTDX`: one `devices.kubevirt.io/sev` for SEV and
/// SEV-SNP guests, one `devices.kubevirt.io/tdx` for TDX.
#[test]
fn confidential_guests_request_their_device() {
    let r = |ls: &str| {
        launcher_requests(
            &spec(&format!(
                "domain: {{resources: {{requests: {{memory: 1Gi}}}}, launchSecurity: {ls}}}"
            )),
            None,
            &defaults(),
        )
        .unwrap()
    };
    assert_eq!(r("{sev: {}}").get(SEV_DEVICE), 1.0);
    assert_eq!(r("{snp: {}}").get(SEV_DEVICE), 1.0);
    assert_eq!(r("{tdx: {}}").get(SEV_DEVICE), 0.0);
    assert_eq!(r("{tdx: {}}").get(TDX_DEVICE), 1.0);
}

/// `pkg/network/vmispec/devices.go`: no interface and `autoattachPodInterface: false` means no
/// pod network, so neither tun nor vhost-net.
#[test]
fn without_a_pod_interface_there_is_no_tun_device() {
    let s = spec("domain: {resources: {requests: {memory: 1Gi}}, devices: {autoattachPodInterface: false}}");
    let r = launcher_requests(&s, None, &defaults()).unwrap();
    assert_eq!((r.get(TUN_DEVICE), r.get(VHOST_NET_DEVICE)), (0.0, 0.0));
}

/// `pkg/network/multus/nad.go` `NetworkToResource` and `NetAttachDefNamespacedName`: one of the
/// NAD's `k8s.v1.cni.cncf.io/resourceName` per Multus network, the NAD looked up in the VMI's
/// namespace unless `networkName` says `ns/name`; a NAD that is not known is listed, and said.
#[test]
fn multus_networks_request_the_resource_their_nad_names() {
    let nads: Vec<crate::kubevirt::NetworkAttachmentDefinition> = [
        "metadata: {name: sriov-a, namespace: prod, annotations: {k8s.v1.cni.cncf.io/resourceName: intel.com/sriov_a}}",
        "metadata: {name: sriov-b, namespace: infra, annotations: {k8s.v1.cni.cncf.io/resourceName: intel.com/sriov_b}}",
        "metadata: {name: plain, namespace: prod}",
    ]
    .iter()
    .map(|y| serde_yaml::from_str(y).unwrap())
    .collect();
    let s = spec(
        "domain: {resources: {requests: {memory: 1Gi}}}
networks:
- {name: default, pod: {}}
- {name: a1, multus: {networkName: sriov-a}}
- {name: a2, multus: {networkName: prod/sriov-a}}
- {name: b, multus: {networkName: infra/sriov-b}}
- {name: p, multus: {networkName: plain}}
- {name: gone, multus: {networkName: missing}}",
    );
    let r = network_resources(&s, "prod", &nads);
    assert_eq!(r.requests.get("intel.com/sriov_a"), 2.0);
    assert_eq!(r.requests.get("intel.com/sriov_b"), 1.0);
    assert_eq!(r.requests.extended.len(), 2, "{r:?}");
    assert_eq!(r.unknown, vec!["prod/missing".to_string()]);
    let note = unknown_network_resources_note(&r.unknown, "in the input").unwrap();
    assert!(
        note.contains("NetworkAttachmentDefinition prod/missing is not in the input"),
        "{note}"
    );
    assert_eq!(unknown_network_resources_note(&[], "in the input"), None);

    // Through the snapshot: the launcher's requests carry them.
    let vmi: crate::kubevirt::VirtualMachineInstance = serde_yaml::from_value(
        serde_yaml::to_value(serde_json::json!({
            "metadata": {"name": "vm", "namespace": "prod"},
            "spec": serde_json::to_value(&s).unwrap(),
        }))
        .unwrap(),
    )
    .unwrap();
    let snapshot = crate::snapshot::ClusterSnapshot {
        network_attachment_definitions: nads,
        ..Default::default()
    };
    let r = vmi_launcher_requests(&snapshot, &vmi, &defaults()).unwrap();
    assert_eq!(r.get("intel.com/sriov_a"), 2.0);
}
