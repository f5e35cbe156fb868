//! What an operator reads: the log (the subscriber, our JSON line formatter and the buffered
//! writer behind it) and the metrics registry. It records; the middleware decides what.

pub(crate) mod log_line;
pub(crate) mod log_writer;
pub(crate) mod logging;
pub(crate) mod metrics;
