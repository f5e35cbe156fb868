//! The in-memory store's resident memory holding N typical visitors (default 1,000,000), created
//! through the store's own API. Prints one JSON line.

use std::process::ExitCode;

use visitor_bench::{resident_kib, typical_visitor};
use visitor_domain::NewVisitor;
use visitor_store::{MemoryStore, VisitorStore};

/// The service's allocator, so the figure is the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let count: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("memory-footprint: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (before, _) = resident_kib();
    let store = MemoryStore::new();
    let outcome: Result<(), String> = runtime.block_on(async {
        for n in 1..=count {
            let body = typical_visitor(n);
            let new = body
                .as_object()
                .ok_or("not an object")
                .and_then(|map| NewVisitor::from_json(map).map_err(|_| "invalid"))
                .map_err(str::to_owned)?;
            store.create(new).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    if let Err(error) = outcome {
        eprintln!("memory-footprint: {error}");
        return ExitCode::FAILURE;
    }
    let (after, peak) = resident_kib();
    println!(
        "{{\"visitors\":{},\"rss_before_kib\":{before},\"rss_after_kib\":{after},\"peak_kib\":{peak},\"store_kib\":{}}}",
        store.len(),
        after.saturating_sub(before)
    );
    ExitCode::SUCCESS
}
