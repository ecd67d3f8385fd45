//! `status.machine.type`: virt-handler copies the machine type libvirt gave the running
//! domain into the VMI (`updateMachineType`, `pkg/virt-handler/vm.go`). libvirt expands an
//! alias (`q35`, `virt`) to the newest versioned machine type of that family the node's
//! QEMU has (`pc-q35-rhel9.6.0`). The simulator reads what the node has from its
//! `machine-type.node.kubevirt.io/<m>` labels (the node-labeller writes every machine type
//! libvirt reports, aliases included). A migration target pod then selects the expanded
//! name (`template.go` prefers `status.machine.type`), so a VM started on a newer node can
//! only move to nodes that have that exact machine type.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::launcher::MACHINE_TYPE_PREFIX;

/// The versioned names of an alias's family: `q35` → `pc-q35-…`, others `<alias>-…`
/// (`virt-rhel9.6.0`, `s390-ccw-virtio-rhel9.6.0`).
fn in_family(alias: &str, name: &str) -> bool {
    let prefix = if alias == "q35" {
        "pc-q35-".to_string()
    } else {
        format!("{alias}-")
    };
    name.strip_prefix(&prefix).is_some_and(|rest| !rest.is_empty())
}

/// Compares machine type names with their digit runs as numbers (`rhel9.10.0` after
/// `rhel9.6.0`).
fn version_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => x
                .trim_start_matches('0')
                .len()
                .cmp(&y.trim_start_matches('0').len())
                .then_with(|| x.trim_start_matches('0').cmp(y.trim_start_matches('0'))),
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

/// The machine type a domain asked as `requested` runs with on a node with `labels`: the
/// newest of the family's versioned names the node has, else `requested` itself (a node
/// that only knows the alias, or a versioned name asked for directly).
pub fn expanded(requested: &str, labels: &BTreeMap<String, String>) -> String {
    labels
        .keys()
        .filter_map(|k| k.strip_prefix(MACHINE_TYPE_PREFIX))
        .filter(|m| in_family(requested, m))
        .max_by(|a, b| version_cmp(a, b))
        .unwrap_or(requested)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(types: &[&str]) -> BTreeMap<String, String> {
        types
            .iter()
            .map(|t| (format!("{MACHINE_TYPE_PREFIX}{t}"), "true".to_string()))
            .collect()
    }

    #[test]
    fn the_newest_of_the_family_on_the_node() {
        let n = node(&[
            "q35",
            "pc-q35-rhel9.4.0",
            "pc-q35-rhel9.6.0",
            "pc-i440fx-rhel7.6.0",
        ]);
        assert_eq!(expanded("q35", &n), "pc-q35-rhel9.6.0");
        // Numbers compare as numbers.
        let n = node(&["q35", "pc-q35-rhel9.10.0", "pc-q35-rhel9.6.0"]);
        assert_eq!(expanded("q35", &n), "pc-q35-rhel9.10.0");
        // Only the alias: kept.
        assert_eq!(expanded("q35", &node(&["q35"])), "q35");
        // A versioned name asked for is kept.
        assert_eq!(expanded("pc-q35-rhel9.4.0", &n), "pc-q35-rhel9.4.0");
        // arm64.
        assert_eq!(
            expanded("virt", &node(&["virt", "virt-rhel9.6.0"])),
            "virt-rhel9.6.0"
        );
        assert_eq!(expanded("virt", &node(&["virt"])), "virt");
    }
}
