//! Black-box tests of the Visitors API live in `api/`; this library is empty.
