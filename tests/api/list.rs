//! §8.1 List Visitors: cursor pages, filters, sort, links, and every refusal, from the wire.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{Answer, TestApp, AGENT_TOKEN};

crate::on_both_stores!(
    the_first_page_has_the_defaults_and_no_prev,
    a_walk_follows_next_links_to_the_last_page,
    a_walk_back_follows_prev_links_to_the_first_page,
    descending_sort_walks_newest_first,
    filters_find_by_external_id_email_and_banned,
    links_keep_filters_size_and_sort,
    the_legacy_prefix_lists_with_its_own_links,
    a_walk_sees_every_lasting_visitor_once_while_others_come_and_go,
    bad_parameters_are_bad_requests_naming_each_one,
    a_cursor_is_valid_only_with_its_sort_and_filters,
    list_needs_an_administrator,
);

fn ids(answer: &Answer) -> Vec<i64> {
    answer.body["visitors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_i64().unwrap())
        .collect()
}

async fn create_many(app: &TestApp, n: usize) -> Vec<i64> {
    let mut created = Vec::new();
    for i in 0..n {
        created.push(
            app.created(&json!({"name": format!("V{i}")})).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    created
}

fn assert_page(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let keys: Vec<&String> = answer.body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["visitors", "meta", "links"]);
    let meta: Vec<&String> = answer.body["meta"].as_object().unwrap().keys().collect();
    assert_eq!(meta, ["has_more", "after_cursor", "before_cursor"]);
    let links: Vec<&String> = answer.body["links"].as_object().unwrap().keys().collect();
    assert_eq!(links, ["next", "prev"]);
    for visitor in answer.body["visitors"].as_array().unwrap() {
        assert_eq!(visitor.as_object().unwrap().len(), 8, "{visitor}");
    }
}

async fn the_first_page_has_the_defaults_and_no_prev(app: &TestApp) {
    let empty = app.list("").await;
    assert_page(&empty);
    assert_eq!(
        empty.body,
        json!({"visitors": [], "meta": {"has_more": false, "after_cursor": null, "before_cursor": null},
               "links": {"next": null, "prev": null}})
    );
    let created = create_many(app, 3).await;
    let page = app.list("").await;
    assert_page(&page);
    assert_eq!(ids(&page), created);
    assert_eq!(page.body["meta"]["has_more"], false);
    assert!(page.body["meta"]["after_cursor"].is_string());
    assert!(page.body["meta"]["before_cursor"].is_string());
    assert_eq!(page.body["links"], json!({"next": null, "prev": null}));
    // The listed visitor is the one Show gives.
    assert_eq!(page.body["visitors"][1], app.show(created[1]).await.body);
}

async fn a_walk_follows_next_links_to_the_last_page(app: &TestApp) {
    let created = create_many(app, 7).await;
    let mut page = app.list("page[size]=3").await;
    assert_eq!(
        page.body["links"]["prev"],
        Value::Null,
        "the first page has no prev"
    );
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        assert_page(&page);
        pages += 1;
        assert!(pages <= 3, "the walk does not end: {seen:?}");
        seen.extend(ids(&page));
        let Some(next) = page.body["links"]["next"].as_str() else {
            assert_eq!(page.body["meta"]["has_more"], false);
            break;
        };
        assert_eq!(page.body["meta"]["has_more"], true);
        assert!(next.starts_with(&app.base), "{next} is a full URL");
        let following = app.get_url(next).await;
        assert!(
            following.body["links"]["prev"].is_string(),
            "later pages have prev"
        );
        page = following;
    }
    assert_eq!(seen, created);
    assert_eq!(pages, 3);
    // The same walk by hand, with meta.after_cursor.
    let first = app.list("page%5Bsize%5D=3").await;
    let cursor = first.body["meta"]["after_cursor"].as_str().unwrap();
    let second = app
        .list(&format!("page[size]=3&page[after]={cursor}"))
        .await;
    assert_eq!(ids(&second), created[3..6]);
}

async fn a_walk_back_follows_prev_links_to_the_first_page(app: &TestApp) {
    let created = create_many(app, 7).await;
    // Go to the last page, then walk back.
    let mut page = app.list("page[size]=3").await;
    for _ in 0..3 {
        let Some(next) = page.body["links"]["next"].as_str() else {
            break;
        };
        page = app.get_url(next).await;
    }
    assert_eq!(ids(&page), created[6..]);
    let mut seen = ids(&page);
    while let Some(prev) = page.body["links"]["prev"].as_str() {
        assert!(
            seen.len() <= created.len(),
            "the walk back does not end: {seen:?}"
        );
        page = app.get_url(prev).await;
        assert_page(&page);
        seen.splice(0..0, ids(&page));
    }
    assert_eq!(seen, created);
    assert_eq!(ids(&page), created[..3]);
    assert_eq!(
        page.body["meta"]["has_more"], false,
        "nothing lies before the first page"
    );
    // page[before] of the second page's first visitor is the first page.
    let second = app
        .list(&format!(
            "page[size]=3&page[after]={}",
            app.list("page[size]=3").await.body["meta"]["after_cursor"]
                .as_str()
                .unwrap()
        ))
        .await;
    let before = second.body["meta"]["before_cursor"].as_str().unwrap();
    let back = app
        .list(&format!("page[size]=2&page[before]={before}"))
        .await;
    assert_eq!(ids(&back), created[1..3]);
    assert_eq!(back.body["meta"]["has_more"], true);
}

async fn descending_sort_walks_newest_first(app: &TestApp) {
    let mut created = create_many(app, 5).await;
    created.reverse();
    let first = app.list("sort=-id&page[size]=2").await;
    assert_eq!(ids(&first), created[..2]);
    let second = app
        .get_url(first.body["links"]["next"].as_str().unwrap())
        .await;
    assert_eq!(ids(&second), created[2..4]);
    let third = app
        .get_url(second.body["links"]["next"].as_str().unwrap())
        .await;
    assert_eq!(ids(&third), created[4..]);
    assert_eq!(third.body["links"]["next"], Value::Null);
    let back = app
        .get_url(third.body["links"]["prev"].as_str().unwrap())
        .await;
    assert_eq!(ids(&back), created[2..4]);
    assert_eq!(
        ids(&app.list("sort=id&page[size]=1").await),
        [*created.last().unwrap()]
    );
}

async fn filters_find_by_external_id_email_and_banned(app: &TestApp) {
    let a = app
        .created(&json!({"external_id": "crm-1", "email": "Ann@Example.com"}))
        .await;
    let b = app
        .created(&json!({"email": "ann@example.COM", "banned": true}))
        .await;
    let c = app
        .created(&json!({"external_id": "CRM-1", "banned": true}))
        .await;
    let id = |v: &Value| v["id"].as_i64().unwrap();
    let cases = [
        ("external_id=crm-1", vec![id(&a)]),
        ("external_id=CRM-1", vec![id(&c)]),
        ("external_id=crm-2", vec![]),
        ("email=ANN%40example.com", vec![id(&a), id(&b)]),
        ("email=nobody", vec![]),
        ("banned=true", vec![id(&b), id(&c)]),
        ("banned=false", vec![id(&a)]),
        ("banned=true&email=ann@example.com", vec![id(&b)]),
        ("banned=true&sort=-id", vec![id(&c), id(&b)]),
    ];
    for (query, expected) in cases {
        let page = app.list(query).await;
        assert_page(&page);
        assert_eq!(ids(&page), expected, "{query}");
    }
}

async fn links_keep_filters_size_and_sort(app: &TestApp) {
    for i in 0..5 {
        app.created(&json!({"banned": i % 2 == 0, "email": "same@example.com"}))
            .await;
    }
    let first = app
        .list("banned=true&email=SAME%40example.com&sort=-id&page[size]=2")
        .await;
    let next = first.body["links"]["next"].as_str().unwrap();
    for part in [
        "banned=true",
        "email=SAME%40example.com",
        "sort=-id",
        "page%5Bsize%5D=2",
        "page%5Bafter%5D=",
    ] {
        assert!(next.contains(part), "{next} lacks {part}");
    }
    let second = app.get_url(next).await;
    assert_page(&second);
    assert_eq!(ids(&second).len(), 1);
    let all = app.list("banned=true&sort=-id").await;
    assert_eq!([ids(&first), ids(&second)].concat(), ids(&all));
}

async fn the_legacy_prefix_lists_with_its_own_links(app: &TestApp) {
    create_many(app, 3).await;
    let page = app
        .send(app.admin(Method::GET, "/api/v2/visitors?page[size]=2"))
        .await;
    assert_page(&page);
    let next = page.body["links"]["next"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{}/api/v2/visitors?", app.base)),
        "{next}"
    );
    assert_eq!(ids(&app.get_url(next).await).len(), 1);
}

/// A walk page by page over HTTP while other requests create and delete visitors: every visitor
/// that exists throughout is listed exactly once.
async fn a_walk_sees_every_lasting_visitor_once_while_others_come_and_go(app: &TestApp) {
    let created = create_many(app, 60).await;
    let (lasting, doomed): (Vec<i64>, Vec<i64>) = created.iter().partition(|id| *id % 3 != 0);
    let walk = async {
        let mut seen = Vec::new();
        let mut page = app.list("page[size]=4").await;
        loop {
            assert!(
                seen.len() <= 2 * created.len(),
                "the walk does not advance: {seen:?}"
            );
            seen.extend(ids(&page));
            match page.body["links"]["next"].as_str() {
                Some(next) => page = app.get_url(next).await,
                None => break,
            }
        }
        seen
    };
    let churn = async {
        for id in &doomed {
            assert_eq!(app.delete(id).await.status, StatusCode::NO_CONTENT);
            app.created(&json!({"name": "newcomer"})).await;
        }
    };
    let (seen, ()) = tokio::join!(walk, churn);
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "a visitor was listed twice: {seen:?}"
    );
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, seen, "pages come in id order");
    for id in lasting {
        assert!(
            unique.contains(&id),
            "visitor {id} existed throughout but was not listed"
        );
    }
}

async fn bad_parameters_are_bad_requests_naming_each_one(app: &TestApp) {
    let cursor_page = {
        create_many(app, 2).await;
        app.list("page[size]=1").await
    };
    let cursor = cursor_page.body["meta"]["after_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("page[size]=0".into(), vec!["page[size]"]),
        ("page[size]=1001".into(), vec!["page[size]"]),
        ("page[size]=ten".into(), vec!["page[size]"]),
        ("sort=name".into(), vec!["sort"]),
        ("banned=yes".into(), vec!["banned"]),
        ("external_id=".into(), vec!["external_id"]),
        ("email=".into(), vec!["email"]),
        ("limit=5".into(), vec!["limit"]),
        ("page[after]=abc".into(), vec!["page[after]"]),
        ("page[before]=".into(), vec!["page[before]"]),
        (
            format!("page[after]={cursor}&page[before]={cursor}"),
            vec!["page[after]", "page[before]"],
        ),
        ("banned=true&banned=false".into(), vec!["banned"]),
        (
            "page[size]=0&sort=x&foo=1".into(),
            vec!["foo", "page[size]", "sort"],
        ),
    ];
    for (query, keys) in cases {
        let answer = app.list(&query).await;
        assert_eq!(answer.assert_bad_query(), keys, "{query}: {}", answer.text);
    }
    // A tampered cursor: one digit changed.
    let mut tampered: Vec<char> = cursor.chars().collect();
    tampered[10] = if tampered[10] == '0' { '1' } else { '0' };
    let tampered: String = tampered.into_iter().collect();
    let answer = app.list(&format!("page[after]={tampered}")).await;
    assert_eq!(answer.assert_bad_query(), ["page[after]"]);
}

async fn a_cursor_is_valid_only_with_its_sort_and_filters(app: &TestApp) {
    create_many(app, 3).await;
    let page = app.list("page[size]=1&banned=false").await;
    let cursor = page.body["meta"]["after_cursor"].as_str().unwrap();
    for other in [
        "",
        "&banned=true",
        "&sort=-id",
        "&banned=false&email=a@b.io",
    ] {
        let answer = app.list(&format!("page[after]={cursor}{other}")).await;
        assert_eq!(answer.assert_bad_query(), ["page[after]"], "{other}");
    }
    // Size may change between pages.
    let answer = app
        .list(&format!("page[after]={cursor}&banned=false&page[size]=5"))
        .await;
    assert_eq!(ids(&answer).len(), 2);
}

async fn list_needs_an_administrator(app: &TestApp) {
    app.send(app.client.get(app.url("/api/v2/chat/visitors")))
        .await
        .assert_error(401, "Unauthorized");
    app.send(
        app.client
            .get(app.url("/api/v2/chat/visitors"))
            .bearer_auth(AGENT_TOKEN),
    )
    .await
    .assert_error(403, "Forbidden");
}
