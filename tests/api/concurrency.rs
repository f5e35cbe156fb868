//! The contract's concurrency cases, over HTTP.

use std::collections::HashSet;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

crate::on_both_stores!(
    simultaneous_updates_of_different_keys_all_persist,
    simultaneous_creates_with_one_external_id_give_one_201_and_409s,
    two_hundred_simultaneous_creates_give_distinct_ids,
);

async fn simultaneous_updates_of_different_keys_all_persist(app: &TestApp) {
    let id = app.created(&json!({"notes": "kept"})).await["id"]
        .as_i64()
        .unwrap();
    // Four rounds of five simultaneous updates, each round touching every mutable key once.
    for round in 0..4 {
        let bodies = [
            json!({"name": format!("Name {round}")}),
            json!({"email": format!("r{round}@example.com")}),
            json!({"phone": format!("+1 555 {round}")}),
            json!({"banned": round % 2 == 0}),
            json!({"created": format!("201{round}-05-05T05:05:05Z")}),
        ];
        let answers = join_all(bodies.iter().map(|body| app.update(id, body))).await;
        for answer in answers {
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        }
        let shown = app.show(id).await.body;
        assert_eq!(shown["name"], format!("Name {round}"));
        assert_eq!(shown["email"], format!("r{round}@example.com"));
        assert_eq!(shown["phone"], format!("+1 555 {round}"));
        assert_eq!(shown["banned"], round % 2 == 0);
        assert_eq!(shown["created"], format!("201{round}-05-05T05:05:05Z"));
        assert_eq!(shown["notes"], "kept");
    }
}

async fn simultaneous_creates_with_one_external_id_give_one_201_and_409s(app: &TestApp) {
    let bodies: Vec<_> = (0..10)
        .map(|i| json!({"external_id": "same", "name": format!("V{i}")}))
        .collect();
    let answers = join_all(bodies.iter().map(|body| app.create(body))).await;
    let created: Vec<_> = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .collect();
    let conflicts = answers
        .iter()
        .filter(|a| a.status == StatusCode::CONFLICT)
        .count();
    assert_eq!(created.len(), 1);
    assert_eq!(conflicts, 9);
    assert_eq!(app.show(created[0].id()).await.body, created[0].body);
}

async fn two_hundred_simultaneous_creates_give_distinct_ids(app: &TestApp) {
    let bodies: Vec<_> = (0..200).map(|i| json!({"name": format!("V{i}")})).collect();
    let answers = join_all(bodies.iter().map(|body| app.create(body))).await;
    let mut ids = HashSet::new();
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        assert!(ids.insert(answer.id()));
    }
    assert_eq!(ids.len(), 200);
}
