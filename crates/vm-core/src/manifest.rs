//! Manifests to snapshot: multi-document YAML or JSON, `kind: List`, every error with its line.
//!
//! Documents are split on `---` at the start of a line (a document marker in YAML wherever it
//! appears, even inside a block scalar), so each document knows the line it starts on and an
//! error can name `file:line`. Each document is read as a generic value first (syntax errors),
//! then converted to its typed object (type errors, with the field path).
//!
//! Hostile input is bounded (see [`limits`]): the size of one input, the nesting depth, and the
//! number of values once aliases are expanded.

mod limits;
mod objects;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

pub use limits::{MAX_DEPTH, MAX_INPUT_BYTES, MAX_VALUES};

use crate::audit::ObjectRef;
use crate::snapshot::ClusterSnapshot;

/// Why a manifest could not be read: not YAML/JSON, not a Kubernetes object, or a known kind
/// whose fields have the wrong shape. Always names the source and the line.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}:{line}{}: {message}", column.map(|c| format!(":{c}")).unwrap_or_default())]
pub struct ManifestError {
    /// File name, or `-` for stdin.
    pub source_name: String,
    /// 1-based line (of the error, or of the document it is in).
    pub line: usize,
    /// 1-based column, for syntax errors.
    pub column: Option<usize>,
    /// What is wrong, e.g. `VirtualMachine vm1: field spec.running: invalid type`.
    pub message: String,
}

/// How the error about a second copy of an object ends.
const DUPLICATE_ENDING: &str = "each object may appear once";

impl ManifestError {
    /// Whether this is a second copy of an object ([`Duplicates::Refuse`]).
    #[must_use]
    pub fn is_duplicate(&self) -> bool {
        self.message.ends_with(DUPLICATE_ENDING)
    }
}

/// Something worth telling the user that is not an error (an unknown kind, skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// `file:line`.
    pub location: String,
    /// What happened.
    pub message: String,
}

/// What the loader does with a second object of the same kind, namespace and name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Duplicates {
    /// It is an input error naming both places: merged, the two would be audited as one object
    /// with every finding twice, and which copy the user meant cannot be known.
    #[default]
    Refuse,
    /// Each copy is read in a layer of its own (`vm-audit --audit-duplicates`): this load keeps
    /// copy number `layer` (from 1) of the objects in `deep` (those with at least that many
    /// copies) and the first copy of every other object, and records every copy's origin in
    /// [`ClusterSnapshot::copies`]. Loading layers 1, 2, ... up to the most copies of any object
    /// reads every copy once, each beside one copy of everything else.
    Layer {
        /// Which copy, from 1.
        layer: usize,
        /// The objects that have that many copies.
        deep: BTreeSet<ObjectRef>,
    },
}

/// Splits `text` into documents with the 1-based line each starts on; documents with nothing
/// but blank lines and comments are left out as they are found.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    fn push(docs: &mut Vec<(usize, String)>, start: usize, doc: String) {
        let has_content = doc
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        if has_content {
            docs.push((start, doc));
        }
    }
    let mut docs = Vec::new();
    let mut start = 1;
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        let is_end = line == "...";
        if is_marker || is_end {
            push(&mut docs, start, std::mem::take(&mut current));
            start = i + 2;
            if let Some(rest) = line.strip_prefix("---").filter(|r| !r.trim().is_empty()) {
                // `--- {inline: document}`: keep the content, on this line.
                start = i + 1;
                current.push_str(rest);
                current.push('\n');
            }
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    push(&mut docs, start, current);
    docs
}

/// Reads every document of `text` (named `source_name` in errors) into `snapshot`.
///
/// # Errors
/// The first document that is not valid YAML/JSON, not an object, or a known kind of the wrong
/// shape; a second object of a known kind with the same namespace and name as one already in
/// `snapshot` (from this input or an earlier one); or an input beyond the [`limits`]: more than [`MAX_INPUT_BYTES`], nested deeper than
/// [`MAX_DEPTH`], or more than [`MAX_VALUES`] values with aliases expanded. Documents of unknown
/// kinds are skipped and reported as [`Note`]s.
pub fn load_into(
    snapshot: &mut ClusterSnapshot,
    source_name: &str,
    text: &str,
) -> Result<Vec<Note>, ManifestError> {
    load_into_with(snapshot, source_name, text, &Duplicates::Refuse)
}

/// [`load_into`], with `duplicates` deciding what a second copy of an object is.
///
/// # Errors
/// As [`load_into`]; with [`Duplicates::Layer`], a second copy is no error.
pub fn load_into_with(
    snapshot: &mut ClusterSnapshot,
    source_name: &str,
    text: &str,
    duplicates: &Duplicates,
) -> Result<Vec<Note>, ManifestError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(ManifestError {
            source_name: source_name.to_string(),
            line: 1,
            column: None,
            message: format!(
                "{} bytes, more than the {MAX_INPUT_BYTES} bytes ({} MiB) vm-audit reads from one input",
                text.len(),
                MAX_INPUT_BYTES >> 20
            ),
        });
    }
    load_with_budget(snapshot, source_name, text, MAX_VALUES, duplicates)
}

/// [`load_into`] with `budget` values for the whole input.
fn load_with_budget(
    snapshot: &mut ClusterSnapshot,
    source_name: &str,
    text: &str,
    mut budget: usize,
    duplicates: &Duplicates,
) -> Result<Vec<Note>, ManifestError> {
    let mut notes = Vec::new();
    for (line, doc) in split_documents(text) {
        if let Some((deep_line, column)) = limits::flow_too_deep(&doc) {
            return Err(ManifestError {
                source_name: source_name.to_string(),
                line: line + deep_line - 1,
                column: Some(column),
                message: limits::explain("recursion limit exceeded".to_string()),
            });
        }
        let value = limits::parse_document(&doc, &mut budget).map_err(|e| {
            let loc = e.location();
            ManifestError {
                source_name: source_name.to_string(),
                line: loc.as_ref().map_or(line, |l| line + l.line() - 1),
                column: Some(loc.as_ref().map_or(1, serde_yaml::Location::column)),
                message: limits::explain(strip_location(&e.to_string())),
            }
        })?;
        objects::add_value(snapshot, source_name, line, value, &mut notes, duplicates)?;
    }
    Ok(notes)
}

/// serde_yaml appends " at line X column Y"; the error already says where.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}
