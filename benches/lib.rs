//! Helpers shared by zt's criterion benchmarks.
#![forbid(unsafe_code)]

/// The median time per iteration, in nanoseconds, that criterion
/// estimated for `group/name` in `criterion_dir`; the benches print their
/// ratios from it.
///
/// # Panics
///
/// If the estimate file is missing or malformed (the bench did not run).
#[allow(
    clippy::panic,
    clippy::unwrap_used,
    reason = "bench support: a missing estimate is a broken bench"
)]
pub fn criterion_median_ns(criterion_dir: &std::path::Path, group: &str, name: &str) -> f64 {
    let path = criterion_dir
        .join(group)
        .join(name)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["median"]["point_estimate"]
        .as_f64()
        .unwrap_or_else(|| panic!("no median in {}", path.display()))
}
