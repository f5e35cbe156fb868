//! The JSON log line: one object per event, `timestamp`, `level`, the event's fields (`message`
//! first) and `target`, as `tracing-subscriber`'s flattened JSON writes them, but written
//! straight into the line: no serializer, no string per field, the date of the current second
//! formatted once per thread.

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, Timelike};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as JSON lines (see the module's documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Events forwarded from the `log` crate carry their real target in fields named `log.*`.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_str("\"")?;
        let mut fields = Fields {
            out: &mut writer,
            skip_log_fields: normalized.is_some(),
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_json_str(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`.
struct Fields<'a, W> {
    out: &'a mut W,
    skip_log_fields: bool,
    result: fmt::Result,
}

impl<W: Write> Fields<'_, W> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() || (self.skip_log_fields && field.name().starts_with("log.")) {
            return;
        }
        self.result = (|| {
            self.out.write_str(",\"")?;
            Escaping(&mut *self.out).write_str(field.name())?;
            self.out.write_str("\":")?;
            value(self.out)
        })();
    }
}

impl<W: Write> Visit for Fields<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |out| write_json_str(out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.entry(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.entry(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    /// Finite numbers in the shortest form that reads back the same; NaN and the infinities,
    /// which JSON cannot write, as `null` (as `serde_json` does).
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, |out| {
            if value.is_finite() {
                out.write_str(ryu::Buffer::new().format_finite(value))
            } else {
                out.write_str("null")
            }
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }

    /// `%value` and `?value` fields, and the message: written through the escaper, so nothing is
    /// formatted into a string of its own first.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |out| {
            out.write_char('"')?;
            write!(Escaping(&mut *out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// A JSON string: quoted, with `"`, `\` and the control characters escaped.
fn write_json_str(out: &mut impl Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaping(&mut *out).write_str(value)?;
    out.write_char('"')
}

/// Escapes what is written through it for the inside of a JSON string.
struct Escaping<'a, W>(&'a mut W);

/// The bytes a JSON string cannot hold as they are: `"`, `\` and the control characters.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

impl<W: Write> Write for Escaping<'_, W> {
    fn write_str(&mut self, value: &str) -> fmt::Result {
        let bytes = value.as_bytes();
        let mut start = 0;
        for (i, &byte) in bytes.iter().enumerate() {
            if !NEEDS_ESCAPE[usize::from(byte)] {
                continue;
            }
            // Only ASCII bytes are escaped, so `start..i` lies on character boundaries.
            self.0.write_str(&value[start..i])?;
            match byte {
                b'"' => self.0.write_str("\\\"")?,
                b'\\' => self.0.write_str("\\\\")?,
                b'\n' => self.0.write_str("\\n")?,
                b'\r' => self.0.write_str("\\r")?,
                b'\t' => self.0.write_str("\\t")?,
                0x08 => self.0.write_str("\\b")?,
                0x0c => self.0.write_str("\\f")?,
                _ => write!(self.0, "\\u{byte:04x}")?,
            }
            start = i + 1;
        }
        self.0.write_str(&value[start..])
    }
}

/// `2026-11-25T06:11:40.123456Z`: UTC, always six fractional digits (as `tracing-subscriber`
/// writes it). The part up to the second is formatted once per second and thread.
fn write_timestamp(out: &mut impl Write, now: SystemTime) -> fmt::Result {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    // A clock before 1970 is written as 1970; nothing here runs then.
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != seconds {
            text.clear();
            let at = i64::try_from(seconds)
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .unwrap_or_default();
            write!(
                text,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                at.year(),
                at.month(),
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            )?;
            *cached = seconds;
        }
        out.write_str(text)
    })?;
    write!(out, ".{:06}Z", since_epoch.subsec_micros())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use proptest::prelude::*;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// What the subscriber wrote, shared with the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    /// The lines `emit` logs, each parsed as JSON.
    fn lines(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    #[test]
    fn an_event_is_one_json_object_in_tracing_subscribers_key_order() {
        let method = "GET";
        let written = lines(|| {
            tracing::info!(
                %method,
                status = 200_u16,
                latency_ms = 0.25,
                negative = -3_i64,
                ok = true,
                big = 7_u128,
                quoted = ?"a\"b",
                "request"
            );
        });
        assert_eq!(written.len(), 1);
        let line = written[0].as_object().unwrap();
        let keys: Vec<&str> = line.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "timestamp",
                "level",
                "message",
                "method",
                "status",
                "latency_ms",
                "negative",
                "ok",
                "big",
                "quoted",
                "target"
            ]
        );
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "request");
        assert_eq!(line["method"], "GET");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency_ms"], 0.25);
        assert_eq!(line["negative"], -3);
        assert_eq!(line["ok"], true);
        assert_eq!(line["big"], 7);
        assert_eq!(line["quoted"], "\"a\\\"b\"");
        assert_eq!(line["target"], module_path!());
    }

    #[test]
    fn numbers_json_cannot_write_are_null() {
        let written = lines(|| tracing::warn!(nan = f64::NAN, inf = f64::INFINITY, "odd"));
        assert_eq!(written[0]["nan"], serde_json::Value::Null);
        assert_eq!(written[0]["inf"], serde_json::Value::Null);
        assert_eq!(written[0]["level"], "WARN");
    }

    #[test]
    fn errors_are_written_by_their_display() {
        let error = std::io::Error::other("disk \"full\"");
        let written = lines(|| {
            tracing::error!(
                error = &error as &(dyn std::error::Error + 'static),
                "failed"
            );
        });
        assert_eq!(written[0]["error"], "disk \"full\"");
    }

    #[test]
    fn log_records_carry_their_own_target_and_no_log_fields() {
        let _ = tracing_log::LogTracer::init();
        let written = lines(|| log::info!(target: "some::crate", "from log"));
        let line = written[0].as_object().unwrap();
        assert_eq!(line["target"], "some::crate");
        assert_eq!(line["message"], "from log");
        assert!(line.keys().all(|key| !key.starts_with("log.")), "{line:?}");
    }

    proptest! {
        /// Any text, as a message or a field, reads back exactly.
        #[test]
        fn any_text_reads_back_exactly(text in any::<String>()) {
            let written = lines(|| tracing::info!(field = text.as_str(), "{text}"));
            prop_assert_eq!(written[0]["field"].as_str(), Some(text.as_str()));
            prop_assert_eq!(written[0]["message"].as_str(), Some(text.as_str()));
        }

        /// The timestamp is chrono's RFC 3339 form with microseconds, for any instant.
        #[test]
        fn timestamps_are_rfc_3339_in_microseconds(micros in 0_u64..253_402_300_800_000_000) {
            let at = UNIX_EPOCH + Duration::from_micros(micros);
            let mut written = String::new();
            write_timestamp(&mut written, at).unwrap();
            let expected = DateTime::<chrono::Utc>::from(at)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            prop_assert_eq!(written, expected);
        }
    }

    #[test]
    fn the_cached_second_moves_on() {
        let mut written = String::new();
        for micros in [1_999_999, 2_000_000, 1_000_000] {
            write_timestamp(&mut written, UNIX_EPOCH + Duration::from_micros(micros)).unwrap();
            written.push(' ');
        }
        assert_eq!(
            written,
            "1970-01-01T00:00:01.999999Z 1970-01-01T00:00:02.000000Z 1970-01-01T00:00:01.000000Z "
        );
    }
}
