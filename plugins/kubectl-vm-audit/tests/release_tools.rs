//! The release's binary tools on real executables: `scripts/check-binaries` (is each binary
//! one the archive's platform runs?) and `scripts/macho-stable-uuid` (darwin archives that
//! depend on the sources only). The macOS executable is a fixture linked by zig as the release
//! links the plugins (`tests/fixtures/macos/README.md`), so this runs without zig or a Mac.
//! Beside `krew.rs`: both check what the release ships.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/macos/hello-arm64")
}

fn script(name: &str, args: &[&Path]) -> Output {
    Command::new(root().join("scripts").join(name))
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("scripts/{name}: {e}"))
}

fn check_binaries(os: &str, arch: &str, file: &Path) -> (bool, String) {
    let out = script("check-binaries", &[Path::new(os), Path::new(arch), file]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// A copy of the fixture in `dir`, to change.
fn copy_of_fixture(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy(fixture(), &path).unwrap();
    path
}

/// File offset of the 16 bytes of LC_UUID (0x1b) in a 64-bit little-endian Mach-O file.
fn uuid_offset(bytes: &[u8]) -> usize {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let mut at = 32;
    for _ in 0..u32_at(16) {
        if u32_at(at) == 0x1b {
            return at + 8;
        }
        at += u32_at(at + 4) as usize;
    }
    panic!("no LC_UUID");
}

#[test]
fn check_binaries_accepts_a_signed_macos_11_arm64_executable() {
    let (ok, text) = check_binaries("darwin", "arm64", &fixture());
    assert!(ok, "{text}");
    assert!(
        text.contains("macOS 11.0+ arm64, signed, loads libSystem.B.dylib"),
        "{text}"
    );
}

#[test]
fn check_binaries_refuses_the_wrong_platform() {
    let (ok, text) = check_binaries("darwin", "amd64", &fixture());
    assert!(!ok && text.contains("CPU type 0x100000c, not amd64"), "{text}");
    let (ok, text) = check_binaries("linux", "arm64", &fixture());
    assert!(!ok && text.contains("not an ELF file"), "{text}");
    // This test's own executable is an ELF file for the machine it runs on.
    let me = std::env::current_exe().unwrap();
    let (this, other) = if cfg!(target_arch = "aarch64") {
        ("arm64", "amd64")
    } else {
        ("amd64", "arm64")
    };
    let (ok, text) = check_binaries("linux", this, &me);
    assert!(
        ok && text.contains(&format!("ELF 64-bit {this} executable")),
        "{text}"
    );
    let (ok, text) = check_binaries("linux", other, &me);
    assert!(!ok && text.contains("ELF machine"), "{text}");
    let (ok, text) = check_binaries("darwin", "arm64", &me);
    assert!(!ok && text.contains("not a 64-bit Mach-O file"), "{text}");
}

#[test]
fn check_binaries_catches_a_byte_changed_after_signing() {
    let dir = tempfile::tempdir().unwrap();
    let changed = copy_of_fixture(dir.path(), "changed");
    let mut bytes = std::fs::read(&changed).unwrap();
    bytes[0x4000] ^= 0xff; // in the second page: arm64 signatures hash 16 KiB pages
    std::fs::write(&changed, bytes).unwrap();
    let (ok, text) = check_binaries("darwin", "arm64", &changed);
    assert!(
        !ok && text.contains("page 1 does not match its code directory hash"),
        "{text}"
    );
}

#[test]
fn stable_uuid_makes_two_links_identical_and_keeps_the_signature_valid() {
    let dir = tempfile::tempdir().unwrap();
    let first = copy_of_fixture(dir.path(), "first");
    // A second link of the same objects: the same bytes but for zig's UUID (and the page hash
    // that covers it, left stale here, as the rewrite recomputes it).
    let second = copy_of_fixture(dir.path(), "second");
    let mut bytes = std::fs::read(&second).unwrap();
    let at = uuid_offset(&bytes);
    bytes[at..at + 16].copy_from_slice(b"another link....");
    std::fs::write(&second, &bytes).unwrap();

    let out = script("macho-stable-uuid", &[&first, &second]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first_bytes = std::fs::read(&first).unwrap();
    assert_eq!(
        first_bytes,
        std::fs::read(&second).unwrap(),
        "the two links differ"
    );
    assert_ne!(
        first_bytes,
        std::fs::read(fixture()).unwrap(),
        "the UUID was not replaced"
    );
    for file in [&first, &second] {
        let (ok, text) = check_binaries("darwin", "arm64", file);
        assert!(ok, "{text}");
    }
    // A second pass changes nothing.
    assert!(script("macho-stable-uuid", &[&first]).status.success());
    assert_eq!(first_bytes, std::fs::read(&first).unwrap(), "not idempotent");
}

#[test]
fn stable_uuid_refuses_what_is_not_macho() {
    let dir = tempfile::tempdir().unwrap();
    let elf = dir.path().join("elf");
    std::fs::copy(std::env::current_exe().unwrap(), &elf).unwrap();
    let out = script("macho-stable-uuid", &[&elf]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a 64-bit Mach-O file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
