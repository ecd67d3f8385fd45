//! The one writer of the plugins' results for scripts (`-o json`, `-o yaml`): every plan,
//! report and result goes through [`write`] (or [`write_following`] for a second document on
//! the same stdout), so that all of them have the same shape: pretty JSON ending in a newline,
//! YAML as serde_yaml writes it.

use std::io::Write;

use serde::Serialize;

/// A format for scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Structured {
    /// Pretty-printed JSON, one newline after it.
    Json,
    /// YAML.
    Yaml,
}

/// Writes `value` as one JSON or YAML document.
///
/// # Errors
/// I/O errors of `out`, or a value serde cannot write.
pub fn write<T: Serialize + ?Sized>(
    value: &T,
    format: Structured,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match format {
        Structured::Json => {
            serde_json::to_writer_pretty(&mut *out, value)?;
            writeln!(out)
        }
        Structured::Yaml => out.write_all(
            serde_yaml::to_string(value)
                .map_err(std::io::Error::other)?
                .as_bytes(),
        ),
    }
}

/// Writes `value` as a document that follows another on the same output: YAML opens it with
/// `---`; JSON documents simply follow one another.
///
/// # Errors
/// As [`write`].
pub fn write_following<T: Serialize + ?Sized>(
    value: &T,
    format: Structured,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if format == Structured::Yaml {
        out.write_all(b"---\n")?;
    }
    write(value, format, out)
}

/// Writes `value` when `format` is one for scripts; `false` (nothing written) otherwise, so
/// that the caller draws its table.
///
/// # Errors
/// As [`write`].
pub fn write_if<T: Serialize + ?Sized>(
    value: &T,
    format: Option<Structured>,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    match format {
        Some(format) => write(value, format, out).map(|()| true),
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pretty_with_a_newline_and_yaml_follows_with_a_separator() {
        let value = serde_json::json!({"a": 1});
        let mut out = Vec::new();
        write(&value, Structured::Json, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{\n  \"a\": 1\n}\n");
        let mut out = Vec::new();
        write_following(&value, Structured::Yaml, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "---\na: 1\n");
        let mut out = Vec::new();
        assert!(!write_if(&value, None, &mut out).unwrap());
        assert!(out.is_empty());
    }
}
