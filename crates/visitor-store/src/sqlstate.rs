//! What a PostgreSQL error code says about the connection that received it.

/// SQLSTATEs that mean the server cannot serve now (connection exceptions, shutdown, too many
/// connections, read-only standby) rather than that the request is wrong: a connection that got
/// one is not used again.
fn unreachable_state(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P") || code == "53300" || code == "25006"
}

/// `query_canceled`: a statement ran past the store's `statement_timeout` (or an operator
/// cancelled it).
const QUERY_CANCELED: &str = "57014";

/// True when a connection that received `code` is not used again and the call reports the
/// storage unavailable (503): the server cannot serve now, or a statement was cancelled (§11:
/// the connection is replaced).
pub(crate) fn spends_connection(code: &str) -> bool {
    unreachable_state(code) || code == QUERY_CANCELED
}

#[cfg(test)]
mod tests {
    use super::{spends_connection, unreachable_state};

    #[test]
    fn unreachable_states_are_the_server_not_serving_now() {
        for code in [
            "08000", "08006", "08P01", "57P01", "57P02", "57P03", "53300", "25006",
        ] {
            assert!(unreachable_state(code), "{code}");
        }
        for code in [
            "23505", "23514", "42P01", "40001", "57014", "53200", "25P02", "0", "",
        ] {
            assert!(!unreachable_state(code), "{code}");
        }
    }

    #[test]
    fn a_cancelled_statement_spends_its_connection_too() {
        for code in ["57014", "08006", "57P01", "53300"] {
            assert!(spends_connection(code), "{code}");
        }
        for code in ["23505", "40001", "57000", "5701", "57014 "] {
            assert!(!spends_connection(code), "{code}");
        }
    }
}
