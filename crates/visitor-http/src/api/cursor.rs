//! List's opaque cursors: a position in a keyset walk (a visitor id), bound to the filters and
//! the sort it was made with, and checked so a mangled or edited cursor is refused.
//!
//! A cursor is 25 bytes written as 50 hex digits: a format byte, the id (8 bytes), the first 8
//! bytes of a digest of the sort and filters, and the first 8 bytes of a digest of all that.
//! The checksum catches edits and corruption; it is not a secret (a cursor is only a position,
//! and reveals nothing a page does not show).

use sha2::{Digest, Sha256};
use visitor_domain::{VisitorFilter, VisitorId};

const FORMAT: u8 = 1;
const LEN: usize = 25;
/// How long a cursor is, in characters.
pub const CURSOR_CHARS: usize = LEN * 2;

/// What a cursor is bound to: the sort and the filters of the list it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding([u8; 8]);

impl Binding {
    pub fn new(descending: bool, filter: &VisitorFilter) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"visitors list v1\0");
        hasher.update(if descending { b"-id\0" } else { b"id\0\0" });
        hasher.update(filter.canonical().as_bytes());
        Self(first_eight(&hasher.finalize()))
    }
}

fn first_eight(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0; 8];
    out.copy_from_slice(&bytes[..8]);
    out
}

fn checksum(body: &[u8]) -> [u8; 8] {
    let mut hasher = Sha256::new();
    hasher.update(b"visitors cursor check\0");
    hasher.update(body);
    first_eight(&hasher.finalize())
}

/// The cursor of the position `id` in the list bound to `binding`.
pub fn encode(id: VisitorId, binding: Binding) -> String {
    let mut bytes = Vec::with_capacity(LEN);
    bytes.push(FORMAT);
    bytes.extend_from_slice(&id.get().to_be_bytes());
    bytes.extend_from_slice(&binding.0);
    let check = checksum(&bytes);
    bytes.extend_from_slice(&check);
    hex::encode(bytes)
}

/// Why a cursor is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorError {
    /// Not a cursor of this service, or altered.
    Malformed,
    /// A real cursor, made for another sort or other filters.
    Mismatched,
}

/// The position a cursor holds, when it is intact and made for `binding`.
pub fn decode(cursor: &str, binding: Binding) -> Result<VisitorId, CursorError> {
    if cursor.len() != CURSOR_CHARS
        || !cursor
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(CursorError::Malformed);
    }
    let bytes = hex::decode(cursor).map_err(|_| CursorError::Malformed)?;
    let (body, check) = bytes.split_at(LEN - 8);
    if body[0] != FORMAT || checksum(body) != check {
        return Err(CursorError::Malformed);
    }
    let id = i64::from_be_bytes(first_eight(&body[1..9]));
    let id = VisitorId::new(id).map_err(|_| CursorError::Malformed)?;
    if body[9..17] != binding.0 {
        return Err(CursorError::Mismatched);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(pairs: &[(&str, &str)]) -> VisitorFilter {
        VisitorFilter::parse(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn a_cursor_round_trips_with_its_binding() {
        let binding = Binding::new(false, &filter(&[("banned", "true")]));
        let id = VisitorId::new(987_654_321).unwrap();
        let cursor = encode(id, binding);
        assert_eq!(cursor.len(), CURSOR_CHARS);
        assert_eq!(decode(&cursor, binding), Ok(id));
    }

    #[test]
    fn another_sort_or_filter_is_a_mismatch() {
        let id = VisitorId::new(5).unwrap();
        let cursor = encode(id, Binding::new(false, &filter(&[])));
        for other in [
            Binding::new(true, &filter(&[])),
            Binding::new(false, &filter(&[("banned", "false")])),
            Binding::new(false, &filter(&[("email", "a@b.io")])),
        ] {
            assert_eq!(decode(&cursor, other), Err(CursorError::Mismatched));
        }
        let folded = encode(id, Binding::new(false, &filter(&[("email", "A@B.io")])));
        assert_eq!(
            decode(
                &folded,
                Binding::new(false, &filter(&[("email", "a@b.IO")]))
            ),
            Ok(id)
        );
    }

    #[test]
    fn any_edit_is_malformed() {
        let binding = Binding::new(false, &filter(&[]));
        let cursor = encode(VisitorId::new(5).unwrap(), binding);
        for position in 0..cursor.len() {
            let mut edited: Vec<char> = cursor.chars().collect();
            edited[position] = if edited[position] == '0' { '1' } else { '0' };
            let edited: String = edited.into_iter().collect();
            assert_eq!(
                decode(&edited, binding),
                Err(CursorError::Malformed),
                "{position}"
            );
        }
        for junk in [
            "",
            "abc",
            &cursor.to_uppercase(),
            &format!("{cursor}0"),
            &cursor[1..],
        ] {
            assert_eq!(decode(junk, binding), Err(CursorError::Malformed), "{junk}");
        }
    }
}
