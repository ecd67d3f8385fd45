//! The bounds that keep a hostile manifest from exhausting memory or time.
//!
//! Three limits, each refused with an error that names the file and the line:
//! - size: at most [`MAX_INPUT_BYTES`] from one file or stdin (the reader stops there);
//! - nesting: at most 128 levels of sequences and mappings (serde_yaml's recursion limit), and
//!   flow collections (`[`, `{`) are counted before the YAML parser sees them, because
//!   libyaml's scanner takes time quadratic in their depth (100,000 `[` take minutes);
//! - values: at most [`MAX_VALUES`] scalars, sequences and mappings from one input, counted
//!   as they are built, so aliases that repeat anchors that repeat aliases (a "billion laughs"
//!   bomb) stop at the limit instead of expanding in memory.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use serde_yaml::value::{Tag, TaggedValue};
use serde_yaml::{Mapping, Value};

/// The most bytes read from one file or from stdin: 32 MiB. A cluster dump of 10,000 VMs
/// (`kubectl get vm -A -o yaml`, with managed fields and status) is about 31 MB; the worst
/// case this admits (a flat list of one-digit numbers) needs about 2 GiB to parse.
pub const MAX_INPUT_BYTES: usize = 32 * 1024 * 1024;

/// The most values (scalars, sequences and mappings; a mapping entry's key counts too) built
/// from one input, aliases expanded: 4 Mi. The 31 MB dump of 10,000 VMs holds 1.7 million.
pub const MAX_VALUES: usize = 4 * 1024 * 1024;

/// The deepest nesting of sequences and mappings that serde_yaml reads.
pub const MAX_DEPTH: usize = 128;

/// Parses one YAML (or JSON) document into a generic value, charging each value it builds to
/// `budget` (what is left of [`MAX_VALUES`] for this input).
///
/// # Errors
/// The document is not valid YAML, is nested too deep, or would exceed the budget.
pub(super) fn parse_document(doc: &str, budget: &mut usize) -> Result<Value, serde_yaml::Error> {
    Budgeted { left: budget }.deserialize(serde_yaml::Deserializer::from_str(doc))
}

/// Where a document opens more than [`MAX_DEPTH`] flow collections (`[`, `{`) inside each
/// other: the 1-based line and column of the first one too many.
///
/// A scan of the text that follows YAML's rules for what is not structure: quoted scalars
/// (`"…"` with `\` escapes, `'…'` with `''`) and comments (`#` after a blank) are skipped,
/// and outside flow collections a bracket only opens one where a value starts (after
/// indentation, `- `, `? ` or `: `), not inside plain text such as `message: see [1]`.
pub(super) fn flow_too_deep(doc: &str) -> Option<(usize, usize)> {
    let bytes = doc.as_bytes();
    let (mut line, mut line_start) = (1, 0);
    let mut depth = 0usize;
    // Whether the next non-blank character starts a value (a bracket there opens a collection).
    let mut value_start = true;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let after_blank = i == line_start || matches!(bytes[i - 1], b' ' | b'\t');
        match c {
            b'\n' => {
                line += 1;
                line_start = i + 1;
                if depth == 0 {
                    value_start = true;
                }
            }
            b' ' | b'\t' | b'\r' => {}
            b'#' if after_blank => {
                while i + 1 < bytes.len() && bytes[i + 1] != b'\n' {
                    i += 1;
                }
            }
            b'"' | b'\'' if value_start => {
                // A quoted scalar: skip to its closing quote, counting the lines it spans.
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' if c == b'"' => i += 1,
                        b'\'' if c == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 1,
                        q if q == c => break,
                        b'\n' => {
                            line += 1;
                            line_start = i + 1;
                        }
                        _ => {}
                    }
                    i += 1;
                }
                value_start = false;
            }
            b'[' | b'{' if depth > 0 || value_start => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some((line, i - line_start + 1));
                }
                value_start = true;
            }
            b']' | b'}' if depth > 0 => {
                depth -= 1;
                value_start = false;
            }
            b',' if depth > 0 => value_start = true,
            b':' | b'-' | b'?'
                if matches!(bytes.get(i + 1), None | Some(b' ' | b'\t' | b'\r' | b'\n'))
                    || (c == b':' && depth > 0) =>
            {
                value_start = true;
            }
            b'&' | b'!' if value_start => {
                // An anchor or a tag before the value: the value starts after it.
                while i + 1 < bytes.len() && !matches!(bytes[i + 1], b' ' | b'\t' | b'\r' | b'\n') {
                    i += 1;
                }
            }
            _ => value_start = false,
        }
        i += 1;
    }
    None
}

/// Rewrites serde_yaml's terse messages for the limits into ones that say what was refused.
pub(super) fn explain(message: String) -> String {
    match message.as_str() {
        "recursion limit exceeded" => {
            format!("nested more than {MAX_DEPTH} levels deep; refused (no Kubernetes object is)")
        }
        "repetition limit exceeded" => {
            "aliases repeat their anchors too many times (an alias bomb?); refused".to_string()
        }
        _ => message,
    }
}

/// The error of a document that would build more than [`MAX_VALUES`] values.
struct TooManyValues;

impl fmt::Display for TooManyValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "more than {MAX_VALUES} values with aliases expanded, the most vm-audit reads from one input; refused"
        )
    }
}

/// Builds a [`Value`] exactly as `Value::deserialize` does, counting every value.
struct Budgeted<'a> {
    left: &'a mut usize,
}

impl Budgeted<'_> {
    fn spend<E: de::Error>(&mut self) -> Result<(), E> {
        match self.left.checked_sub(1) {
            Some(left) => {
                *self.left = left;
                Ok(())
            }
            None => Err(E::custom(TooManyValues)),
        }
    }

    fn child(&mut self) -> Budgeted<'_> {
        Budgeted {
            left: &mut *self.left,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Budgeted<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Budgeted<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(mut self, v: String) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        self.spend()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child())? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        self.spend()?;
        let mut mapping = Mapping::new();
        while let Some(key) = map.next_key_seed(self.child())? {
            if mapping.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate entry with key {}",
                    describe_key(&key)
                )));
            }
            let value = map.next_value_seed(self.child())?;
            mapping.insert(key, value);
        }
        Ok(Value::Mapping(mapping))
    }

    fn visit_enum<A: EnumAccess<'de>>(mut self, data: A) -> Result<Value, A::Error> {
        // serde_yaml hands a tagged node (`!tag value`) over as an enum named by its tag.
        self.spend()?;
        let (tag, contents): (String, _) = data.variant()?;
        if tag.is_empty() {
            return Err(de::Error::custom("empty YAML tag is not allowed"));
        }
        let value = contents.newtype_variant_seed(self.child())?;
        Ok(Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(tag),
            value,
        })))
    }
}

/// A mapping key in a duplicate-key error, as serde_yaml words it.
fn describe_key(key: &Value) -> String {
    match key {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        _ => "of a sequence, mapping or tagged value".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    use super::*;

    fn runner() -> TestRunner {
        let config = Config {
            cases: 512,
            failure_persistence: None,
            ..Config::default()
        };
        TestRunner::new_with_rng(
            config,
            TestRng::from_seed(RngAlgorithm::ChaCha, b"kubectl-vm-plugins: limits 00006"),
        )
    }

    /// Generic values up to 6 levels deep, with keys and strings that look like YAML syntax.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| Value::Number(n.into())),
            "[a-z\\[\\]{}:#'\", -]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Sequence),
                prop::collection::vec(("[a-z\\[{\"#: ]{1,6}", inner), 0..6).prop_map(|entries| {
                    Value::Mapping(entries.into_iter().map(|(k, v)| (Value::String(k), v)).collect())
                }),
            ]
        })
    }

    /// The budgeted reader builds what serde_yaml's own `Value` does, and the flow pre-scan
    /// lets through every document that is not nested too deep, in block, flow and JSON style.
    #[test]
    fn the_budgeted_reader_agrees_with_serde_yaml_and_the_pre_scan_passes_real_documents() {
        runner()
            .run(&value(), |value| {
                let block = serde_yaml::to_string(&value).unwrap();
                let json = serde_json::to_string(&value).unwrap();
                let pretty = serde_json::to_string_pretty(&value).unwrap();
                for text in [&block, &json, &pretty] {
                    prop_assert_eq!(flow_too_deep(text), None, "{}", text);
                    let expected: Value = serde_yaml::from_str(text).unwrap();
                    let mut budget = MAX_VALUES;
                    let got = parse_document(text, &mut budget).unwrap();
                    prop_assert_eq!(&got, &expected);
                    prop_assert_eq!(&got, &value);
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn the_pre_scan_counts_only_collections_that_the_parser_opens() {
        let deep = |n: usize| format!("x: {}{}\n", "[".repeat(n), "]".repeat(n));
        assert_eq!(flow_too_deep(&deep(MAX_DEPTH)), None);
        assert_eq!(flow_too_deep(&deep(MAX_DEPTH + 1)), Some((1, 4 + MAX_DEPTH)));
        let maps = format!("a:\n  b: {}1{}\n", "{k: ".repeat(200), "}".repeat(200));
        assert_eq!(flow_too_deep(&maps), Some((2, 6 + 4 * MAX_DEPTH)));
        for quiet in [
            format!("a: see {}\n", "[".repeat(500)),
            format!("a: \"{}\"\n", "[".repeat(500)),
            format!("a: '{}''{}'\n", "[".repeat(500), "{".repeat(500)),
            format!("# {}\na: 1\n", "[".repeat(500)),
            format!("a: [\"{}\", '{}']\n", "]".repeat(500), "[".repeat(500)),
        ] {
            assert_eq!(flow_too_deep(&quiet), None, "{quiet}");
        }
        // Closing brackets inside strings do not hide the depth of the real ones.
        let hidden = format!("x: {}\n", "[\"]]\", ".repeat(MAX_DEPTH + 1));
        assert!(flow_too_deep(&hidden).is_some());
    }
}
