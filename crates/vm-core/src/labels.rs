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

/// A `-l` label query in kubectl's equality-based syntax: `a=b`, `a==b`, `a!=b`, `a`, `!a`,
/// comma-separated and ANDed. (Set-based `in (...)` is sent to the API server in live mode;
/// in file mode it is refused with a clear message rather than guessed at.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelQuery(Vec<Requirement>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

impl LabelQuery {
    /// Parses a selector.
    ///
    /// # Errors
    /// A sentence naming the part that is not understood.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part.contains(" in ") || part.contains(" notin ") || part.contains('(') {
                return Err(format!(
                    "`{part}`: set-based selectors are only supported against a live cluster"
                ));
            }
            let req = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::Absent(k.trim().into())
            } else {
                Requirement::Exists(part.into())
            };
            let key = match &req {
                Requirement::Equals(k, _)
                | Requirement::NotEquals(k, _)
                | Requirement::Exists(k)
                | Requirement::Absent(k) => k,
            };
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(format!(
                    "`{part}` is not a label requirement (expected key=value, key!=value, key or !key)"
                ));
            }
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    /// Whether `labels` satisfy every requirement.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::Absent(k) => !labels.contains_key(k),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_queries_follow_kubectl_equality_syntax() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        assert!(LabelQuery::parse("app=web").unwrap().matches(&labels));
        assert!(LabelQuery::parse("app==web,!tier").unwrap().matches(&labels));
        assert!(!LabelQuery::parse("app!=web").unwrap().matches(&labels));
        assert!(!LabelQuery::parse("tier").unwrap().matches(&labels));
        assert!(LabelQuery::parse("env in (a,b)").is_err());
        assert!(LabelQuery::parse("=x").is_err());
    }

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
