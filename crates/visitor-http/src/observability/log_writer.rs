//! The log's writer: a line is appended to a shared buffer (a lock held for one copy, no system
//! call, no allocation once the buffer has grown), and a thread of its own writes the buffer out
//! in batches. Nothing is lost: a writer that falls [`MAX_PENDING`] bytes behind makes the lines
//! that follow wait for room, and [`LogGuard`] writes out everything still held when it is
//! dropped; lines logged after that are written at once.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the buffer before the writer thread writes it out.
pub const LINGER: Duration = Duration::from_millis(10);

/// Pending bytes that make the writer thread write at once instead of lingering.
const BATCH: usize = 32 * 1024;

/// Pending bytes at which a line waits for the writer thread (about 16 k access lines).
pub const MAX_PENDING: usize = 4 * 1024 * 1024;

#[derive(Debug, Default)]
struct State {
    pending: Vec<u8>,
    /// The guard was dropped: the writer thread has written everything and is gone.
    stopped: bool,
    /// The guard is being dropped: the writer thread writes what is left and stops.
    stopping: bool,
}

#[derive(Debug)]
struct Shared<W> {
    state: Mutex<State>,
    /// Wakes the writer thread: lines arrived in an empty buffer, a batch is full, or stop.
    work: Condvar,
    /// Wakes lines waiting for room.
    room: Condvar,
    /// Where lines go; only the writer thread writes to it, or a line after the stop.
    output: Mutex<W>,
}

impl<W> Shared<W> {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The [`MakeWriter`] handed to the subscriber: every line goes to the shared buffer.
#[derive(Debug)]
pub struct LogWriter<W> {
    shared: Arc<Shared<W>>,
}

impl<W> Clone for LogWriter<W> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Keep it while the program runs: dropping it writes out every line still held, flushes the
/// output and stops the writer thread.
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard<W: Write + Send + 'static> {
    shared: Arc<Shared<W>>,
    thread: Option<JoinHandle<()>>,
}

/// A writer for `output` and the guard of its thread, named `log-writer`.
pub fn log_writer<W: Write + Send + 'static>(output: W) -> io::Result<(LogWriter<W>, LogGuard<W>)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        work: Condvar::new(),
        room: Condvar::new(),
        output: Mutex::new(output),
    });
    let thread = std::thread::Builder::new()
        .name("log-writer".to_owned())
        .spawn({
            let shared = Arc::clone(&shared);
            move || write_out(&shared)
        })?;
    Ok((
        LogWriter {
            shared: Arc::clone(&shared),
        },
        LogGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

/// The writer thread: waits for lines, lets a batch gather for up to [`LINGER`], swaps the
/// buffer for an empty one and writes it out without holding the lock.
fn write_out<W: Write>(shared: &Shared<W>) {
    let mut batch = Vec::new();
    let mut state = shared.state();
    loop {
        while state.pending.is_empty() && !state.stopping {
            state = shared
                .work
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if !state.stopping && state.pending.len() < BATCH {
            state = shared
                .work
                .wait_timeout_while(state, LINGER, |state| {
                    !state.stopping && state.pending.len() < BATCH
                })
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        if state.pending.is_empty() && state.stopping {
            state.stopped = true;
            drop(state);
            shared.room.notify_all();
            let mut output = shared.output.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = output.flush();
            return;
        }
        std::mem::swap(&mut state.pending, &mut batch);
        drop(state);
        shared.room.notify_all();
        let mut output = shared.output.lock().unwrap_or_else(PoisonError::into_inner);
        // A log that cannot be written (a closed pipe) has nowhere to report it.
        let _ = output.write_all(&batch);
        let _ = output.flush();
        drop(output);
        batch.clear();
        state = shared.state();
    }
}

impl<W: Write> Write for &LogWriter<W> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let shared = &*self.shared;
        let mut state = shared.state();
        while state.pending.len() >= MAX_PENDING && !state.stopped {
            state = shared
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.stopped {
            drop(state);
            let mut output = shared.output.lock().unwrap_or_else(PoisonError::into_inner);
            output.write_all(line)?;
            output.flush()?;
            return Ok(line.len());
        }
        let was_empty = state.pending.is_empty();
        let before = state.pending.len();
        state.pending.extend_from_slice(line);
        let fills_batch = before < BATCH && state.pending.len() >= BATCH;
        drop(state);
        // The writer thread sleeps while the buffer is empty, and lingers while it is short of a
        // batch: these are the two moments it needs waking.
        if was_empty || fills_batch {
            shared.work.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + 'a> MakeWriter<'a> for LogWriter<W> {
    type Writer = &'a LogWriter<W>;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl<W: Write + Send + 'static> Drop for LogGuard<W> {
    fn drop(&mut self) {
        self.shared.state().stopping = true;
        self.shared.work.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// Output shared with the test.
    #[derive(Clone, Default)]
    struct Output {
        written: Arc<Mutex<Vec<u8>>>,
        flushes: Arc<Mutex<usize>>,
    }

    impl Write for Output {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            *self.flushes.lock().unwrap() += 1;
            Ok(())
        }
    }

    fn line(n: usize) -> Vec<u8> {
        format!("line {n:08}\n").into_bytes()
    }

    #[test]
    fn every_line_is_written_in_order_once_the_guard_is_dropped() {
        let output = Output::default();
        let (writer, guard) = log_writer(output.clone()).unwrap();
        let lines = 50_000;
        for n in 0..lines {
            (&writer).write_all(&line(n)).unwrap();
        }
        drop(guard);
        let expected: Vec<u8> = (0..lines).flat_map(line).collect();
        assert_eq!(*output.written.lock().unwrap(), expected);
        assert!(*output.flushes.lock().unwrap() >= 1);
    }

    #[test]
    fn lines_from_many_threads_are_all_written_whole() {
        let output = Output::default();
        let (writer, guard) = log_writer(output.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for n in 0..20_000 {
                        (&writer).write_all(&line(t * 1_000_000 + n)).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let written = String::from_utf8(output.written.lock().unwrap().clone()).unwrap();
        let mut got: Vec<&str> = written.lines().collect();
        assert_eq!(got.len(), 80_000);
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), 80_000, "a line was written twice or torn");
    }

    #[test]
    fn a_line_after_the_stop_is_written_at_once() {
        let output = Output::default();
        let (writer, guard) = log_writer(output.clone()).unwrap();
        (&writer).write_all(b"before\n").unwrap();
        drop(guard);
        (&writer).write_all(b"after\n").unwrap();
        assert_eq!(*output.written.lock().unwrap(), b"before\nafter\n");
    }

    #[test]
    fn a_quiet_log_is_written_without_the_guard_being_dropped() {
        /// Reports each write, so the test waits on an event rather than a clock.
        struct Reporting(mpsc::Sender<Vec<u8>>);
        impl Write for Reporting {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let _ = self.0.send(buf.to_vec());
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (sender, receiver) = mpsc::channel();
        let (writer, guard) = log_writer(Reporting(sender)).unwrap();
        (&writer).write_all(b"one line\n").unwrap();
        let written = receiver.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(written, b"one line\n");
        drop(guard);
    }

    #[test]
    fn a_writer_that_falls_behind_holds_lines_back_instead_of_dropping_them() {
        /// Blocks every write until the test sends a permit.
        struct Gated(mpsc::Receiver<()>, Arc<Mutex<Vec<u8>>>);
        impl Write for Gated {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let _ = self.0.recv();
                self.1.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (permit, gate) = mpsc::channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let (writer, guard) = log_writer(Gated(gate, Arc::clone(&written))).unwrap();
        // More than MAX_PENDING bytes, while the output accepts nothing: the producer must wait.
        let line = vec![b'x'; 1024];
        let count = 2 * MAX_PENDING / line.len() + 8;
        let (done, finished) = mpsc::channel();
        let producer = std::thread::spawn({
            let writer = writer.clone();
            let line = line.clone();
            move || {
                for _ in 0..count {
                    (&writer).write_all(&line).unwrap();
                }
                done.send(()).unwrap();
            }
        });
        assert!(
            finished.recv_timeout(Duration::from_millis(300)).is_err(),
            "the producer went on while the output was stuck"
        );
        let pending = writer.shared.state().pending.len();
        assert!(
            pending <= MAX_PENDING + line.len(),
            "{pending} bytes pending"
        );
        // Open the gate for good: every write goes through.
        drop(permit);
        finished.recv_timeout(Duration::from_secs(30)).unwrap();
        producer.join().unwrap();
        drop(guard);
        assert_eq!(written.lock().unwrap().len(), count * line.len());
    }
}
