//! The TSC-frequency selector of a VMI that needs an invariant TSC
//! (`pkg/virt-controller/watch/topology/tsc.go`, rendered by
//! `pkg/virt-controller/services/nodeselectorrenderer.go`): a guest with CPU feature `invtsc`
//! at policy `require` or `force`, or with Hyper-V `reenlightenment` enabled, may only run
//! where the TSC runs at the frequency virt-controller chose for it, which it writes to
//! `status.topologyHints.tscFrequency`. The nodes that can serve a frequency carry
//! `scheduling.node.kubevirt.io/tsc-frequency-<Hz>`.

use crate::kubevirt::VirtualMachineInstance;

/// The prefix of the label virt-controller writes for each frequency a node can serve.
pub const TSC_FREQUENCY_PREFIX: &str = "scheduling.node.kubevirt.io/tsc-frequency-";

/// Whether the guest needs a fixed TSC frequency (`GetTscFrequencyRequirement` is not
/// `NotRequired`): `invtsc` required or forced, or reenlightenment explicitly enabled.
#[must_use]
pub fn needs_tsc_frequency(vmi: &VirtualMachineInstance) -> bool {
    let domain = &vmi.spec.domain;
    let invtsc = domain.cpu.as_ref().is_some_and(|c| {
        c.features
            .iter()
            .any(|f| f.name == "invtsc" && matches!(f.policy.as_deref(), Some("require" | "force")))
    });
    let reenlightenment = domain
        .features
        .as_ref()
        .and_then(|f| f.pointer("/hyperv/reenlightenment/enabled"))
        .and_then(serde_json::Value::as_bool)
        == Some(true);
    invtsc || reenlightenment
}

/// The selector key, when the guest needs a TSC frequency and the status holds one above 0
/// (`IsManualTSCFrequencyRequired`); without hints KubeVirt adds nothing.
#[must_use]
pub fn tsc_frequency_label(vmi: &VirtualMachineInstance) -> Option<(String, i64)> {
    let hz = vmi
        .status
        .as_ref()?
        .topology_hints
        .as_ref()?
        .tsc_frequency
        .filter(|hz| *hz > 0)?;
    needs_tsc_frequency(vmi).then(|| (format!("{TSC_FREQUENCY_PREFIX}{hz}"), hz))
}
