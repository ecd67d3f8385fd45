//! Probes: liveness and readiness present and sane (seed: "Detecting Broken State").

use super::super::context::AuditContext;
use super::super::finding::{Category, Severity};
use super::super::rule::Rule;
use super::super::subject::Subject;
use super::Out;
use crate::kubevirt::{Probe, VirtualMachineInstanceSpec};

/// How long a guest is given to boot and start its service before a liveness probe may kill
/// it: enough for a small Linux cloud image on a busy node. Slower guests (Windows, big
/// databases) need more; the guide's own example waits 120 s before the first probe.
pub(crate) const BOOT_ALLOWANCE_SECONDS: i64 = 60;

/// Kubernetes' defaults for a probe's unset (or zero) timing fields: the API server fills in
/// 0, 3 and 10, and KubeVirt copies the probe onto the launcher pod as it is.
const DEFAULT_INITIAL_DELAY_SECONDS: i32 = 0;
const DEFAULT_FAILURE_THRESHOLD: i32 = 3;
const DEFAULT_PERIOD_SECONDS: i32 = 10;

pub(crate) static LIVENESS_MISSING: Rule = Rule {
    id: "probes-liveness-missing",
    category: Category::Probes,
    severity: Severity::Warning,
    summary: "no livenessProbe: a hung guest is never detected",
    explanation: "Without a liveness probe KubeVirt only notices a VM that has crashed, not one \
whose service hangs. A failing liveness probe stops the VMI and the run strategy restarts it.\n\n\
Fix: add a livenessProbe (tcpSocket, httpGet, exec or guestAgentPing) to the VMI spec: \
spec.template.spec.livenessProbe in a VM.",
};

pub(crate) static READINESS_MISSING: Rule = Rule {
    id: "probes-readiness-missing",
    category: Category::Probes,
    severity: Severity::Warning,
    summary: "no readinessProbe: traffic reaches the VM before its service is up",
    explanation: "Without a readiness probe the VMI is Ready as soon as the guest runs, and \
Services send it traffic before the application listens.\n\nFix: add a readinessProbe to the \
VMI spec: spec.template.spec.readinessProbe in a VM.",
};

pub(crate) static INVALID: Rule = Rule {
    id: "probes-invalid",
    category: Category::Probes,
    severity: Severity::Error,
    summary: "a probe without exactly one handler, or a network probe without the pod network",
    explanation: "A KubeVirt probe needs exactly one of httpGet, tcpSocket, exec or guestAgentPing. \
httpGet and tcpSocket probe the pod IP, so they need the pod network attached; the VMI admitter \
rejects them otherwise.\n\nFix: keep one handler; use guestAgentPing or exec without a pod network.",
};

pub(crate) static LIVENESS_TOO_EARLY: Rule = Rule {
    id: "probes-liveness-too-early",
    category: Category::Probes,
    severity: Severity::Warning,
    summary: "livenessProbe can kill the guest before it has had time to boot",
    explanation: "A liveness probe that fails while the guest OS is still booting kills the VM, \
which then restarts and is killed again. The earliest a liveness probe can kill the guest is \
initialDelaySeconds + failureThreshold × periodSeconds after start (Kubernetes' defaults: 0, 3 \
and 10, so 30 s for a probe that sets none of them): the kubelet kills the launcher's compute \
container only after failureThreshold failures in a row, one every periodSeconds, and the VMI \
fails with it. (KubeVirt adds 10 s to \
initialDelaySeconds and the kill comes on the last failure, (failureThreshold - 1) periods after \
the first probe; with the default period of 10 s that is the same sum.) This rule flags a probe \
whose earliest kill is below a boot allowance of 60 s, enough for a small Linux cloud image on a \
busy node; the guide's example waits 120 s. guestAgentPing probes count too: the guest agent \
answers only once the guest has booted.\n\n\
Fix: raise livenessProbe.initialDelaySeconds (or failureThreshold × periodSeconds) above the \
guest's boot time.",
};

pub(crate) static TIMEOUT_EXCEEDS_PERIOD: Rule = Rule {
    id: "probes-timeout-exceeds-period",
    category: Category::Probes,
    severity: Severity::Warning,
    summary: "a probe's timeoutSeconds is longer than its periodSeconds",
    explanation: "When a probe may take longer than the interval between probes, checks overlap \
and a slow guest is judged on stale results.\n\nFix: make timeoutSeconds shorter than \
periodSeconds (defaults: 1 and 10).",
};

fn handlers(p: &Probe) -> Vec<&'static str> {
    [
        (p.http_get.is_some(), "httpGet"),
        (p.tcp_socket.is_some(), "tcpSocket"),
        (p.exec.is_some(), "exec"),
        (p.guest_agent_ping.is_some(), "guestAgentPing"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect()
}

/// Whether the pod network is attached: it is by default, when no networks are listed.
fn has_pod_network(spec: &VirtualMachineInstanceSpec) -> bool {
    spec.networks.is_empty() || spec.networks.iter().any(|n| n.pod.is_some())
}

fn check_probe(which: &str, probe: &Probe, spec: &VirtualMachineInstanceSpec, out: &mut Out<'_>) {
    let set = handlers(probe);
    if set.len() != 1 {
        let what = if set.is_empty() {
            "no handler".to_string()
        } else {
            set.join(" and ")
        };
        out.emit(
            &INVALID,
            format!(
                "{which} has {what}; exactly one of httpGet, tcpSocket, exec, guestAgentPing is required"
            ),
            "keep exactly one probe handler",
        );
        return;
    }
    if matches!(set[0], "httpGet" | "tcpSocket") && !has_pod_network(spec) {
        out.emit(
            &INVALID,
            format!(
                "{which}.{} probes the pod IP but the VM has no pod network",
                set[0]
            ),
            "use guestAgentPing or exec, or attach the pod network",
        );
    }
    let period = probe.period_seconds.unwrap_or(10);
    let timeout = probe.timeout_seconds.unwrap_or(1);
    if timeout > period {
        out.emit(
            &TIMEOUT_EXCEEDS_PERIOD,
            format!("{which}.timeoutSeconds is {timeout}, longer than periodSeconds {period}"),
            "make timeoutSeconds shorter than periodSeconds",
        );
    }
}

/// When a liveness probe can first kill the guest, with the fields it was computed from.
struct EarliestKill {
    initial_delay: i32,
    failure_threshold: i32,
    period: i32,
}

impl EarliestKill {
    /// Reads the probe's timing; zero counts as unset because the API server defaults zeros too.
    fn of(probe: &Probe) -> Self {
        let or_default = |v: Option<i32>, default| v.filter(|v| *v > 0).unwrap_or(default);
        Self {
            initial_delay: or_default(probe.initial_delay_seconds, DEFAULT_INITIAL_DELAY_SECONDS),
            failure_threshold: or_default(probe.failure_threshold, DEFAULT_FAILURE_THRESHOLD),
            period: or_default(probe.period_seconds, DEFAULT_PERIOD_SECONDS),
        }
    }

    /// Seconds after start; in i64 so that large manifest values cannot overflow.
    fn seconds(&self) -> i64 {
        i64::from(self.initial_delay) + i64::from(self.failure_threshold) * i64::from(self.period)
    }

    /// The sum spelled out, for the finding.
    fn arithmetic(&self) -> String {
        format!(
            "initialDelaySeconds {} + failureThreshold {} × periodSeconds {}",
            self.initial_delay, self.failure_threshold, self.period
        )
    }
}

/// Flags a liveness probe that can kill the guest before the boot allowance has passed. Every
/// handler counts: guestAgentPing fails until the guest has booted and started its agent.
fn check_liveness_timing(probe: &Probe, out: &mut Out<'_>) {
    let kill = EarliestKill::of(probe);
    let seconds = kill.seconds();
    if seconds < BOOT_ALLOWANCE_SECONDS {
        out.emit(
            &LIVENESS_TOO_EARLY,
            format!(
                "livenessProbe can restart the guest {seconds} s after start ({}), below the {BOOT_ALLOWANCE_SECONDS} s boot allowance",
                kill.arithmetic()
            ),
            "raise livenessProbe.initialDelaySeconds above the guest's boot time (the guide uses 120)",
        );
    }
}

pub(crate) fn check(_ctx: &AuditContext<'_>, subject: &Subject<'_>, out: &mut Out<'_>) {
    let spec = subject.template_spec();
    match &spec.liveness_probe {
        None => out.emit(
            &LIVENESS_MISSING,
            format!("{} is not set", subject.spec_path("livenessProbe")),
            "add a livenessProbe (for example tcpSocket on the service port, initialDelaySeconds: 120)",
        ),
        Some(probe) => {
            check_probe("livenessProbe", probe, spec, out);
            check_liveness_timing(probe, out);
        }
    }
    match &spec.readiness_probe {
        None => out.emit(
            &READINESS_MISSING,
            format!("{} is not set", subject.spec_path("readinessProbe")),
            "add a readinessProbe that checks the guest's service",
        ),
        Some(probe) => check_probe("readinessProbe", probe, spec, out),
    }
}
