//! The three operations and every field rule, seen from the wire.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestApp;

crate::on_both_stores!(
    create_answers_201_with_location_and_the_whole_visitor,
    create_of_an_empty_object_gives_the_defaults,
    the_seeds_three_requests_replayed,
    show_of_a_missing_visitor_is_record_not_found,
    update_merges_and_keeps_the_other_keys,
    update_with_null_clears_name_email_and_phone,
    empty_update_changes_nothing,
    the_object_read_can_be_sent_back,
    read_only_keys_cannot_change_and_a_refused_update_changes_nothing,
    update_of_a_missing_visitor_is_record_not_found,
    created_takes_any_offset_and_keeps_fractions,
    create_refuses_id_unknown_keys_wrong_types_and_nulls_naming_every_key,
    update_refuses_bad_values_naming_every_key,
    limits_hold_at_their_boundaries,
    values_are_stored_exactly_as_sent,
    a_duplicate_external_id_is_a_conflict,
    the_legacy_prefix_serves_the_same_operations,
);

const KEYS: [&str; 8] = [
    "banned",
    "created",
    "email",
    "external_id",
    "id",
    "name",
    "notes",
    "phone",
];

fn assert_eight_keys(visitor: &Value) {
    let keys: Vec<&str> = visitor
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, KEYS, "{visitor}");
}

fn seed_request() -> Value {
    json!({
        "name": "Visitor 1",
        "email": "visitor1@example.com",
        "notes": "This visitor is really cool.",
        "phone": "+65 12345678"
    })
}

async fn create_answers_201_with_location_and_the_whole_visitor(app: &TestApp) {
    let answer = app.create(&seed_request()).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let id = answer.id();
    assert!(id > 0);
    assert_eq!(
        answer.header("location"),
        Some(format!("/api/v2/chat/visitors/{id}").as_str())
    );
    assert_eight_keys(&answer.body);
    let shown = app.show(id).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body, answer.body);
}

async fn create_of_an_empty_object_gives_the_defaults(app: &TestApp) {
    let body = app.created(&json!({})).await;
    assert_eight_keys(&body);
    assert_eq!(body["banned"], false);
    for key in ["name", "email", "phone", "notes", "external_id"] {
        assert!(body[key].is_null(), "{key}");
    }
    let created = body["created"].as_str().unwrap();
    assert!(
        created.ends_with('Z') && !created.contains('.'),
        "{created}"
    );
    let parsed = chrono_like_seconds(created);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - parsed).abs() <= 5, "created {created} is not now");
}

/// Seconds since the epoch of a `YYYY-MM-DDTHH:MM:SSZ` string.
fn chrono_like_seconds(text: &str) -> i64 {
    let created = visitor_domain::Created::parse(text).unwrap();
    created.get().timestamp()
}

async fn the_seeds_three_requests_replayed(app: &TestApp) {
    let created = app.create(&seed_request()).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let mut expected = json!({
        "banned": false,
        "email": "visitor1@example.com",
        "external_id": null,
        "name": "Visitor 1",
        "notes": "This visitor is really cool.",
        "phone": "+65 12345678"
    });
    for key in ["banned", "email", "external_id", "name", "notes", "phone"] {
        assert_eq!(created.body[key], expected[key], "{key}");
    }
    let id = created.id();
    let shown = app.show(id).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body, created.body);
    let updated = app.update(id, &json!({"name": "John"})).await;
    assert_eq!(updated.status, StatusCode::OK);
    expected["name"] = json!("John");
    for key in ["banned", "email", "external_id", "name", "notes", "phone"] {
        assert_eq!(updated.body[key], expected[key], "{key}");
    }
    assert_eq!(updated.body["id"], id);
    assert_eq!(updated.body["created"], created.body["created"]);
}

async fn show_of_a_missing_visitor_is_record_not_found(app: &TestApp) {
    app.show(i64::MAX).await.assert_error(404, "RecordNotFound");
    app.show(424242).await.assert_error(404, "RecordNotFound");
}

async fn update_merges_and_keeps_the_other_keys(app: &TestApp) {
    let created = app.created(&seed_request()).await;
    let id = created["id"].as_i64().unwrap();
    let updated = app
        .update(id, &json!({"email": "john@example.com", "banned": true}))
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert_eight_keys(&updated.body);
    let mut expected = created.clone();
    expected["email"] = json!("john@example.com");
    expected["banned"] = json!(true);
    assert_eq!(updated.body, expected);
    assert_eq!(app.show(id).await.body, expected);
}

async fn update_with_null_clears_name_email_and_phone(app: &TestApp) {
    let created = app.created(&seed_request()).await;
    let id = created["id"].as_i64().unwrap();
    let updated = app
        .update(id, &json!({"name": null, "email": null, "phone": null}))
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    for key in ["name", "email", "phone"] {
        assert!(updated.body[key].is_null(), "{key}");
    }
    assert_eq!(updated.body["notes"], created["notes"]);
    assert_eq!(app.show(id).await.body, updated.body);
}

async fn empty_update_changes_nothing(app: &TestApp) {
    let created = app.created(&seed_request()).await;
    let id = created["id"].as_i64().unwrap();
    let updated = app.update(id, &json!({})).await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.body, created);
}

async fn the_object_read_can_be_sent_back(app: &TestApp) {
    let mut body = seed_request();
    body["external_id"] = json!("john_extid");
    let created = app.created(&body).await;
    let id = created["id"].as_i64().unwrap();
    let mut echoed = created.clone();
    echoed["name"] = json!("John");
    let updated = app.update(id, &echoed).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert_eq!(updated.body, echoed);
}

async fn read_only_keys_cannot_change_and_a_refused_update_changes_nothing(app: &TestApp) {
    let mut body = seed_request();
    body["external_id"] = json!("john_extid");
    let created = app.created(&body).await;
    let id = created["id"].as_i64().unwrap();
    let cases = [
        (json!({"external_id": "other"}), vec!["external_id"]),
        (json!({"notes": "changed", "name": "John"}), vec!["notes"]),
        (json!({"id": id + 1}), vec!["id"]),
        (json!({"notes": null}), vec!["notes"]),
        (
            json!({"id": id + 1, "notes": "x", "external_id": "y", "name": "ok", "email": "bad"}),
            vec!["email", "external_id", "id", "notes"],
        ),
    ];
    for (change, keys) in cases {
        let answer = app.update(id, &change).await;
        answer.assert_error(422, "RecordInvalid");
        assert_eq!(answer.detail_keys(), keys, "{change}");
        assert_eq!(
            app.show(id).await.body,
            created,
            "{change} changed something"
        );
    }
    let answer = app.update(id, &json!({"notes": "changed"})).await;
    assert_eq!(answer.body["details"]["notes"][0]["error"], "ReadOnly");
}

async fn update_of_a_missing_visitor_is_record_not_found(app: &TestApp) {
    app.update(987654, &json!({"name": "x"}))
        .await
        .assert_error(404, "RecordNotFound");
    app.update(987654, &json!({}))
        .await
        .assert_error(404, "RecordNotFound");
}

async fn created_takes_any_offset_and_keeps_fractions(app: &TestApp) {
    let cases = [
        ("2014-09-01T12:29:59+02:00", "2014-09-01T10:29:59Z"),
        ("2014-09-01T10:29:59.250Z", "2014-09-01T10:29:59.250Z"),
        ("2014-09-01T10:29:59.000Z", "2014-09-01T10:29:59Z"),
        (
            "2014-09-01T10:29:59.123456-00:30",
            "2014-09-01T10:59:59.123456Z",
        ),
    ];
    for (given, written) in cases {
        let body = app.created(&json!({"created": given})).await;
        assert_eq!(body["created"], written, "{given}");
        let id = body["id"].as_i64().unwrap();
        assert_eq!(app.show(id).await.body["created"], written, "{given}");
        let updated = app.update(id, &json!({"created": given})).await;
        assert_eq!(updated.body["created"], written, "{given}");
    }
}

async fn create_refuses_id_unknown_keys_wrong_types_and_nulls_naming_every_key(app: &TestApp) {
    let answer = app
        .create(&json!({
            "id": 5,
            "colour": "blue",
            "banned": "yes",
            "created": null,
            "name": 42,
            "email": "[email\u{a0}protected]",
            "phone": "call me",
            "notes": ["x"],
            "external_id": ""
        }))
        .await;
    answer.assert_error(422, "RecordInvalid");
    assert_eq!(
        answer.detail_keys(),
        [
            "banned",
            "colour",
            "created",
            "email",
            "external_id",
            "id",
            "name",
            "notes",
            "phone"
        ]
    );
    for (key, code) in [
        ("id", "ReadOnly"),
        ("colour", "UnknownField"),
        ("banned", "InvalidType"),
        ("email", "InvalidFormat"),
        ("external_id", "Blank"),
    ] {
        assert_eq!(answer.body["details"][key][0]["error"], code, "{key}");
        assert!(answer.body["details"][key][0]["description"].is_string());
    }
    app.create(&json!({"banned": null}))
        .await
        .assert_error(422, "RecordInvalid");
}

async fn update_refuses_bad_values_naming_every_key(app: &TestApp) {
    let created = app.created(&seed_request()).await;
    let id = created["id"].as_i64().unwrap();
    let answer = app
        .update(
            id,
            &json!({"banned": null, "created": "yesterday", "name": "", "extra": 1, "phone": "1".repeat(33)}),
        )
        .await;
    answer.assert_error(422, "RecordInvalid");
    assert_eq!(
        answer.detail_keys(),
        ["banned", "created", "extra", "name", "phone"]
    );
    assert_eq!(app.show(id).await.body, created);
}

async fn limits_hold_at_their_boundaries(app: &TestApp) {
    let local = "a".repeat(64);
    let domain = format!(
        "{}.{}.{}.com",
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(57)
    );
    let cases: Vec<(&str, Value, Value)> = vec![
        ("name", json!("é".repeat(255)), json!("é".repeat(256))),
        ("phone", json!("1".repeat(32)), json!("1".repeat(33))),
        (
            "notes",
            json!("ü".repeat(10_000)),
            json!("ü".repeat(10_001)),
        ),
        (
            "external_id",
            json!("🦀".repeat(255)),
            json!("🦀".repeat(256)),
        ),
        (
            "email",
            json!(format!("{local}@{domain}")),
            json!(format!("{local}@{domain}x")),
        ),
    ];
    for (key, at_limit, over) in cases {
        let ok = app.create(&json!({ key: at_limit })).await;
        assert_eq!(ok.status, StatusCode::CREATED, "{key}: {}", ok.text);
        assert_eq!(ok.body[key], at_limit);
        let refused = app.create(&json!({ key: over })).await;
        refused.assert_error(422, "RecordInvalid");
        assert_eq!(refused.detail_keys(), [key]);
        assert_eq!(refused.body["details"][key][0]["error"], "TooLong");
    }
    let empty_notes = app.created(&json!({"notes": ""})).await;
    assert_eq!(empty_notes["notes"], "");
}

async fn values_are_stored_exactly_as_sent(app: &TestApp) {
    let body = json!({
        "name": "  Ünïcødé Name  ",
        "email": "Mixed.Case+tag@Example.COM",
        "phone": "(+65) 1234-5678.",
        "notes": "line one\nline two\t\"quoted\" \\ 🦀",
        "external_id": " ext-ID ",
        "banned": true
    });
    let created = app.created(&body).await;
    let shown = app.show(created["id"].as_i64().unwrap()).await;
    for key in ["name", "email", "phone", "notes", "external_id", "banned"] {
        assert_eq!(shown.body[key], body[key], "{key}");
    }
    let nul = app.create(&json!({"name": "a\u{0}b"})).await;
    nul.assert_error(422, "RecordInvalid");
}

async fn a_duplicate_external_id_is_a_conflict(app: &TestApp) {
    let first = app.created(&json!({"external_id": "john_extid"})).await;
    app.create(&json!({"external_id": "john_extid", "name": "Other"}))
        .await
        .assert_error(409, "Conflict");
    // Different case is a different id; null never conflicts.
    app.created(&json!({"external_id": "JOHN_EXTID"})).await;
    app.created(&json!({"external_id": null})).await;
    app.created(&json!({"external_id": null})).await;
    assert_eq!(app.show(first["id"].as_i64().unwrap()).await.body, first);
}

async fn the_legacy_prefix_serves_the_same_operations(app: &TestApp) {
    let created = app
        .send(
            app.admin(Method::POST, "/api/v2/visitors")
                .json(&seed_request()),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.id();
    // Location stays under the prefix the client used.
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v2/visitors/{id}").as_str())
    );
    let shown = app
        .send(app.admin(Method::GET, &format!("/api/v2/visitors/{id}")))
        .await;
    assert_eq!(shown.body, created.body);
    let updated = app
        .send(
            app.admin(Method::PUT, &format!("/api/v2/visitors/{id}"))
                .json(&json!({"name": "John"})),
        )
        .await;
    assert_eq!(updated.body["name"], "John");
    assert_eq!(app.show(id).await.body, updated.body);
    app.send(app.admin(Method::GET, "/api/v2/visitors/999999"))
        .await
        .assert_error(404, "RecordNotFound");
}
