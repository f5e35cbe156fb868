//! The tracing subscriber: where log lines go and how they are written.

use std::io::{IsTerminal, Stdout};

use tracing_subscriber::EnvFilter;

use crate::observability::log_line::JsonLines;
use crate::observability::log_writer::{log_writer, LogGuard};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Installs the global subscriber, writing to standard output through [`log_writer`]: a request
/// appends its line to a buffer and goes on, a thread of its own writes the lines out in
/// batches. `RUST_LOG` filters (default `info`). Keep the returned guard until the end: dropping
/// it writes every line still held and flushes standard output.
pub fn init(format: Option<LogFormat>) -> std::io::Result<LogGuard<Stdout>> {
    let format = format.unwrap_or(if std::io::stdout().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let (writer, guard) = log_writer(std::io::stdout())?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder.event_format(JsonLines).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    Ok(guard)
}
