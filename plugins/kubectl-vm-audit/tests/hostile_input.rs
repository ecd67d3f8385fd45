//! `kubectl vm-audit -f` on hostile input, run as the real binary under a 1 GiB address-space
//! limit (`prlimit --as`): each input is refused with exit status 2 and a message naming the
//! input, instead of exhausting memory or time. Without the limits of `vm_core::manifest`, the
//! alias bomb below expands to 400 million values (tens of GiB) and the process aborts, and the
//! nested brackets keep libyaml busy for minutes.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vm_core::manifest::{MAX_DEPTH, MAX_INPUT_BYTES, MAX_VALUES};

/// The address space the binary may use: several times what the limits allow it to need (about
/// 450 MiB for a value budget spent on an alias bomb), far below what any of the inputs would
/// take unbounded.
const ADDRESS_SPACE: u64 = 1 << 30;

/// Writes a run's standard input.
type Feed = Box<dyn FnOnce(&mut dyn Write) + Send>;

/// Runs `kubectl-vm_audit ARGS` under the address-space limit, feeding `stdin` (if any) from a
/// thread; the binary may stop reading early, so a write error there is expected.
fn audit_limited(args: &[&str], stdin: Option<Feed>) -> (Output, Duration) {
    let home = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = Command::new("prlimit")
        .arg(format!("--as={ADDRESS_SPACE}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_kubectl-vm_audit"))
        .args(args)
        .env_clear()
        .env("HOME", home.path())
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) is installed");
    let feeder = stdin.map(|feed| {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || feed(&mut pipe))
    });
    let output = child.wait_with_output().unwrap();
    if let Some(feeder) = feeder {
        feeder.join().unwrap();
    }
    (output, started.elapsed())
}

fn refused(output: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(2),
        "{what}: not refused with exit 2 (a crash has no code): {stderr}"
    );
    stderr
}

fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn alias_bombs_are_refused_within_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    // The classic one: ten levels of nine aliases, 3.4 billion values expanded.
    let mut laughs =
        String::from("apiVersion: v1\nkind: Node\nmetadata: {name: n}\na: &a [x, x, x, x, x, x, x, x, x]\n");
    for i in 0..9 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("a{}", i - 1)
        };
        laughs.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*{prev}"); 9].join(", ")
        ));
    }
    let file = write_file(&dir, "laughs.yaml", &laughs);
    let (out, _) = audit_limited(&["-f", &file], None);
    let stderr = refused(&out, "billion laughs");
    assert!(
        stderr.contains("laughs.yaml:") && stderr.contains("alias bomb"),
        "{stderr}"
    );

    // One that serde_yaml's own repetition limit lets through: 20,000 aliases of a 20,000-item
    // anchor in 100 KB, 400 million values expanded.
    let quadratic = format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: n}}\na: &a [{}]\nb: [{}]\n",
        vec!["x"; 20_000].join(","),
        vec!["*a"; 20_000].join(",")
    );
    let file = write_file(&dir, "quadratic.yaml", &quadratic);
    let (out, _) = audit_limited(&["-f", &file], None);
    let stderr = refused(&out, "quadratic alias bomb");
    assert!(
        stderr.contains("quadratic.yaml:4:") && stderr.contains(&format!("more than {MAX_VALUES} values")),
        "{stderr}"
    );
}

#[test]
fn deep_nesting_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "brackets.yaml",
            format!("kind: Node\nx: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
        ),
        (
            "maps.json",
            format!(
                "{{\"kind\": \"Node\", \"x\": {}1{}}}\n",
                "{\"a\": ".repeat(100_000),
                "}".repeat(100_000)
            ),
        ),
        (
            "blocks.yaml",
            (0..1_000).map(|i| format!("{}k{i}:\n", "  ".repeat(i))).collect(),
        ),
    ];
    for (name, text) in cases {
        let file = write_file(&dir, name, &text);
        let (out, took) = audit_limited(&["-f", &file], None);
        let stderr = refused(&out, name);
        assert!(
            stderr.contains(&format!("{name}:"))
                && stderr.contains(&format!("nested more than {MAX_DEPTH} levels")),
            "{stderr}"
        );
        // Unchecked, libyaml needs minutes for the 100,000 brackets.
        assert!(took < Duration::from_secs(20), "{name} took {took:?}");
    }
}

#[test]
fn huge_inputs_are_refused_without_reading_them_whole() {
    // A 200 MB scalar on stdin: reading stops one byte past the limit.
    let (out, _) = audit_limited(
        &["-f", "-"],
        Some(Box::new(|pipe: &mut dyn Write| {
            let chunk = vec![b'x'; 1 << 20];
            if pipe
                .write_all(b"apiVersion: v1\nkind: Node\nmetadata: {name: n}\nhuge: ")
                .is_ok()
            {
                for _ in 0..200 {
                    if pipe.write_all(&chunk).is_err() {
                        break; // the audit stopped reading, as it should
                    }
                }
            }
        })),
    );
    let stderr = refused(&out, "200 MB on stdin");
    assert!(
        stderr.contains("-: more than the 32 MiB") && stderr.contains("split it"),
        "{stderr}"
    );

    // A 200 MB file: refused from its size.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(b"kind: Node\nhuge: ").unwrap();
    file.set_len(200 << 20).unwrap();
    let (out, _) = audit_limited(&["-f", path.to_str().unwrap()], None);
    let stderr = refused(&out, "200 MB file");
    assert!(
        stderr.contains("huge.yaml: 209715200 bytes, more than the 32 MiB"),
        "{stderr}"
    );
}

#[test]
fn help_states_the_limits_that_are_enforced() {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-vm_audit"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let limits = format!(
        "at most {} MiB per file or stdin, {MAX_DEPTH} levels of nesting,\nand {} values",
        MAX_INPUT_BYTES >> 20,
        MAX_VALUES
            .to_string()
            .as_bytes()
            .rchunks(3)
            .rev()
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(help.contains(&limits), "{limits:?} not in:\n{help}");
}
