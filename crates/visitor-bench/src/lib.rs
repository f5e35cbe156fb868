//! Bench-only helpers: the visitor every benchmark serves and stores, and the process's memory.

use serde_json::{json, Value};

/// A typical visitor body: the seed's visitor with a real address and a unique external id.
pub fn typical_visitor(n: u64) -> Value {
    json!({
        "name": format!("Visitor {n}"),
        "email": format!("visitor{n}@example.com"),
        "phone": "+65 12345678",
        "notes": "This visitor is really cool.",
        "external_id": format!("ext-{n}"),
    })
}

/// The current and peak resident memory of this process, in KiB (`VmRSS`, `VmHWM`).
pub fn resident_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
