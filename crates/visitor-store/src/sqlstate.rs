//! What a PostgreSQL error code says about the connection that received it.

/// SQLSTATEs that mean the server cannot serve now (connection exceptions, shutdown, too many
/// connections, read-only standby) rather than that the request is wrong: a connection that got
/// one is not used again.
pub(crate) fn unreachable_state(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P") || code == "53300" || code == "25006"
}

#[cfg(test)]
mod tests {
    use super::unreachable_state;

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
}
