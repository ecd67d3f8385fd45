//! `krew-manifest.yaml` follows krew's validation rules, and every `bin` is a binary that this
//! workspace builds under the name kubectl derives from the plugin name.

use std::path::Path;

use serde_yaml::Value;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `[[bin]] name`s of every plugin crate.
fn workspace_binaries() -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root().join("plugins")).unwrap() {
        let manifest = std::fs::read_to_string(entry.unwrap().path().join("Cargo.toml")).unwrap();
        let mut in_bin = false;
        for line in manifest.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin && let Some(name) = line.strip_prefix("name = ") {
                names.push(name.trim_matches('"').to_string());
            }
        }
    }
    names
}

/// `[workspace.package] version` of the root Cargo.toml.
fn workspace_version() -> String {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let line = manifest
        .lines()
        .find(|l| l.starts_with("version = "))
        .expect("workspace version");
    line["version = ".len()..].trim_matches('"').to_string()
}

fn is_semver_with_v(version: &str) -> bool {
    let Some(rest) = version.strip_prefix('v') else {
        return false;
    };
    let core = rest.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for key in path {
        cur = &cur[*key];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("{} is not a string", path.join(".")))
}

#[test]
fn every_plugin_document_is_valid_for_krew() {
    let text = std::fs::read_to_string(root().join("krew-manifest.yaml")).unwrap();
    let binaries = workspace_binaries();
    let mut names = Vec::new();
    // (os, arch) -> (uri, sha256) of the first document: the plugins share one archive.
    let mut archives: Vec<((String, String), (String, String))> = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc: Value = serde::Deserialize::deserialize(doc).unwrap();
        assert_eq!(
            str_at(&doc, &["apiVersion"]),
            "krew.googlecontainertools.github.com/v1alpha2"
        );
        assert_eq!(str_at(&doc, &["kind"]), "Plugin");
        let name = str_at(&doc, &["metadata", "name"]);
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{name}"
        );
        names.push(name.to_string());
        let spec = &doc["spec"];
        assert!(is_semver_with_v(str_at(spec, &["version"])), "version of {name}");
        let short = str_at(spec, &["shortDescription"]);
        assert!(
            !short.is_empty() && !short.contains('\n'),
            "shortDescription of {name} is one line"
        );
        assert!(!str_at(spec, &["description"]).trim().is_empty());
        let caveats = str_at(spec, &["caveats"]);
        assert!(
            caveats.contains("get and list") || caveats.contains("RBAC") || caveats.contains("ClusterRole"),
            "caveats state the RBAC"
        );
        assert!(str_at(spec, &["homepage"]).starts_with("https://"));
        let version = str_at(spec, &["version"]);
        assert_eq!(
            version,
            format!("v{}", workspace_version()),
            "{name}: scripts/release writes the workspace version"
        );
        let platforms = spec["platforms"].as_sequence().expect("platforms");
        assert!(!platforms.is_empty());
        let mut selectors = Vec::new();
        let expected_bin = format!("kubectl-{}", name.replace('-', "_"));
        for p in platforms {
            let uri = str_at(p, &["uri"]);
            assert!(uri.ends_with(".tar.gz") || uri.ends_with(".zip"), "{uri}");
            let sha = str_at(p, &["sha256"]);
            assert!(
                sha.len() == 64
                    && sha
                        .chars()
                        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "{sha}"
            );
            let labels = p["selector"]["matchLabels"]
                .as_mapping()
                .expect("selector.matchLabels");
            assert!(!labels.is_empty());
            for (k, v) in labels {
                let k = k.as_str().unwrap();
                assert!(k == "os" || k == "arch", "selector key {k}");
                let v = v.as_str().unwrap();
                assert!(
                    ["linux", "darwin", "windows", "amd64", "arm64"].contains(&v),
                    "{v}"
                );
            }
            let (os, arch) = (
                str_at(p, &["selector", "matchLabels", "os"]),
                str_at(p, &["selector", "matchLabels", "arch"]),
            );
            assert!(
                uri.ends_with(&format!(
                    "/{version}/kubectl-vm-plugins-{version}-{os}-{arch}.tar.gz"
                )),
                "{name}: the {os}/{arch} entry points to {uri}"
            );
            assert!(
                !selectors.contains(&(os, arch)),
                "{name}: two entries for {os}/{arch}"
            );
            selectors.push((os, arch));
            let platform = (os.to_string(), arch.to_string());
            let archive = (uri.to_string(), sha.to_string());
            match archives.iter().find(|(p, _)| *p == platform) {
                Some((_, first)) => assert_eq!(
                    *first, archive,
                    "{name}: the {os}/{arch} archive differs from the other plugins'"
                ),
                None => archives.push((platform, archive)),
            }
            let bin = str_at(p, &["bin"]);
            assert_eq!(
                bin, expected_bin,
                "kubectl finds `kubectl {name}` as {expected_bin}"
            );
            assert!(
                binaries.contains(&bin.to_string()),
                "{bin} is not built by the workspace ({binaries:?})"
            );
            if let Some(files) = p.get("files") {
                let files = files.as_sequence().unwrap();
                assert!(!files.is_empty());
                for f in files {
                    assert!(!str_at(f, &["from"]).is_empty() && !str_at(f, &["to"]).is_empty());
                }
                assert!(
                    files.iter().any(|f| str_at(f, &["from"]) == "LICENSE"),
                    "LICENSE is extracted"
                );
                // What scripts/release puts at the top of the archive: the plugin, its
                // kubectl completion executable, LICENSE.
                let completer = bin.replacen("kubectl-", "kubectl_complete-", 1);
                for f in files {
                    let from = str_at(f, &["from"]);
                    assert!(
                        from == "LICENSE" || from == bin || from == completer,
                        "{name}: {from} is not in the archive"
                    );
                }
                assert!(
                    files.iter().any(|f| str_at(f, &["from"]) == completer),
                    "{name}: {completer} is extracted (for kubectl's completion)"
                );
                assert!(
                    root().join("completions/kubectl").join(&completer).exists(),
                    "{completer} is generated in completions/kubectl/"
                );
            }
        }
        // Every platform a kubectl user is likely to run: linux and darwin, amd64 and arm64.
        selectors.sort();
        assert_eq!(
            selectors,
            [
                ("darwin", "amd64"),
                ("darwin", "arm64"),
                ("linux", "amd64"),
                ("linux", "arm64")
            ],
            "{name}: the platforms"
        );
    }
    for plugin in ["vm-audit", "vm-drain-safe", "vm-recover"] {
        assert!(names.contains(&plugin.to_string()), "{plugin} missing: {names:?}");
    }
}
