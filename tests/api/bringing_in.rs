//! Contract §9.1 and §9.2: create-or-update by `external_id`, and the bulk NDJSON import.

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{Answer, TestApp};

crate::on_both_stores!(
    create_or_update_creates_then_updates_as_create_and_update_do,
    create_or_update_refuses_what_create_or_update_refuses,
    create_or_update_honours_if_match,
    create_or_update_answers_under_the_legacy_prefix,
    simultaneous_create_or_updates_of_one_new_external_id_give_one_201,
    import_answers_a_line_per_line_in_order_then_the_summary,
    import_of_ten_thousand_lines_with_broken_ones_stores_every_good_line,
    import_refuses_a_wrong_body_whole_and_writes_nothing,
);

const UPSERT: &str = "/api/v2/chat/visitors/create_or_update";
const IMPORT: &str = "/api/v2/chat/visitors/import";

async fn upsert(app: &TestApp, body: &Value, if_match: Option<&str>) -> Answer {
    let mut request = app.admin(Method::POST, UPSERT).json(body);
    if let Some(tags) = if_match {
        request = request.header("If-Match", tags);
    }
    app.send(request).await
}

async fn import(app: &TestApp, body: impl Into<reqwest::Body>) -> (Answer, Vec<Value>) {
    let answer = app
        .send(
            app.admin(Method::POST, IMPORT)
                .header("Content-Type", "application/x-ndjson")
                .body(body),
        )
        .await;
    let lines = answer
        .text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (answer, lines)
}

/// Every visitor the store holds, in id order.
async fn everyone(app: &TestApp) -> Vec<Value> {
    let mut all = Vec::new();
    let mut url = "/api/v2/chat/visitors?page[size]=1000".to_owned();
    loop {
        let page = app
            .list(url.trim_start_matches("/api/v2/chat/visitors?"))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        all.extend(page.body["visitors"].as_array().unwrap().iter().cloned());
        match page.body["links"]["next"].as_str() {
            Some(next) if page.body["meta"]["has_more"] == true => {
                url = next[next.find("/api/").unwrap()..].to_owned()
            }
            _ => return all,
        }
    }
}

async fn create_or_update_creates_then_updates_as_create_and_update_do(app: &TestApp) {
    let made = upsert(
        app,
        &json!({"external_id": "crm-1", "name": "A", "notes": "n"}),
        None,
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let id = made.id();
    assert_eq!(
        made.header("location"),
        Some(format!("/api/v2/chat/visitors/{id}").as_str())
    );
    assert_eq!(made.header("etag"), Some(format!("\"{id}.1\"").as_str()));
    assert_eq!(app.show(id).await.body, made.body);

    let changed = upsert(
        app,
        &json!({"external_id": "crm-1", "phone": "+1 555"}),
        None,
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.id(), id);
    assert_eq!(changed.body["name"], "A", "a key left out keeps its value");
    assert_eq!(changed.body["phone"], "+1 555");
    assert_eq!(changed.header("etag"), Some(format!("\"{id}.2\"").as_str()));
    assert_eq!(changed.header("location"), None);
    assert_eq!(app.show(id).await.body, changed.body);

    let same = upsert(
        app,
        &json!({"external_id": "crm-1", "notes": "n", "name": "A"}),
        None,
    )
    .await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.text);
    assert_eq!(same.body, changed.body);
    assert_eq!(
        same.header("etag"),
        changed.header("etag"),
        "nothing changed"
    );

    let cleared = upsert(app, &json!({"external_id": "crm-1", "name": null}), None).await;
    assert_eq!(cleared.body["name"], Value::Null);
    assert_eq!(everyone(app).await.len(), 1);
}

async fn create_or_update_refuses_what_create_or_update_refuses(app: &TestApp) {
    for body in [json!({"name": "A"}), json!({"external_id": null})] {
        let answer = upsert(app, &body, None).await;
        answer.assert_error(422, "RecordInvalid");
        assert_eq!(answer.detail_keys(), ["external_id"], "{body}");
    }
    let answer = upsert(
        app,
        &json!({"external_id": "crm-2", "id": 5, "email": "x"}),
        None,
    )
    .await;
    answer.assert_error(422, "RecordInvalid");
    assert_eq!(answer.detail_keys(), ["email", "id"]);
    let answer = app
        .send(
            app.admin(Method::POST, UPSERT)
                .header("Content-Type", "application/json")
                .body(r#"{"external_id": "a", "external_id": "b"}"#),
        )
        .await;
    answer.assert_error(400, "BadRequest");
    let answer = app
        .send(
            app.admin(Method::POST, UPSERT)
                .body(r#"{"external_id": "a"}"#),
        )
        .await;
    answer.assert_error(415, "UnsupportedMediaType");
    assert!(
        everyone(app).await.is_empty(),
        "a failed request writes nothing"
    );

    let made = upsert(app, &json!({"external_id": "crm-2", "notes": "kept"}), None).await;
    let refused = upsert(
        app,
        &json!({"external_id": "crm-2", "notes": "other", "name": "B"}),
        None,
    )
    .await;
    refused.assert_error(422, "RecordInvalid");
    assert_eq!(refused.detail_keys(), ["notes"]);
    assert_eq!(app.show(made.id()).await.body, made.body);
}

async fn create_or_update_honours_if_match(app: &TestApp) {
    upsert(app, &json!({"external_id": "crm-3"}), Some("*"))
        .await
        .assert_error(412, "PreconditionFailed");
    assert!(everyone(app).await.is_empty(), "If-Match creates nothing");
    let made = upsert(app, &json!({"external_id": "crm-3"}), None).await;
    let id = made.id();
    let other = app.created(&json!({})).await["id"].as_i64().unwrap();
    for stale in [
        format!("\"{id}.2\""),
        format!("\"{other}.1\""),
        format!("W/\"{id}.1\""),
    ] {
        upsert(
            app,
            &json!({"external_id": "crm-3", "name": "X"}),
            Some(&stale),
        )
        .await
        .assert_error(412, "PreconditionFailed");
    }
    assert_eq!(app.show(id).await.body, made.body);
    let current = made.header("etag").unwrap();
    let changed = upsert(
        app,
        &json!({"external_id": "crm-3", "name": "X"}),
        Some(&format!("\"{other}.1\", {current}")),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    let changed = upsert(
        app,
        &json!({"external_id": "crm-3", "name": "Y"}),
        Some("*"),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.body["name"], "Y");
}

async fn create_or_update_answers_under_the_legacy_prefix(app: &TestApp) {
    let made = app
        .send(
            app.admin(Method::POST, "/api/v2/visitors/create_or_update")
                .json(&json!({"external_id": "old-host"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    assert_eq!(
        made.header("location"),
        Some(format!("/api/v2/visitors/{}", made.id()).as_str())
    );
    let answer = app
        .send(app.admin(Method::GET, "/api/v2/chat/visitors/create_or_update"))
        .await;
    answer.assert_error(405, "MethodNotAllowed");
    assert_eq!(answer.header("allow"), Some("POST"));
}

async fn simultaneous_create_or_updates_of_one_new_external_id_give_one_201(app: &TestApp) {
    for round in 0..5 {
        let external_id = format!("race-{round}");
        let bodies: Vec<_> = (0..20)
            .map(|n| json!({"external_id": external_id, "name": format!("Caller {n}")}))
            .collect();
        let answers = join_all(bodies.iter().map(|body| upsert(app, body, None))).await;
        let created = answers
            .iter()
            .filter(|a| a.status == StatusCode::CREATED)
            .count();
        let updated = answers
            .iter()
            .filter(|a| a.status == StatusCode::OK)
            .count();
        assert_eq!((created, updated), (1, 19), "{answers:?}");
        let ids: std::collections::HashSet<i64> = answers.iter().map(Answer::id).collect();
        assert_eq!(ids.len(), 1);
        let found = app.list(&format!("external_id={external_id}")).await;
        assert_eq!(found.body["visitors"].as_array().unwrap().len(), 1);
    }
}

async fn import_answers_a_line_per_line_in_order_then_the_summary(app: &TestApp) {
    let existing = app
        .created(&json!({"external_id": "known", "notes": "n"}))
        .await;
    let body = concat!(
        "{\"name\": \"Plain\"}\n",
        "\n",
        "{\"external_id\": \"new\", \"notes\": \"first\"}\r\n",
        "{\"external_id\": \"new\", \"name\": \"Second\"}\n",
        "{\"external_id\": \"known\", \"notes\": \"n\"}\n",
        "{\"external_id\": \"known\", \"notes\": \"other\"}\n",
        "{broken\n",
        "{\"name\": \"a\", \"name\": \"b\"}\n",
        "[1, 2]\n",
        "{\"email\": \"nope\"}\n",
        "{\"id\": 7}\n",
        "{\"external_id\": null, \"banned\": true}",
    );
    let (answer, lines) = import(app, body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.header("content-type"), Some("application/x-ndjson"));
    let statuses: Vec<(i64, &str)> = lines
        .iter()
        .take(lines.len() - 1)
        .map(|line| {
            (
                line["line"].as_i64().unwrap(),
                line["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (1, "created"),
            (3, "created"),
            (4, "updated"),
            (5, "unchanged"),
            (6, "failed"),
            (7, "failed"),
            (8, "failed"),
            (9, "failed"),
            (10, "failed"),
            (11, "failed"),
            (12, "created"),
        ]
    );
    for line in &lines[..lines.len() - 1] {
        let keys: Vec<&String> = line.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["line", "status", "id", "error"], "{line}");
        assert_eq!(line["id"].is_null(), line["status"] == "failed", "{line}");
        assert_eq!(
            line["error"].is_null(),
            line["status"] != "failed",
            "{line}"
        );
    }
    let error = |n: usize| &lines[n]["error"];
    assert_eq!(
        lines[1]["id"], lines[2]["id"],
        "one new external_id: created, then updated"
    );
    assert_eq!(lines[3]["id"], existing["id"]);
    assert_eq!(error(4)["error"], "RecordInvalid");
    assert_eq!(error(4)["details"]["notes"][0]["error"], "ReadOnly");
    for line in &lines[5..=7] {
        assert_eq!(line["error"]["error"], "BadRequest", "{line}");
        assert!(line["error"].get("details").is_none());
    }
    assert_eq!(error(8)["details"]["email"][0]["error"], "InvalidFormat");
    assert_eq!(error(9)["details"]["id"][0]["error"], "ReadOnly");
    assert_eq!(
        lines.last().unwrap(),
        &json!({"summary": {"created": 3, "updated": 1, "unchanged": 1, "failed": 6}})
    );
    let shown = app.show(lines[1]["id"].as_i64().unwrap()).await.body;
    assert_eq!(
        (shown["name"].clone(), shown["notes"].clone()),
        (json!("Second"), json!("first"))
    );
    assert_eq!(
        app.show(existing["id"].as_i64().unwrap()).await.body,
        existing
    );
    assert_eq!(everyone(app).await.len(), 4);
}

async fn import_of_ten_thousand_lines_with_broken_ones_stores_every_good_line(app: &TestApp) {
    app.created(&json!({"external_id": "taken", "notes": "original"}))
        .await;
    let mut body = String::new();
    for n in 1..=10_000 {
        let line = match (n % 100, n / 100 % 4) {
            (0, 0) => "{\"name\": \"broken\"".to_owned(),
            (0, 1) => format!("{{\"external_id\": \"e{n}\", \"external_id\": \"again\"}}"),
            (0, 2) => format!("{{\"external_id\": \"e{n}\", \"email\": \"not an address\"}}"),
            (0, _) => "{\"external_id\": \"taken\", \"notes\": \"another\"}".to_owned(),
            _ => format!("{{\"external_id\": \"e{n}\", \"name\": \"Visitor {n}\"}}"),
        };
        body.push_str(&line);
        body.push('\n');
    }
    let (answer, lines) = import(app, body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(lines.len(), 10_001);
    for (index, line) in lines[..10_000].iter().enumerate() {
        let n = index + 1;
        assert_eq!(line["line"], n);
        let expected = match (n % 100, n / 100 % 4) {
            (0, 0 | 1) => Some("BadRequest"),
            (0, _) => Some("RecordInvalid"),
            _ => None,
        };
        match expected {
            Some(code) => {
                assert_eq!(line["status"], "failed", "{line}");
                assert_eq!(line["error"]["error"], code, "{line}");
            }
            None => assert_eq!(line["status"], "created", "{line}"),
        }
    }
    assert_eq!(
        lines[10_000],
        json!({"summary": {"created": 9_900, "updated": 0, "unchanged": 0, "failed": 100}})
    );
    let stored = everyone(app).await;
    assert_eq!(stored.len(), 9_901);
    for visitor in &stored[1..] {
        let external_id = visitor["external_id"].as_str().unwrap();
        let n = &external_id[1..];
        assert_eq!(visitor["name"], format!("Visitor {n}"));
    }
}

async fn import_refuses_a_wrong_body_whole_and_writes_nothing(app: &TestApp) {
    let good = "{\"name\": \"A\"}\n".repeat(10);
    let answer = app
        .send(
            app.admin(Method::POST, IMPORT)
                .header("Content-Type", "application/json")
                .body(good.clone()),
        )
        .await;
    answer.assert_error(415, "UnsupportedMediaType");
    let mut not_utf8 = good.clone().into_bytes();
    not_utf8.extend_from_slice(b"{\"name\": \"\xff\"}\n");
    import(app, not_utf8)
        .await
        .0
        .assert_error(400, "BadRequest");
    let mut too_large = good.clone();
    while too_large.len() <= 16 * 1024 * 1024 {
        too_large.push_str(&format!("{{\"notes\": \"{}\"}}\n", "x".repeat(9_000)));
    }
    import(app, too_large)
        .await
        .0
        .assert_error(413, "PayloadTooLarge");
    assert!(everyone(app).await.is_empty());
    let (answer, lines) = import(app, "").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        lines,
        [json!({"summary": {"created": 0, "updated": 0, "unchanged": 0, "failed": 0}})]
    );
}
