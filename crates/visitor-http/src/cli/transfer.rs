//! `visitor-http export` and `visitor-http import` (contract §9.3): every visitor out as NDJSON
//! of Show bodies, and back in keeping ids. The rows go through PostgreSQL's COPY protocol
//! (the store's `export` and `restore`), streaming: memory stays flat whatever the file's size.
//!
//! Standard output carries only the export itself; what the commands did goes to standard
//! error, with a progress bar when standard error is a terminal. Exit codes: 0 done (for
//! import: no line failed), 1 some lines failed, 2 the command could not run (no
//! `DATABASE_URL`, a file that cannot be opened, a line that is not UTF-8, the database lost).

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use secrecy::ExposeSecret;
use visitor_domain::Visitor;
use visitor_store::{PgStore, Restored};

use crate::app::config::Config;

/// Visitors per restore batch (one COPY and one commit each), and the most bytes of lines a
/// batch holds, so a file of large visitors keeps memory as flat as one of small ones.
const BATCH_LINES: usize = 5_000;
const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Why a command stopped: it could not run (exit 2).
type Fatal = anyhow::Error;

fn store(config: &Config) -> Result<PgStore, Fatal> {
    let Some(url) = &config.database_url else {
        anyhow::bail!(
            "export and import work on PostgreSQL: set DATABASE_URL (or --database-url). In the \
             in-memory mode the visitors live in the running process: use its API \
             (List Visitors, POST /api/v2/chat/visitors/import)"
        );
    };
    PgStore::connect_lazy(url.expose_secret(), &config.pg_options())
        .context("DATABASE_URL is not a valid PostgreSQL URL")
}

/// A progress bar on standard error when it is a terminal; hidden otherwise.
fn progress(length: Option<u64>, template: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(length, ProgressDrawTarget::hidden());
    }
    let bar = match length {
        Some(length) => ProgressBar::new(length),
        None => ProgressBar::new_spinner(),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `visitor-http export [--output FILE]`.
pub(crate) async fn export(config: &Config, output: Option<&Path>) -> ExitCode {
    match run_export(config, output).await {
        Ok(count) => {
            eprintln!("exported {count} visitors");
            ExitCode::SUCCESS
        }
        Err(error) => fatal(&error),
    }
}

async fn run_export(config: &Config, output: Option<&Path>) -> Result<u64, Fatal> {
    let store = store(config)?;
    let mut out: Box<dyn Write + Send> = match output {
        Some(path) => Box::new(BufWriter::with_capacity(
            1 << 20,
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 20, io::stdout())),
    };
    let bar = progress(None, "{spinner} {human_pos} visitors exported ({per_sec})");
    let count = store
        .export(&mut out, &mut |written| bar.set_position(written))
        .await
        .context("the export failed")?;
    bar.finish_and_clear();
    Ok(count)
}

/// What an import did.
#[derive(Debug, Default)]
struct Tally {
    created: u64,
    skipped: u64,
    failed: u64,
}

/// `visitor-http import FILE`.
pub(crate) async fn import(config: &Config, file: &str) -> ExitCode {
    let mut tally = Tally::default();
    let outcome = run_import(config, file, &mut tally).await;
    eprintln!(
        "created {}, skipped {}, failed {}",
        tally.created, tally.skipped, tally.failed
    );
    match outcome {
        Err(error) => fatal(&error),
        Ok(()) if tally.failed > 0 => ExitCode::from(1),
        Ok(()) => ExitCode::SUCCESS,
    }
}

async fn run_import(config: &Config, file: &str, tally: &mut Tally) -> Result<(), Fatal> {
    let store = store(config)?;
    let (input, length): (Box<dyn Read>, Option<u64>) = if file == "-" {
        (Box::new(io::stdin()), None)
    } else {
        let opened = File::open(file).with_context(|| format!("cannot open {file}"))?;
        let length = opened.metadata().ok().map(|m| m.len());
        (Box::new(opened), length)
    };
    let bar = progress(
        length,
        "{bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
    );
    let mut reader = BufReader::with_capacity(1 << 20, bar.wrap_read(input));
    let mut batch = Batch::default();
    let mut raw = Vec::new();
    let mut number = 0u64;
    loop {
        raw.clear();
        let read = reader
            .read_until(b'\n', &mut raw)
            .with_context(|| format!("cannot read {file}"))?;
        if read == 0 {
            break;
        }
        number += 1;
        let Ok(line) = std::str::from_utf8(&raw) else {
            batch.restore(&store, tally, &bar).await?;
            anyhow::bail!("line {number} is not UTF-8; the lines before it are imported");
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Visitor>(line) {
            Ok(visitor) => batch.push(number, visitor, line.len()),
            Err(error) => batch.refuse(number, format!("not a visitor: {error}")),
        }
        if batch.full() {
            batch.restore(&store, tally, &bar).await?;
        }
    }
    batch.restore(&store, tally, &bar).await?;
    bar.finish_and_clear();
    Ok(())
}

/// Lines read and not yet restored.
#[derive(Debug, Default)]
struct Batch {
    visitors: Vec<(u64, Visitor)>,
    bytes: usize,
    /// Lines that are not visitors, with why: reported in line order with the batch's others.
    refused: Vec<(u64, String)>,
}

impl Batch {
    fn push(&mut self, number: u64, visitor: Visitor, bytes: usize) {
        self.visitors.push((number, visitor));
        self.bytes += bytes;
    }

    fn refuse(&mut self, number: u64, reason: String) {
        self.refused.push((number, reason));
    }

    fn full(&self) -> bool {
        self.visitors.len() >= BATCH_LINES || self.bytes >= BATCH_BYTES
    }

    /// Restores the batch, tallies it and reports its failed lines in line order.
    async fn restore(
        &mut self,
        store: &PgStore,
        tally: &mut Tally,
        bar: &ProgressBar,
    ) -> Result<(), Fatal> {
        let mut outcomes = store.restore(&self.visitors).await.context(
            "the database failed a batch (nothing of it is stored); run the import again to resume",
        )?;
        outcomes.extend(
            self.refused
                .drain(..)
                .map(|(number, reason)| (number, Restored::Failed(reason))),
        );
        outcomes.sort_by_key(|(number, _)| *number);
        for (number, outcome) in outcomes {
            match outcome {
                Restored::Created => tally.created += 1,
                Restored::Skipped => tally.skipped += 1,
                Restored::Failed(reason) => {
                    tally.failed += 1;
                    bar.suspend(|| eprintln!("line {number}: {reason}"));
                }
            }
        }
        self.visitors.clear();
        self.bytes = 0;
        Ok(())
    }
}

fn fatal(error: &Fatal) -> ExitCode {
    eprintln!("visitor-http: {error:#}");
    ExitCode::from(2)
}
