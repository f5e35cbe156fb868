//! `bench-cursor ID`: prints the cursor of the position after visitor ID in the unfiltered list
//! sorted by id, as the service writes it (`page[after]`); `bench-cursor feed TRANSACTION
//! SEQUENCE`: the change feed's cursor of that position (`cursor`). So the benchmark can ask for
//! a page at any depth without walking to it.

use std::process::ExitCode;

use visitor_domain::VisitorId;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |at: usize| args.get(at).and_then(|arg| arg.parse::<u64>().ok());
    if args.first().map(String::as_str) == Some("feed") {
        if let (Some(transaction), Some(sequence)) = (number(1), number(2)) {
            println!("{}", visitor_http::feed_cursor_at(transaction, sequence));
            return ExitCode::SUCCESS;
        }
    } else if let Some(Ok(id)) = args
        .first()
        .and_then(|arg| arg.parse::<i64>().ok())
        .map(VisitorId::new)
    {
        println!("{}", visitor_http::list_cursor_after(id));
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "usage: bench-cursor ID (a visitor id, 1 or more) | bench-cursor feed TRANSACTION SEQUENCE"
    );
    ExitCode::FAILURE
}
