//! The floor for the audit benchmark: read the same files and parse them into generic YAML
//! values with the same library, doing nothing else. `cargo run --release --example parse_only
//! -- DIR`.

use std::path::Path;

fn walk(dir: &Path, count: &mut usize) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("readable dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, count);
        } else {
            let text = std::fs::read_to_string(&path).expect("UTF-8 file");
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let value: serde_yaml::Value = serde::Deserialize::deserialize(doc).expect("valid YAML");
                std::hint::black_box(&value);
                *count += 1;
            }
        }
    }
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: parse_only DIR");
    let mut count = 0;
    walk(Path::new(&dir), &mut count);
    println!("{count} documents parsed");
}
