//! What List and the change feed share in reading their query strings: the pairs, and a
//! problem named for one parameter in a 400's `details`.

use visitor_domain::{ErrorCode, FieldError, ValidationErrors};

use crate::http::error::ApiError;

/// The query string's pairs, in order; a string that is not `application/x-www-form-urlencoded`
/// is a 400.
pub(crate) fn pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(query)
        .map_err(|error| ApiError::BadRequest(format!("the query string is malformed: {error}")))
}

/// Names a problem of the parameter `key`.
pub(crate) fn problem(
    errors: &mut ValidationErrors,
    key: &str,
    code: ErrorCode,
    description: String,
) {
    errors.add(key, FieldError::new(code, description));
}
