//! Probes: liveness and readiness present and sane (seed: "Detecting Broken State").

use super::super::context::AuditContext;
use super::super::finding::{Category, Severity};
use super::super::rule::Rule;
use super::super::subject::Subject;
use super::Out;
use crate::kubevirt::{Probe, VirtualMachineInstanceSpec};

/// Liveness probes that start earlier than this may kill a guest that is still booting.
const MIN_LIVENESS_DELAY_SECONDS: i32 = 30;

pub(crate) static LIVENESS_MISSING: Rule = Rule {
    id: "probes-liveness-missing",
    category: Category::Probes,
    severity: Severity::Warning,
    summary: "no livenessProbe: a hung guest is never detected",
    explanation: "Without a liveness probe KubeVirt only notices a VM that has crashed, not one \
whose service hangs. A failing liveness probe stops the VMI and the run strategy restarts it.\n\n\
Fix: add spec.template.spec.livenessProbe (tcpSocket, httpGet, exec or guestAgentPing).",
};

pub(crate) static READINESS_MISSING: Rule = Rule {
    id: "probes-readiness-missing",
    category: Category::Probes,
    severity: Severity::Warning,
    summary: "no readinessProbe: traffic reaches the VM before its service is up",
    explanation: "Without a readiness probe the VMI is Ready as soon as the guest runs, and \
Services send it traffic before the application listens.\n\nFix: add \
spec.template.spec.readinessProbe.",
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
    summary: "livenessProbe starts before a guest can boot",
    explanation: "A liveness probe that fails while the guest OS is still booting kills the VM, \
which then restarts and is killed again. The guide's example waits 120 s; this rule flags less \
than 30 s (KubeVirt adds 10 s of its own).\n\nFix: set livenessProbe.initialDelaySeconds to more \
than the guest's boot time.",
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

pub(crate) fn check(_ctx: &AuditContext<'_>, subject: &Subject<'_>, out: &mut Out<'_>) {
    let spec = subject.template_spec();
    match &spec.liveness_probe {
        None => out.emit(
            &LIVENESS_MISSING,
            "spec.template.spec.livenessProbe is not set",
            "add a livenessProbe (for example tcpSocket on the service port, initialDelaySeconds: 120)",
        ),
        Some(probe) => {
            check_probe("livenessProbe", probe, spec, out);
            let delay = probe.initial_delay_seconds.unwrap_or(0);
            if delay < MIN_LIVENESS_DELAY_SECONDS && probe.guest_agent_ping.is_none() {
                out.emit(
                    &LIVENESS_TOO_EARLY,
                    format!("livenessProbe.initialDelaySeconds is {delay}: the probe may kill the guest while it boots"),
                    "set livenessProbe.initialDelaySeconds above the guest's boot time (the guide uses 120)",
                );
            }
        }
    }
    match &spec.readiness_probe {
        None => out.emit(
            &READINESS_MISSING,
            "spec.template.spec.readinessProbe is not set",
            "add a readinessProbe that checks the guest's service",
        ),
        Some(probe) => check_probe("readinessProbe", probe, spec, out),
    }
}
