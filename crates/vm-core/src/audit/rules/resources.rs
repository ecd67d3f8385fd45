//! Resources: every VM sized by requests and limits, or by an instancetype (seed: "Common
//! Practices"); and what KubeVirt rejects when the two are mixed.

use super::super::context::{AuditContext, InstancetypeLookup};
use super::super::finding::{Category, Severity};
use super::super::rule::Rule;
use super::super::subject::Subject;
use super::Out;
use crate::kubevirt::VirtualMachineInstanceSpec;
use crate::quantity::{format_bytes, parse_quantity};

pub(crate) static MEMORY_MISSING: Rule = Rule {
    id: "resources-memory-missing",
    category: Category::Resources,
    severity: Severity::Error,
    summary: "no memory size: no requests.memory, memory.guest or instancetype",
    explanation: "KubeVirt needs to know the guest's memory: spec.domain.resources.requests.memory, \
spec.domain.memory.guest, or an instancetype. Without one the VMI is rejected, and the scheduler \
could not reserve room for it anyway.\n\nFix: set domain.resources.requests.memory (and limits) \
in the VMI spec (spec.template.spec.domain in a VM), or spec.instancetype.",
};

pub(crate) static CPU_MISSING: Rule = Rule {
    id: "resources-cpu-missing",
    category: Category::Resources,
    severity: Severity::Warning,
    summary: "no CPU size: no requests.cpu, limits.cpu, cpu topology or instancetype",
    explanation: "Without CPU requests, limits or topology the guest gets one vCPU and its launcher \
pod requests a tenth of a core, so the scheduler packs such VMs tightly and they compete for CPU \
under load.\n\nFix: set domain.resources.requests.cpu (and limits) in the VMI spec \
(spec.template.spec.domain in a VM), or use an instancetype.",
};

pub(crate) static LIMITS_MISSING: Rule = Rule {
    id: "resources-limits-missing",
    category: Category::Resources,
    severity: Severity::Info,
    summary: "requests without limits",
    explanation: "The best-practice guide sets both requests and limits. Without limits the VM's \
pod may use more than it reserved on a busy node, and it is the first to be evicted under \
pressure.\n\nFix: add domain.resources.limits for cpu and memory to the VMI spec \
(spec.template.spec.domain in a VM).",
};

pub(crate) static INSTANCETYPE_NOT_FOUND: Rule = Rule {
    id: "resources-instancetype-not-found",
    category: Category::Resources,
    severity: Severity::Warning,
    summary: "spec.instancetype refers to an instancetype that does not exist",
    explanation: "A VM whose instancetype does not exist cannot start. An empty kind means \
VirtualMachineClusterInstancetype. In file mode the instancetype must be among the inputs, or \
be one of KubeVirt's common cluster instancetypes (u1.large and the like), whose sizes are built \
in.\n\nFix: create the instancetype, or correct spec.instancetype.name and kind.",
};

pub(crate) static INSTANCETYPE_CONFLICT: Rule = Rule {
    id: "resources-instancetype-conflict",
    category: Category::Resources,
    severity: Severity::Error,
    summary: "instancetype and explicit CPU or memory sizing together: KubeVirt rejects the VM",
    explanation: "A VM that uses an instancetype must not also set domain.cpu topology, \
resources.requests/limits for cpu or memory, or memory.guest; the webhook rejects it with \"VM \
field(s) ... conflicts with selected instance type\".\n\nFix: remove the explicit sizing, or drop \
the instancetype.",
};

pub(crate) static MEMORY_OVERCOMMITTED: Rule = Rule {
    id: "resources-memory-overcommitted",
    category: Category::Resources,
    severity: Severity::Info,
    summary: "memory.guest is larger than requests.memory (explicit overcommit)",
    explanation: "The guest sees more memory than its pod reserves. If the node runs short the pod \
can be OOM-killed, which kills the VM.\n\nFix: make requests.memory at least memory.guest, unless \
the overcommit is deliberate.",
};

fn has_resource(spec: &VirtualMachineInstanceSpec, name: &str) -> bool {
    spec.domain
        .resources
        .as_ref()
        .is_some_and(|r| r.requests.contains_key(name) || r.limits.contains_key(name))
}

/// The explicit sizing fields that conflict with an instancetype.
fn conflicting_fields(spec: &VirtualMachineInstanceSpec) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if let Some(cpu) = &spec.domain.cpu {
        if cpu.cores.is_some() || cpu.sockets.is_some() || cpu.threads.is_some() {
            fields.push("domain.cpu topology");
        }
        if cpu.dedicated_cpu_placement.is_some() {
            fields.push("domain.cpu.dedicatedCpuPlacement");
        }
    }
    if has_resource(spec, "cpu") {
        fields.push("domain.resources cpu");
    }
    if has_resource(spec, "memory") {
        fields.push("domain.resources memory");
    }
    if spec.domain.memory.as_ref().is_some_and(|m| m.guest.is_some()) {
        fields.push("domain.memory.guest");
    }
    fields
}

pub(crate) fn check(ctx: &AuditContext<'_>, subject: &Subject<'_>, out: &mut Out<'_>) {
    let spec = subject.template_spec();
    let matcher = subject.vm_spec.and_then(|s| s.instancetype.as_ref());
    match ctx.instancetype(subject.namespace(), matcher) {
        InstancetypeLookup::Missing(kind, name) => out.emit(
            &INSTANCETYPE_NOT_FOUND,
            format!(
                "spec.instancetype names {kind} {name}, which is not {}",
                ctx.snapshot.where_looked()
            ),
            format!("create {kind} {name}, or fix spec.instancetype"),
        ),
        InstancetypeLookup::Found(_) | InstancetypeLookup::Common(..) | InstancetypeLookup::NotUsed => {}
    }
    if let Some(m) = matcher {
        let fields = conflicting_fields(spec);
        if !fields.is_empty() {
            out.emit(
                &INSTANCETYPE_CONFLICT,
                format!(
                    "spec.instancetype {} is set together with {}",
                    m.name,
                    fields.join(", ")
                ),
                format!("remove the explicit sizing from {}", subject.spec_path("domain")),
            );
        }
        return;
    }
    let guest = spec.domain.memory.as_ref().and_then(|m| m.guest.as_ref());
    let has_hugepages = spec.domain.memory.as_ref().is_some_and(|m| m.hugepages.is_some());
    if !has_resource(spec, "memory") && guest.is_none() && !has_hugepages {
        out.emit(
            &MEMORY_MISSING,
            format!(
                "{} has no resources.requests.memory, memory.guest or instancetype",
                subject.spec_path("domain")
            ),
            "set domain.resources.requests.memory and limits.memory (or spec.instancetype)",
        );
    }
    let has_topology = spec
        .domain
        .cpu
        .as_ref()
        .is_some_and(|c| c.cores.is_some() || c.sockets.is_some() || c.threads.is_some());
    if !has_resource(spec, "cpu") && !has_topology {
        out.emit(
            &CPU_MISSING,
            format!(
                "{} has no resources cpu, cpu topology or instancetype: 1 vCPU, 100m requested",
                subject.spec_path("domain")
            ),
            "set domain.resources.requests.cpu and limits.cpu (or spec.instancetype)",
        );
    }
    if let Some(res) = &spec.domain.resources
        && !res.requests.is_empty()
        && res.limits.is_empty()
    {
        let names: Vec<&str> = res.requests.keys().map(String::as_str).collect();
        out.emit(
            &LIMITS_MISSING,
            format!(
                "domain.resources.requests sets {} but domain.resources.limits is empty",
                names.join(", ")
            ),
            "add domain.resources.limits for the same resources",
        );
    }
    let request = spec
        .domain
        .resources
        .as_ref()
        .and_then(|r| r.requests.get("memory"));
    if let (Some(guest), Some(request)) = (guest, request)
        && let (Ok(g), Ok(r)) = (parse_quantity(guest), parse_quantity(request))
        && g > r
    {
        out.emit(
            &MEMORY_OVERCOMMITTED,
            format!(
                "domain.memory.guest is {} but domain.resources.requests.memory is {}",
                format_bytes(g),
                format_bytes(r)
            ),
            "raise requests.memory to memory.guest unless the overcommit is deliberate",
        );
    }
}
