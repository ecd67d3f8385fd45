//! Label selectors, matched as the API server matches them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` satisfy `selector` (matchLabels and matchExpressions, ANDed). An empty
/// selector matches everything.
#[must_use]
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_labels_and_expressions() {
        let sel: LabelSelector = serde_yaml::from_str(
            "matchLabels: {app: db}\nmatchExpressions: [{key: tier, operator: In, values: [gold, silver]}]",
        )
        .unwrap();
        let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        assert!(selector_matches(
            &sel,
            &labels(&[("app", "db"), ("tier", "gold")])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[("app", "db"), ("tier", "bronze")])
        ));
        assert!(!selector_matches(&sel, &labels(&[("tier", "gold")])));
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])));
    }
}
