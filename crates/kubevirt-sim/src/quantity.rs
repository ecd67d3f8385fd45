//! Kubernetes quantities, as far as the simulator needs them: memory in bytes and CPU in
//! millicores, to compute launcher-pod requests the way KubeVirt does.

/// Bytes of a memory quantity (`1Gi`, `512M`, `1073741824`, `1.5Gi`).
pub fn bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "m" => 1e-3,
        _ if suffix.starts_with('e') || suffix.starts_with('E') => 10f64.powi(suffix[1..].parse().ok()?),
        _ => return None,
    };
    let v = n * mult;
    (v >= 0.0).then(|| v.ceil() as u64)
}

/// Millicores of a CPU quantity (`2`, `500m`, `1.5`).
pub fn millicores(q: &str) -> Option<u64> {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m.parse::<f64>().ok().map(|v| v.ceil() as u64);
    }
    q.parse::<f64>().ok().map(|v| (v * 1000.0).ceil() as u64)
}

/// Formats bytes as a quantity the API server keeps exact (`Mi` when whole, else bytes).
pub fn format_bytes(b: u64) -> String {
    const MI: u64 = 1024 * 1024;
    if b.is_multiple_of(MI) {
        format!("{}Mi", b / MI)
    } else {
        b.to_string()
    }
}

/// Formats millicores (`2` when whole, else `1500m`).
pub fn format_millicores(m: u64) -> String {
    if m.is_multiple_of(1000) {
        (m / 1000).to_string()
    } else {
        format!("{m}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_memory_and_cpu() {
        assert_eq!(bytes("1Gi"), Some(1 << 30));
        assert_eq!(bytes("512Mi"), Some(512 << 20));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(bytes("12345"), Some(12345));
        assert_eq!(bytes("lots"), None);
        assert_eq!(millicores("2"), Some(2000));
        assert_eq!(millicores("250m"), Some(250));
        assert_eq!(millicores("0.5"), Some(500));
        assert_eq!(format_bytes(300 << 20), "300Mi");
        assert_eq!(format_millicores(1500), "1500m");
    }
}
