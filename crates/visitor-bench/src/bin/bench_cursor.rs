//! `bench-cursor ID`: prints the cursor of the position after visitor ID in the unfiltered list
//! sorted by id, as the service writes it (`page[after]`), so the benchmark can ask for a page
//! at any depth without walking to it.

use std::process::ExitCode;

use visitor_domain::VisitorId;

fn main() -> ExitCode {
    let id = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse::<i64>().ok());
    match id.map(VisitorId::new) {
        Some(Ok(id)) => {
            println!("{}", visitor_http::list_cursor_after(id));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: bench-cursor ID (a visitor id, 1 or more)");
            ExitCode::FAILURE
        }
    }
}
