//! The resolved values against KubeVirt's: run strategies, eviction strategies, the
//! cluster configuration from the CRs, and which MigrationPolicy applies.

use std::collections::BTreeMap;

use super::*;
use crate::kubevirt::{HyperConverged, KubeVirt, MigrationPolicy, VirtualMachineSpec};

fn vm_spec(yaml: &str) -> VirtualMachineSpec {
    serde_yaml::from_str(yaml).unwrap()
}

#[test]
fn run_strategy_follows_kubevirt_mapping() {
    assert_eq!(
        run_strategy(&vm_spec("runStrategy: Always")),
        RunStrategyResolution::Explicit(RunStrategy::Always)
    );
    assert_eq!(
        run_strategy(&vm_spec("running: true")),
        RunStrategyResolution::FromRunning(RunStrategy::Always)
    );
    assert_eq!(
        run_strategy(&vm_spec("running: false")).strategy(),
        Some(RunStrategy::Halted)
    );
    assert_eq!(run_strategy(&vm_spec("{}")).strategy(), Some(RunStrategy::Halted));
    assert_eq!(
        run_strategy(&vm_spec("{running: true, runStrategy: Always}")),
        RunStrategyResolution::Conflict
    );
    assert_eq!(
        run_strategy(&vm_spec("runStrategy: Sometimes")),
        RunStrategyResolution::Invalid("Sometimes".into())
    );
}

#[test]
fn eviction_resolves_vmi_then_template_then_kubevirt_then_hco_then_none() {
    let kv: KubeVirt = serde_yaml::from_str(
            "metadata: {name: kubevirt, namespace: kubevirt}\nspec: {configuration: {evictionStrategy: External}}",
        )
        .unwrap();
    let hco: HyperConverged = serde_yaml::from_str(
        "metadata: {name: hco, namespace: openshift-cnv}\nspec: {evictionStrategy: LiveMigrate}",
    )
    .unwrap();
    let both = ClusterConfig::from_crs(std::slice::from_ref(&kv), std::slice::from_ref(&hco));
    let only_hco = ClusterConfig::from_crs(&[], std::slice::from_ref(&hco));
    let none = ClusterConfig::from_crs(&[], &[]);

    let e = eviction_strategy(Some("LiveMigrate"), Some("None"), &both);
    assert_eq!(
        (e.strategy, e.source),
        (Some(EvictionStrategy::LiveMigrate), EvictionSource::Vmi)
    );
    let e = eviction_strategy(None, Some("None"), &both);
    assert_eq!(
        (e.strategy, e.source),
        (Some(EvictionStrategy::None), EvictionSource::Template)
    );
    let e = eviction_strategy(None, None, &both);
    assert_eq!(e.strategy, Some(EvictionStrategy::External));
    assert_eq!(e.source, EvictionSource::KubeVirt("kubevirt/kubevirt".into()));
    let e = eviction_strategy(None, None, &only_hco);
    assert_eq!(e.strategy, Some(EvictionStrategy::LiveMigrate));
    assert_eq!(
        e.source,
        EvictionSource::HyperConverged("openshift-cnv/hco".into())
    );
    let e = eviction_strategy(None, None, &none);
    assert_eq!(
        (e.strategy, e.source),
        (Some(EvictionStrategy::None), EvictionSource::Default)
    );
    let e = eviction_strategy(Some("Migrate"), None, &none);
    assert_eq!(e.strategy, None);
}

#[test]
fn cluster_config_reads_limits_with_defaults() {
    let kv: KubeVirt = serde_yaml::from_str(
            "spec: {configuration: {migrations: {parallelMigrationsPerCluster: 3}, developerConfiguration: {cpuAllocationRatio: 4}}}",
        )
        .unwrap();
    let cfg = ClusterConfig::from_crs(&[kv], &[]);
    assert_eq!(cfg.parallel_migrations_per_cluster, 3);
    assert_eq!(cfg.parallel_outbound_migrations_per_node, 2);
    assert_eq!(cfg.cpu_allocation_ratio, 4);
    assert_eq!(cfg.memory_overcommit, 100);
}

fn policy(name: &str, selectors: &str, spec: &str) -> MigrationPolicy {
    serde_yaml::from_str(&format!(
        "metadata: {{name: {name}}}\nspec: {{{selectors}{spec}}}"
    ))
    .unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn chosen(
    policies: &[MigrationPolicy],
    vmi: &BTreeMap<String, String>,
    ns: Option<&BTreeMap<String, String>>,
) -> Option<String> {
    matching_policy(policies, vmi, ns)
        .0
        .and_then(|p| p.metadata.name.clone())
}

#[test]
fn a_policy_matches_only_when_all_its_labels_are_on_the_vmi() {
    let policies = [policy(
        "db",
        "selectors: {virtualMachineInstanceSelector: {app: db, tier: gold}}",
        "",
    )];
    let vmi = labels(&[("app", "db"), ("tier", "gold"), ("extra", "x")]);
    assert_eq!(chosen(&policies, &vmi, None).as_deref(), Some("db"));
    let partial = labels(&[("app", "db")]);
    assert_eq!(chosen(&policies, &partial, None), None);
    let wrong_value = labels(&[("app", "db"), ("tier", "silver")]);
    assert_eq!(chosen(&policies, &wrong_value, None), None);
    // No selectors at all: matches nothing. Empty selectors: match every VMI.
    let none = [policy("none", "", "allowPostCopy: true")];
    assert_eq!(chosen(&none, &vmi, None), None);
    let all = [policy("all", "selectors: {}", "")];
    assert_eq!(chosen(&all, &labels(&[]), None).as_deref(), Some("all"));
}

#[test]
fn the_policy_with_most_matching_labels_wins_then_vmi_labels_then_the_first_name() {
    let vmi = labels(&[("app", "db"), ("tier", "gold")]);
    let ns = labels(&[("team", "a")]);
    let one = policy(
        "a-one",
        "selectors: {virtualMachineInstanceSelector: {app: db}}",
        "",
    );
    let two = policy(
        "z-two",
        "selectors: {virtualMachineInstanceSelector: {app: db, tier: gold}}",
        "",
    );
    assert_eq!(
        chosen(&[one.clone(), two.clone()], &vmi, Some(&ns)).as_deref(),
        Some("z-two")
    );
    assert_eq!(
        chosen(&[two.clone(), one.clone()], &vmi, Some(&ns)).as_deref(),
        Some("z-two")
    );
    // Same total (2): one VMI + one namespace label loses to two VMI labels.
    let mixed = policy(
        "a-mixed",
        "selectors: {virtualMachineInstanceSelector: {app: db}, namespaceSelector: {team: a}}",
        "",
    );
    assert_eq!(
        chosen(&[mixed.clone(), two.clone()], &vmi, Some(&ns)).as_deref(),
        Some("z-two")
    );
    // Full tie: the name that sorts first, whatever the order of the list.
    let twin = policy(
        "m-twin",
        "selectors: {virtualMachineInstanceSelector: {tier: gold, app: db}}",
        "",
    );
    assert_eq!(
        chosen(&[two.clone(), twin.clone()], &vmi, Some(&ns)).as_deref(),
        Some("m-twin")
    );
    assert_eq!(chosen(&[twin, two], &vmi, Some(&ns)).as_deref(), Some("m-twin"));
}

#[test]
fn a_namespace_selector_needs_the_namespace_labels() {
    let vmi = labels(&[("app", "db")]);
    let by_ns = policy(
        "by-ns",
        "selectors: {namespaceSelector: {team: a}, virtualMachineInstanceSelector: {app: db}}",
        "",
    );
    let plain = policy(
        "plain",
        "selectors: {virtualMachineInstanceSelector: {app: db}}",
        "",
    );
    let policies = [by_ns, plain];
    // Known namespace labels: the more specific policy wins.
    let ns = labels(&[("team", "a")]);
    assert_eq!(chosen(&policies, &vmi, Some(&ns)).as_deref(), Some("by-ns"));
    let other = labels(&[("team", "b")]);
    assert_eq!(chosen(&policies, &vmi, Some(&other)).as_deref(), Some("plain"));
    // Unknown (no Namespace objects): taken not to match, and reported.
    let (found, unchecked) = matching_policy(&policies, &vmi, None);
    assert_eq!(found.and_then(|p| p.metadata.name.as_deref()), Some("plain"));
    assert_eq!(unchecked, vec!["by-ns".to_string()]);
    // A policy whose VMI labels do not match is not reported as unchecked.
    let (_, unchecked) = matching_policy(&policies, &labels(&[("app", "web")]), None);
    assert!(unchecked.is_empty());
}

#[test]
fn cluster_config_reads_migration_options_with_kubevirt_defaults() {
    let none = ClusterConfig::from_crs(&[], &[]);
    assert_eq!(none.completion_timeout_per_gib, 150);
    assert!(!none.allow_auto_converge && !none.allow_post_copy);
    assert_eq!(none.completion_timeout_source, MigrationOptionSource::Default);

    let kv: KubeVirt = serde_yaml::from_str(
        "metadata: {name: kubevirt, namespace: kubevirt}\n\
spec: {configuration: {migrations: {completionTimeoutPerGiB: 800, allowAutoConverge: true}}}",
    )
    .unwrap();
    let cfg = ClusterConfig::from_crs(std::slice::from_ref(&kv), &[]);
    assert_eq!(cfg.completion_timeout_per_gib, 800);
    assert!(cfg.allow_auto_converge);
    assert!(!cfg.allow_post_copy);
    let from_kv = MigrationOptionSource::KubeVirt("kubevirt/kubevirt".into());
    assert_eq!(cfg.completion_timeout_source, from_kv);
    assert_eq!(cfg.convergence_source, from_kv);
    assert_eq!(
        from_kv.to_string(),
        "KubeVirt CR kubevirt/kubevirt spec.configuration.migrations"
    );

    // A migrations block without the timeout keeps the default and says so.
    let kv: KubeVirt =
        serde_yaml::from_str("spec: {configuration: {migrations: {allowPostCopy: true}}}").unwrap();
    let cfg = ClusterConfig::from_crs(&[kv], &[]);
    assert_eq!(
        (cfg.completion_timeout_per_gib, cfg.completion_timeout_source),
        (150, MigrationOptionSource::Default)
    );
    assert!(cfg.allow_post_copy);

    // HCO's liveMigrationConfig when the KubeVirt CR has no migrations block.
    let hco: HyperConverged = serde_yaml::from_str(
            "metadata: {name: hco, namespace: openshift-cnv}\nspec: {liveMigrationConfig: {completionTimeoutPerGiB: 300}}",
        )
        .unwrap();
    let cfg = ClusterConfig::from_crs(&[], &[hco]);
    assert_eq!(cfg.completion_timeout_per_gib, 300);
    assert_eq!(
        cfg.completion_timeout_source,
        MigrationOptionSource::HyperConverged("openshift-cnv/hco".into())
    );
}

#[test]
fn a_policy_overrides_only_the_fields_it_sets() {
    let kv: KubeVirt = serde_yaml::from_str(
        "metadata: {name: kubevirt, namespace: kubevirt}\n\
spec: {configuration: {migrations: {completionTimeoutPerGiB: 400}}}",
    )
    .unwrap();
    let cluster = ClusterConfig::from_crs(&[kv], &[]);
    let policies = [policy(
        "converge",
        "selectors: {virtualMachineInstanceSelector: {app: db}}, ",
        "allowAutoConverge: true",
    )];
    let s = migration_settings(&cluster, &policies, &labels(&[("app", "db")]), None);
    assert_eq!(s.completion_timeout_per_gib, 400);
    assert_eq!(
        s.timeout_source,
        MigrationOptionSource::KubeVirt("kubevirt/kubevirt".into())
    );
    assert!(s.allow_auto_converge && !s.allow_post_copy);
    assert_eq!(
        s.convergence_source,
        MigrationOptionSource::Policy("converge".into())
    );
    assert_eq!(s.source, "MigrationPolicy converge");

    // No policy matches: the CR's values, and the CR as the source.
    let s = migration_settings(&cluster, &policies, &labels(&[("app", "web")]), None);
    assert!(!s.allow_auto_converge);
    assert_eq!(
        s.source,
        "KubeVirt CR kubevirt/kubevirt spec.configuration.migrations"
    );
    // Nothing at all: the default.
    let s = migration_settings(&ClusterConfig::defaults(), &[], &labels(&[]), None);
    assert_eq!(
        (s.completion_timeout_per_gib, s.source.as_str()),
        (150, "the default")
    );
}
