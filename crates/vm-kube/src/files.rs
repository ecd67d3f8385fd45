//! Manifests from files, directories (recursively) and stdin, into one snapshot.

use std::io::Read;
use std::path::{Path, PathBuf};

use vm_core::manifest::{Duplicates, MAX_INPUT_BYTES, ManifestError, Note, load_into_with};
use vm_core::snapshot::ClusterSnapshot;

/// The most bytes read from one file or from stdin ([`MAX_INPUT_BYTES`]): a bigger file is
/// refused before it is read, and no input is read further than one byte past the limit.
pub const MAX_FILE_BYTES: u64 = MAX_INPUT_BYTES as u64;

const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Why the input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file or directory could not be opened or read.
    #[error("cannot read {path}: {message}")]
    Unreadable {
        /// The path given.
        path: String,
        /// The OS's words.
        message: String,
    },
    /// A directory without a single manifest in it.
    #[error("{path}: no .yaml, .yml or .json files in this directory (searched recursively)")]
    EmptyDirectory {
        /// The directory.
        path: String,
    },
    /// Not text: a binary file, or text in another encoding than UTF-8.
    #[error("{path}: not a YAML or JSON text file ({reason})")]
    NotText {
        /// The file.
        path: String,
        /// What gave it away.
        reason: String,
    },
    /// Bigger than [`MAX_FILE_BYTES`].
    #[error(
        "{path}: {} the {} MiB vm-audit reads from one file or stdin; split it into several files, or audit the cluster live",
        size.map_or_else(|| "more than".to_string(), |s| format!("{s} bytes, more than")),
        MAX_FILE_BYTES >> 20
    )]
    TooLarge {
        /// The file, or `-`.
        path: String,
        /// Its size, when the file system says (not for stdin or a pipe).
        size: Option<u64>,
    },
    /// A manifest that does not parse.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// One input, read whole.
#[derive(Clone, Debug)]
pub struct Input {
    /// Its name in messages: the file's path, or `-` for stdin.
    pub name: String,
    /// Its text.
    pub text: String,
}

/// Reads every input (`-` is stdin) into one snapshot, returning notes about skipped objects;
/// a second copy of an object is an error.
///
/// # Errors
/// The first input that cannot be read or parsed.
pub fn load(inputs: &[PathBuf], stdin: &mut dyn Read) -> Result<(ClusterSnapshot, Vec<Note>), FileError> {
    load_inputs(&read(inputs, stdin)?, &Duplicates::Refuse)
}

/// Reads every input (`-` is stdin, directories recursively, in name order) once, so that it
/// can be loaded more than once (stdin cannot be read twice).
///
/// # Errors
/// The first input that cannot be read, or that is not text.
pub fn read(inputs: &[PathBuf], stdin: &mut dyn Read) -> Result<Vec<Input>, FileError> {
    let mut read = Vec::new();
    for input in inputs {
        if input.as_os_str() == "-" {
            let bytes = read_limited(stdin, Path::new("-"))?;
            read.push(text_of("-", bytes)?);
            continue;
        }
        let meta = std::fs::metadata(input).map_err(|e| unreadable(input, &e))?;
        if meta.is_dir() {
            let files = manifests_under(input)?;
            if files.is_empty() {
                return Err(FileError::EmptyDirectory {
                    path: input.display().to_string(),
                });
            }
            for file in files {
                read.push(read_file(&file)?);
            }
        } else {
            read.push(read_file(input)?);
        }
    }
    Ok(read)
}

/// Loads `inputs` into one snapshot, `duplicates` deciding what a second copy of an object
/// is; returns notes about skipped objects.
///
/// # Errors
/// The first input that cannot be parsed.
pub fn load_inputs(
    inputs: &[Input],
    duplicates: &Duplicates,
) -> Result<(ClusterSnapshot, Vec<Note>), FileError> {
    let mut snapshot = ClusterSnapshot::default();
    let mut notes = Vec::new();
    for input in inputs {
        notes.extend(load_into_with(
            &mut snapshot,
            &input.name,
            &input.text,
            duplicates,
        )?);
    }
    Ok((snapshot, notes))
}

fn unreadable(path: &Path, err: &std::io::Error) -> FileError {
    FileError::Unreadable {
        path: path.display().to_string(),
        message: err.to_string(),
    }
}

/// Every manifest file under `dir`, sorted so that output does not depend on the file system.
fn manifests_under(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| unreadable(&current, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| unreadable(&current, &e))?;
            let path = entry.path();
            let file_type = entry.file_type().map_err(|e| unreadable(&path, &e))?;
            if file_type.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

fn read_file(path: &Path) -> Result<Input, FileError> {
    let mut file = std::fs::File::open(path).map_err(|e| unreadable(path, &e))?;
    let meta = file.metadata().map_err(|e| unreadable(path, &e))?;
    if meta.is_file() && meta.len() > MAX_FILE_BYTES {
        return Err(FileError::TooLarge {
            path: path.display().to_string(),
            size: Some(meta.len()),
        });
    }
    // Pipes, devices and files that grow are stopped at the limit as they are read.
    let bytes = read_limited(&mut file, path)?;
    text_of(&path.display().to_string(), bytes)
}

/// Reads `reader` to its end, or refuses once it has given more than [`MAX_FILE_BYTES`].
fn read_limited(reader: &mut dyn Read, path: &Path) -> Result<Vec<u8>, FileError> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(path, &e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(FileError::TooLarge {
            path: path.display().to_string(),
            size: None,
        });
    }
    Ok(bytes)
}

/// `bytes` as text: UTF-8 without NUL bytes, else [`FileError::NotText`].
fn text_of(name: &str, bytes: Vec<u8>) -> Result<Input, FileError> {
    if let Some(pos) = bytes.iter().position(|b| *b == 0) {
        return Err(FileError::NotText {
            path: name.into(),
            reason: format!("NUL byte at offset {pos}"),
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| FileError::NotText {
        path: name.into(),
        reason: format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
    })?;
    Ok(Input {
        name: name.to_string(),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: &str = "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: a}\n";

    #[test]
    fn directories_are_read_recursively_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
        std::fs::write(
            dir.path().join("sub/deeper/b.yml"),
            VM.replace("name: a", "name: b"),
        )
        .unwrap();
        std::fs::write(dir.path().join("a.yaml"), VM).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        let (snap, _) = load(&[dir.path().to_path_buf()], &mut std::io::empty()).unwrap();
        let names: Vec<_> = snap
            .vms
            .iter()
            .map(|v| v.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn stdin_is_a_dash() {
        let (snap, _) = load(&[PathBuf::from("-")], &mut VM.as_bytes()).unwrap();
        assert_eq!(snap.vms.len(), 1);
    }

    #[test]
    fn bad_inputs_have_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let err = load(&[empty], &mut std::io::empty()).unwrap_err();
        assert!(matches!(err, FileError::EmptyDirectory { .. }), "{err}");
        let err = load(&[dir.path().join("missing.yaml")], &mut std::io::empty()).unwrap_err();
        assert!(
            err.to_string().contains("missing.yaml") && err.to_string().contains("No such file"),
            "{err}"
        );
        let bin = dir.path().join("disk.img.yaml");
        std::fs::write(&bin, [0x7f, b'E', b'L', b'F', 0, 1, 2]).unwrap();
        let err = load(&[bin], &mut std::io::empty()).unwrap_err();
        assert!(err.to_string().contains("NUL byte"), "{err}");
    }

    #[test]
    fn inputs_over_the_limit_are_refused_without_reading_them_whole() {
        let dir = tempfile::tempdir().unwrap();
        let huge = dir.path().join("huge.yaml");
        // Sparse: 200 MB on paper, nothing on disk; refused from its size alone.
        std::fs::File::create(&huge).unwrap().set_len(200 << 20).unwrap();
        let err = load(&[huge], &mut std::io::empty()).unwrap_err().to_string();
        assert!(
            err.contains("huge.yaml: 209715200 bytes, more than the 32 MiB") && err.contains("split it"),
            "{err}"
        );
        // A stream (stdin, a pipe, a device) is read up to one byte past the limit, then refused.
        let mut endless = std::io::repeat(b'x');
        let err = load(&[PathBuf::from("-")], &mut endless).unwrap_err().to_string();
        assert!(err.starts_with("-: more than the 32 MiB"), "{err}");
        let err = load(&[PathBuf::from("/dev/zero")], &mut std::io::empty())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/dev/zero: more than the 32 MiB"), "{err}");
        // Exactly at the limit is read (and then judged as YAML).
        let mut at_limit = std::io::repeat(b'#').take(MAX_FILE_BYTES);
        let (snap, _) = load(&[PathBuf::from("-")], &mut at_limit).unwrap();
        assert!(snap.vms.is_empty());
    }

    /// Random bytes through files and stdin: loaded, or refused with the input's name; never a
    /// panic. Fixed seed and case count.
    #[test]
    fn arbitrary_bytes_from_a_file_or_stdin_load_or_name_the_input() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fuzz.yaml");
        let config = Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner = TestRunner::new_with_rng(
            config,
            TestRng::from_seed(RngAlgorithm::ChaCha, b"kubectl-vm-plugins: files 000006"),
        );
        let bytes = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            "[ -~\\n]{0,512}".prop_map(String::into_bytes),
        ];
        runner
            .run(&bytes, |bytes| {
                std::fs::write(&file, &bytes).unwrap();
                for (input, name) in [
                    (file.clone(), file.display().to_string()),
                    (PathBuf::from("-"), "-".into()),
                ] {
                    if let Err(err) = load(&[input], &mut bytes.as_slice()) {
                        let text = err.to_string();
                        prop_assert!(text.starts_with(&format!("{name}:")), "{}", text);
                    }
                }
                Ok(())
            })
            .unwrap();
    }
}
