//! A property of the body parser, through the real middleware and routes: any JSON object (any
//! keys, nesting, types, keys named twice, escapes) sent to Create or Update never panics and
//! always ends in a 2xx or a §4 envelope.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::sync::Arc;

use actix_web::test::{call_service, init_service, read_body, TestRequest};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use secrecy::SecretString;
use visitor_http::{in_process, AppSettings, Role, TokenRegistry, TokenSpec};
use visitor_store::MemoryStore;

const TOKEN: &str = "property-token";

/// A JSON value as text, built so that objects may repeat keys and strings may be escaped in
/// any way JSON allows.
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String, bool),
    Array(Vec<Json>),
    Object(Vec<(String, bool, Json)>),
}

fn write_string(text: &str, escape_all: bool, out: &mut String) {
    if !escape_all {
        out.push_str(&serde_json::to_string(text).unwrap());
        return;
    }
    out.push('"');
    for unit in text.encode_utf16() {
        let _ = write!(out, "\\u{unit:04x}");
    }
    out.push('"');
}

impl Json {
    fn write(&self, out: &mut String) {
        match self {
            Self::Null => out.push_str("null"),
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Int(n) => out.push_str(&n.to_string()),
            Self::Float(f) => out.push_str(&serde_json::to_string(f).unwrap()),
            Self::Text(text, escape_all) => write_string(text, *escape_all, out),
            Self::Array(items) => {
                out.push('[');
                for (n, item) in items.iter().enumerate() {
                    if n > 0 {
                        out.push_str(" ,");
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Self::Object(entries) => {
                out.push_str("{ ");
                for (n, (key, escape_all, value)) in entries.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    write_string(key, *escape_all, out);
                    out.push_str(" :\n");
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "name", "email", "phone", "notes", "external_id", "banned", "created", "id",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        Just("visitor1@example.com".to_owned()),
        Just("+65 12345678".to_owned()),
        Just("2014-09-01T10:29:59Z".to_owned()),
        Just(String::new()),
        "[a-z0-9\u{0}-\u{1f}\u{80}-\u{10ffff}]{0,300}",
    ]
}

fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::Int),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Json::Float),
        (text(), any::<bool>()).prop_map(|(t, e)| Json::Text(t, e)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((key(), any::<bool>(), inner), 0..6).prop_map(Json::Object),
        ]
    })
}

impl Json {
    /// True when some object in the value names one key twice.
    fn repeats_a_key(&self) -> bool {
        match self {
            Self::Array(items) => items.iter().any(Self::repeats_a_key),
            Self::Object(entries) => {
                let mut keys: Vec<&str> = entries.iter().map(|(k, _, _)| k.as_str()).collect();
                keys.sort_unstable();
                let before = keys.len();
                keys.dedup();
                keys.len() != before || entries.iter().any(|(_, _, v)| v.repeats_a_key())
            }
            _ => false,
        }
    }
}

/// A body: an object whose keys are mostly the visitor's, sometimes repeated; and whether any
/// object in it names a key twice.
fn body() -> impl Strategy<Value = (String, bool)> {
    prop::collection::vec((key(), any::<bool>(), json()), 0..10).prop_map(|entries| {
        let object = Json::Object(entries);
        let mut out = String::new();
        object.write(&mut out);
        (out, object.repeats_a_key())
    })
}

const ALLOWED: [u16; 7] = [200, 201, 400, 409, 413, 415, 422];
const CODES: [&str; 5] = [
    "BadRequest",
    "Conflict",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "RecordInvalid",
];

#[test]
fn any_json_object_ends_in_a_2xx_or_an_envelope() {
    let system = actix_web::rt::System::new();
    let tokens = TokenRegistry::new(vec![TokenSpec::plain(
        Role::Administrator,
        &SecretString::from(TOKEN),
    )]);
    let settings = AppSettings::new(Arc::new(MemoryStore::new()), tokens);
    let app = system.block_on(init_service(in_process(settings).unwrap()));
    let existing = system.block_on(call_service(
        &app,
        TestRequest::post()
            .uri("/api/v2/chat/visitors")
            .insert_header(("authorization", format!("Bearer {TOKEN}")))
            .insert_header(("content-type", "application/json"))
            .set_payload("{}")
            .to_request(),
    ));
    assert_eq!(existing.status().as_u16(), 201);

    let mut runner = TestRunner::new(Config {
        cases: 400,
        ..Config::default()
    });
    runner
        .run(&(body(), any::<bool>()), |((body, repeats), create)| {
            let request = if create {
                TestRequest::post().uri("/api/v2/chat/visitors")
            } else {
                TestRequest::put().uri("/api/v2/chat/visitors/1")
            };
            let request = request
                .insert_header(("authorization", format!("Bearer {TOKEN}")))
                .insert_header(("content-type", "application/json"))
                .set_payload(body.clone())
                .to_request();
            let response = system.block_on(call_service(&app, request));
            let status = response.status().as_u16();
            let bytes = system.block_on(read_body(response));
            prop_assert!(ALLOWED.contains(&status), "{status} for {body}");
            let answer: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| TestCaseError::fail(format!("{e}: {bytes:?} for {body}")))?;
            if status >= 400 {
                let code = answer["error"].as_str().unwrap_or_default();
                prop_assert!(CODES.contains(&code), "{status} {answer} for {body}");
                prop_assert!(answer["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()));
                prop_assert_eq!(answer.get("details").is_some(), code == "RecordInvalid");
            } else {
                prop_assert_eq!(answer.as_object().map(|o| o.len()), Some(8), "{}", answer);
            }
            // A key named twice anywhere is refused, whatever else is wrong with the body.
            if repeats {
                prop_assert_eq!(status, 400, "{} for {}", answer, body);
            }
            Ok(())
        })
        .unwrap();
}
