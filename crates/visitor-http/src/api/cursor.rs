//! Opaque cursors, checked so a mangled or edited cursor is refused: [`seal`] and [`unseal`]
//! write and read any of them (a format byte, the content, and the first 8 bytes of a digest
//! of both, as lowercase hex); List's cursors are a position in a keyset walk (a visitor id),
//! bound to the filters and the sort it was made with; the change feed's are in
//! [`crate::api::changes`].
//!
//! A List cursor is 25 bytes written as 50 hex digits: the format byte, the id (8 bytes), the
//! first 8 bytes of a digest of the sort and filters, and the checksum. The checksum catches
//! edits and corruption; it is not a secret (a cursor is only a position, and reveals nothing a
//! page does not show).

use sha2::{Digest, Sha256};
use visitor_domain::{VisitorFilter, VisitorId};

const FORMAT: u8 = 1;
const LEN: usize = 25;

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

/// The first eight bytes of `bytes` (which has at least eight).
pub fn first_eight(bytes: &[u8]) -> [u8; 8] {
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

/// The cursor of `content` in format `format`: the format byte, the content and its checksum,
/// as lowercase hex.
pub fn seal(format: u8, content: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(content.len() + 9);
    bytes.push(format);
    bytes.extend_from_slice(content);
    let check = checksum(&bytes);
    bytes.extend_from_slice(&check);
    hex::encode(bytes)
}

/// The content of a cursor [`seal`]ed in `format` with `len` bytes of content; `None` when it
/// is not one (another length or format, not lowercase hex, or altered).
pub fn unseal(cursor: &str, format: u8, len: usize) -> Option<Vec<u8>> {
    if cursor.len() != (len + 9) * 2
        || !cursor
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let bytes = hex::decode(cursor).ok()?;
    let (body, check) = bytes.split_at(len + 1);
    (body[0] == format && checksum(body) == check).then(|| body[1..].to_vec())
}

/// The cursor of the position `id` in the list bound to `binding`.
pub fn encode(id: VisitorId, binding: Binding) -> String {
    let mut content = Vec::with_capacity(LEN - 9);
    content.extend_from_slice(&id.get().to_be_bytes());
    content.extend_from_slice(&binding.0);
    seal(FORMAT, &content)
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
    let content = unseal(cursor, FORMAT, LEN - 9).ok_or(CursorError::Malformed)?;
    let id = i64::from_be_bytes(first_eight(&content[..8]));
    let id = VisitorId::new(id).map_err(|_| CursorError::Malformed)?;
    if content[8..16] != binding.0 {
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
        assert_eq!(cursor.len(), LEN * 2);
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
