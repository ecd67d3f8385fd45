//! KubeVirt's common instancetypes (the `VirtualMachineClusterInstancetype`s that
//! kubevirt/common-instancetypes publishes and virt-operator deploys), so that file mode can size
//! a VM that names one, such as `u1.large`, without the definition among the inputs.
//!
//! Facts from the release [`RELEASE`] (its `common-clusterinstancetypes-bundle.yaml`), reduced to
//! what [`InstancetypeSpec`] models: guest vCPUs, guest memory, dedicatedCPUPlacement, hugepages
//! and memory overcommit. Not kept, because nothing here reads them: isolateEmulatorThread,
//! maxSockets, NUMA, realtime and ioThreadsPolicy.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{InstancetypeCpu, InstancetypeMemory, InstancetypeSpec};

/// The common-instancetypes release the table describes.
pub const RELEASE: &str = "v1.7.0";

/// One instancetype: name, vCPUs, memory, dedicated CPUs, hugepage size, overcommit percent.
struct Row {
    name: &'static str,
    vcpus: u32,
    memory: &'static str,
    dedicated_cpus: bool,
    hugepages: Option<&'static str>,
    overcommit_percent: Option<u32>,
}

const fn row(
    name: &'static str,
    vcpus: u32,
    memory: &'static str,
    dedicated_cpus: bool,
    hugepages: Option<&'static str>,
    overcommit_percent: Option<u32>,
) -> Row {
    Row {
        name,
        vcpus,
        memory,
        dedicated_cpus,
        hugepages,
        overcommit_percent,
    }
}

/// Every instancetype of the release, by name.
const ROWS: &[Row] = &[
    row("cx1.2xlarge", 8, "16Gi", true, Some("2Mi"), None),
    row("cx1.2xlarge1gi", 8, "16Gi", true, Some("1Gi"), None),
    row("cx1.4xlarge", 16, "32Gi", true, Some("2Mi"), None),
    row("cx1.4xlarge1gi", 16, "32Gi", true, Some("1Gi"), None),
    row("cx1.8xlarge", 32, "64Gi", true, Some("2Mi"), None),
    row("cx1.8xlarge1gi", 32, "64Gi", true, Some("1Gi"), None),
    row("cx1.large", 2, "4Gi", true, Some("2Mi"), None),
    row("cx1.large1gi", 2, "4Gi", true, Some("1Gi"), None),
    row("cx1.medium", 1, "2Gi", true, Some("2Mi"), None),
    row("cx1.medium1gi", 1, "2Gi", true, Some("1Gi"), None),
    row("cx1.xlarge", 4, "8Gi", true, Some("2Mi"), None),
    row("cx1.xlarge1gi", 4, "8Gi", true, Some("1Gi"), None),
    row("d1.2xlarge", 8, "32Gi", true, None, None),
    row("d1.2xmedium", 2, "4Gi", true, None, None),
    row("d1.4xlarge", 16, "64Gi", true, None, None),
    row("d1.8xlarge", 32, "128Gi", true, None, None),
    row("d1.large", 2, "8Gi", true, None, None),
    row("d1.medium", 1, "4Gi", true, None, None),
    row("d1.micro", 1, "1Gi", true, None, None),
    row("d1.nano", 1, "512Mi", true, None, None),
    row("d1.small", 1, "2Gi", true, None, None),
    row("d1.xlarge", 4, "16Gi", true, None, None),
    row("m1.2xlarge", 8, "64Gi", false, Some("2Mi"), None),
    row("m1.2xlarge1gi", 8, "64Gi", false, Some("1Gi"), None),
    row("m1.4xlarge", 16, "128Gi", false, Some("2Mi"), None),
    row("m1.4xlarge1gi", 16, "128Gi", false, Some("1Gi"), None),
    row("m1.8xlarge", 32, "256Gi", false, Some("2Mi"), None),
    row("m1.8xlarge1gi", 32, "256Gi", false, Some("1Gi"), None),
    row("m1.large", 2, "16Gi", false, Some("2Mi"), None),
    row("m1.large1gi", 2, "16Gi", false, Some("1Gi"), None),
    row("m1.xlarge", 4, "32Gi", false, Some("2Mi"), None),
    row("m1.xlarge1gi", 4, "32Gi", false, Some("1Gi"), None),
    row("n1.2xlarge", 16, "32Gi", true, Some("1Gi"), None),
    row("n1.4xlarge", 32, "64Gi", true, Some("1Gi"), None),
    row("n1.8xlarge", 64, "128Gi", true, Some("1Gi"), None),
    row("n1.large", 4, "8Gi", true, Some("1Gi"), None),
    row("n1.medium", 4, "4Gi", true, Some("1Gi"), None),
    row("n1.xlarge", 8, "16Gi", true, Some("1Gi"), None),
    row("o1.2xlarge", 8, "32Gi", false, None, Some(50)),
    row("o1.4xlarge", 16, "64Gi", false, None, Some(50)),
    row("o1.8xlarge", 32, "128Gi", false, None, Some(50)),
    row("o1.large", 2, "8Gi", false, None, Some(50)),
    row("o1.medium", 1, "4Gi", false, None, Some(50)),
    row("o1.micro", 1, "1Gi", false, None, Some(50)),
    row("o1.nano", 1, "512Mi", false, None, Some(50)),
    row("o1.small", 1, "2Gi", false, None, Some(50)),
    row("o1.xlarge", 4, "16Gi", false, None, Some(50)),
    row("rt1.2xlarge", 8, "32Gi", true, Some("1Gi"), None),
    row("rt1.4xlarge", 16, "64Gi", true, Some("1Gi"), None),
    row("rt1.8xlarge", 32, "128Gi", true, Some("1Gi"), None),
    row("rt1.large", 2, "8Gi", true, Some("1Gi"), None),
    row("rt1.medium", 1, "4Gi", true, Some("1Gi"), None),
    row("rt1.micro", 1, "1Gi", true, Some("1Gi"), None),
    row("rt1.small", 1, "2Gi", true, Some("1Gi"), None),
    row("rt1.xlarge", 4, "16Gi", true, Some("1Gi"), None),
    row("u1.2xlarge", 8, "32Gi", false, None, None),
    row("u1.2xmedium", 2, "4Gi", false, None, None),
    row("u1.4xlarge", 16, "64Gi", false, None, None),
    row("u1.8xlarge", 32, "128Gi", false, None, None),
    row("u1.large", 2, "8Gi", false, None, None),
    row("u1.medium", 1, "4Gi", false, None, None),
    row("u1.micro", 1, "1Gi", false, None, None),
    row("u1.nano", 1, "512Mi", false, None, None),
    row("u1.small", 1, "2Gi", false, None, None),
    row("u1.xlarge", 4, "16Gi", false, None, None),
];

impl Row {
    /// The spec as it reads from the bundle's YAML.
    fn spec(&self) -> InstancetypeSpec {
        InstancetypeSpec {
            cpu: InstancetypeCpu {
                guest: self.vcpus,
                dedicated_cpu_placement: self.dedicated_cpus.then_some(true),
            },
            memory: InstancetypeMemory {
                guest: Some(Quantity(self.memory.to_string())),
                overcommit_percent: self.overcommit_percent,
                hugepages: self.hugepages.map(|size| serde_json::json!({ "pageSize": size })),
            },
        }
    }
}

static SPECS: LazyLock<BTreeMap<&'static str, InstancetypeSpec>> =
    LazyLock::new(|| ROWS.iter().map(|r| (r.name, r.spec())).collect());

/// The common cluster instancetype `name` of [`RELEASE`], if there is one.
#[must_use]
pub fn common_cluster_instancetype(name: &str) -> Option<&'static InstancetypeSpec> {
    SPECS.get(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_release() {
        let large = common_cluster_instancetype("u1.large").unwrap();
        assert_eq!(large.cpu.guest, 2);
        assert_eq!(large.memory.guest, Some(Quantity("8Gi".into())));
        assert_eq!(large.cpu.dedicated_cpu_placement, None);
        let cx = common_cluster_instancetype("cx1.medium1gi").unwrap();
        assert_eq!((cx.cpu.guest, cx.cpu.dedicated_cpu_placement), (1, Some(true)));
        assert_eq!(cx.memory.hugepages, Some(serde_json::json!({"pageSize": "1Gi"})));
        let o1 = common_cluster_instancetype("o1.nano").unwrap();
        assert_eq!(o1.memory.overcommit_percent, Some(50));
        assert_eq!(common_cluster_instancetype("u1.huge"), None);
    }

    #[test]
    fn names_are_unique_and_the_table_is_complete() {
        assert_eq!(SPECS.len(), ROWS.len());
        assert_eq!(ROWS.len(), 65, "the release has 65 cluster instancetypes");
    }
}
