//! The node-labeller labels of the benchmarks' two CPU generations, shared by the examples
//! (`#[path]`-included: a folder without `main.rs` is not an example of its own).

/// The labels of node `n`: even nodes are Intel Skylake, odd ones AMD Milan, each with its
/// vendor, host model and a required feature, as KubeVirt's node-labeller writes them.
pub fn cpu_labels(n: usize) -> &'static str {
    if n.is_multiple_of(2) {
        "cpu-vendor.node.kubevirt.io/Intel: 'true', host-model-cpu.node.kubevirt.io/Skylake-Client-IBRS: 'true', \
cpu-model-migration.node.kubevirt.io/Skylake-Client-IBRS: 'true', host-model-required-features.node.kubevirt.io/avx512f: 'true', \
cpu-feature.node.kubevirt.io/avx512f: 'true'"
    } else {
        "cpu-vendor.node.kubevirt.io/AMD: 'true', host-model-cpu.node.kubevirt.io/EPYC-Milan: 'true', \
cpu-model-migration.node.kubevirt.io/EPYC-Milan: 'true', host-model-required-features.node.kubevirt.io/svm: 'true', \
cpu-feature.node.kubevirt.io/svm: 'true'"
    }
}
