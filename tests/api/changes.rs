//! Contract §10.1: the change feed. A reader that applies each page's items to its own copy
//! holds exactly the service's visitors once it reads `end_of_stream`; the query's errors.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use visitor_store::{ChangeLog, MemoryStore};

use crate::helpers::{spawn_with, Answer, TestApp, AGENT_TOKEN};

crate::on_both_stores!(
    a_reader_of_the_feed_holds_what_the_service_holds,
    items_are_the_visitor_now_or_a_tombstone,
    start_time_gives_the_visitors_changed_since,
    every_bad_parameter_of_the_feed_is_named,
    the_feed_is_for_administrators_under_the_current_prefix_only,
);

const FEED: &str = "/api/v2/chat/incremental/visitors";

async fn feed(app: &TestApp, query: &str) -> Answer {
    app.send(app.admin(Method::GET, &format!("{FEED}?{query}")))
        .await
}

/// A copy of the visitors kept from the feed, and where its reader stands.
#[derive(Default)]
struct Mirror {
    visitors: BTreeMap<i64, Value>,
    next_url: Option<String>,
}

impl Mirror {
    /// Reads on (from `start_time=0` the first time) to `end_of_stream`, applying each item in
    /// order. A page that is not the end while it brings nothing means a change waits behind a
    /// transaction still in flight (another test's, on PostgreSQL): it asks again.
    async fn read_on(&mut self, app: &TestApp, per_page: usize) {
        let mut waits = 0;
        loop {
            let page = match &self.next_url {
                Some(url) => {
                    app.send(app.admin(Method::GET, url.trim_start_matches(&app.base)))
                        .await
                }
                None => feed(app, &format!("start_time=0&per_page={per_page}")).await,
            };
            assert_eq!(page.status, StatusCode::OK, "{}", page.text);
            let changes = page.body["changes"].as_array().unwrap();
            assert!(changes.len() <= per_page);
            for item in changes {
                let id = item["id"].as_i64().unwrap();
                if item["deleted"] == true {
                    self.visitors.remove(&id);
                } else {
                    self.visitors.insert(id, item["visitor"].clone());
                }
            }
            let after_url = page.body["after_url"].as_str().unwrap();
            let cursor = page.body["after_cursor"].as_str().unwrap();
            assert_eq!(
                after_url,
                app.url(&format!("{FEED}?cursor={cursor}&per_page={per_page}"))
            );
            self.next_url = Some(after_url.to_owned());
            if page.body["end_of_stream"] == true {
                assert!(changes.len() < per_page, "a full page is not the end");
                return;
            }
            if changes.is_empty() {
                waits += 1;
                assert!(waits < 1000, "changes held back for 10 s");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Every visitor the service holds, by id, as Show answers it.
async fn everyone(app: &TestApp) -> BTreeMap<i64, Value> {
    let page = app.list("page[size]=1000").await;
    assert_eq!(page.status, StatusCode::OK);
    page.body["visitors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|visitor| (visitor["id"].as_i64().unwrap(), visitor.clone()))
        .collect()
}

async fn a_reader_of_the_feed_holds_what_the_service_holds(app: &TestApp) {
    let mut mirror = Mirror::default();
    mirror.read_on(app, 3).await;
    assert!(mirror.visitors.is_empty());

    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(
            app.created(&json!({"name": format!("V{n}"), "external_id": format!("e{n}")}))
                .await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    mirror.read_on(app, 3).await;
    assert_eq!(mirror.visitors, everyone(app).await);

    // Changes of every kind between two reads: updates (one changing nothing), erasures, a
    // create-or-update of each kind, an import.
    assert_eq!(
        app.update(ids[0], &json!({"name": "Renamed"})).await.status,
        StatusCode::OK
    );
    assert_eq!(app.update(ids[1], &json!({})).await.status, StatusCode::OK);
    assert_eq!(app.delete(ids[2]).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.delete(ids[3]).await.status, StatusCode::NO_CONTENT);
    let upsert = |body: Value| {
        app.admin(Method::POST, "/api/v2/chat/visitors/create_or_update")
            .json(&body)
    };
    assert_eq!(
        app.send(upsert(json!({"external_id": "e4", "phone": "+1 555"})))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.send(upsert(json!({"external_id": "new"}))).await.status,
        StatusCode::CREATED
    );
    let import = app
        .admin(Method::POST, "/api/v2/chat/visitors/import")
        .header("Content-Type", "application/x-ndjson")
        .body("{\"name\": \"Imported\"}\n{\"external_id\": \"e5\", \"banned\": true}\n");
    assert_eq!(app.send(import).await.status, StatusCode::OK);
    mirror.read_on(app, 3).await;
    assert_eq!(mirror.visitors, everyone(app).await);
    assert!(!mirror.visitors.contains_key(&ids[2]));

    // A reader starting now from the beginning gets the same.
    let mut fresh = Mirror::default();
    fresh.read_on(app, 1000).await;
    assert_eq!(fresh.visitors, mirror.visitors);
    // At the end, asking again with the same cursor brings nothing new.
    mirror.read_on(app, 3).await;
    assert_eq!(mirror.visitors, everyone(app).await);
}

async fn items_are_the_visitor_now_or_a_tombstone(app: &TestApp) {
    let kept = app
        .created(&json!({"name": "Kept", "email": "kept@example.com"}))
        .await;
    let erased = app
        .created(&json!({"name": "Erased", "notes": "private"}))
        .await;
    assert_eq!(
        app.delete(erased["id"].as_i64().unwrap()).await.status,
        StatusCode::NO_CONTENT
    );
    let mut page;
    let mut waits = 0;
    loop {
        page = feed(app, "start_time=0").await;
        if page.body["end_of_stream"] == true {
            break;
        }
        waits += 1;
        assert!(waits < 1000, "changes held back for 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(page.header("content-type"), Some("application/json"));
    let keys: Vec<&String> = page.body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["changes", "after_cursor", "after_url", "end_of_stream"]
    );
    let changes = page.body["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    let item_keys: Vec<&String> = changes[0].as_object().unwrap().keys().collect();
    assert_eq!(item_keys, ["id", "deleted", "visitor", "changed_at"]);
    assert_eq!(changes[0]["id"], kept["id"]);
    assert_eq!(changes[0]["deleted"], false);
    assert_eq!(
        changes[0]["visitor"],
        app.show(kept["id"].as_i64().unwrap()).await.body
    );
    assert_eq!(
        changes[1],
        json!({"id": erased["id"], "deleted": true, "visitor": null, "changed_at": changes[1]["changed_at"]})
    );
    for item in changes {
        let at = item["changed_at"].as_str().unwrap();
        let parsed = chrono::DateTime::parse_from_rfc3339(at).unwrap();
        assert!(at.ends_with('Z'), "{at}");
        assert!(
            (chrono::Utc::now() - parsed.to_utc()).num_seconds().abs() < 60,
            "{at}"
        );
    }
    // Nothing of the erased visitor but its id and time.
    assert!(
        !page.text.contains("private") && !page.text.contains("Erased"),
        "{}",
        page.text
    );
    let cursor = page.body["after_cursor"].as_str().unwrap();
    assert!(cursor.len() == 66 && cursor.bytes().all(|b| b.is_ascii_hexdigit()));
}

async fn start_time_gives_the_visitors_changed_since(app: &TestApp) {
    let old = app.created(&json!({"name": "Old"})).await["id"]
        .as_i64()
        .unwrap();
    let future = chrono::Utc::now().timestamp() + 3600;
    let page = feed(app, &format!("start_time={future}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.body["changes"], json!([]));
    // Read on from there: what changes next comes. (On PostgreSQL, a change still held back
    // behind another transaction when the first page was read may come too: the reader is
    // placed before every change not yet final, whenever it happened.)
    let next = app.created(&json!({"name": "Next"})).await["id"]
        .as_i64()
        .unwrap();
    let mut mirror = Mirror {
        next_url: Some(page.body["after_url"].as_str().unwrap().to_owned()),
        ..Mirror::default()
    };
    mirror.read_on(app, 1000).await;
    let read: Vec<i64> = mirror.visitors.keys().copied().collect();
    assert!(read == [next] || read == [old, next], "{read:?}");
    // From a time before both: both.
    let mut all = Mirror::default();
    all.read_on(app, 1000).await;
    assert_eq!(
        all.visitors.keys().copied().collect::<Vec<_>>(),
        [old, next]
    );
}

async fn every_bad_parameter_of_the_feed_is_named(app: &TestApp) {
    for (query, keys) in [
        ("", vec!["start_time"]),
        ("per_page=10", vec!["start_time"]),
        ("start_time=-1", vec!["start_time"]),
        ("start_time=yesterday", vec!["start_time"]),
        ("start_time=0&per_page=0", vec!["per_page"]),
        ("start_time=0&per_page=1001", vec!["per_page"]),
        ("cursor=abc", vec!["cursor"]),
        ("cursor=", vec!["cursor"]),
        ("start_time=0&start_time=5", vec!["start_time"]),
        ("start_time=0&page[size]=5", vec!["page[size]"]),
    ] {
        assert_eq!(feed(app, query).await.assert_bad_query(), keys, "{query}");
    }
    // A real cursor, altered.
    let page = feed(app, "start_time=0").await;
    let cursor = page.body["after_cursor"].as_str().unwrap();
    let altered = format!(
        "{}{}",
        &cursor[..65],
        if cursor.ends_with('0') { '1' } else { '0' }
    );
    let answer = feed(app, &format!("cursor={altered}")).await;
    assert_eq!(answer.assert_bad_query(), ["cursor"]);
    assert_eq!(
        answer.body["details"]["cursor"][0]["error"],
        "InvalidFormat"
    );
    let both = feed(app, &format!("start_time=0&cursor={cursor}")).await;
    assert_eq!(both.assert_bad_query(), ["cursor", "start_time"]);
}

async fn the_feed_is_for_administrators_under_the_current_prefix_only(app: &TestApp) {
    let agent = app
        .client
        .get(app.url(&format!("{FEED}?start_time=0")))
        .bearer_auth(AGENT_TOKEN);
    app.send(agent).await.assert_error(403, "Forbidden");
    let nobody = app.client.get(app.url(&format!("{FEED}?start_time=0")));
    app.send(nobody).await.assert_error(401, "Unauthorized");
    let legacy = app.admin(Method::GET, "/api/v2/incremental/visitors?start_time=0");
    app.send(legacy).await.assert_error(404, "NotFound");
    let post = app.admin(Method::POST, FEED);
    let answer = app.send(post).await;
    answer.assert_error(405, "MethodNotAllowed");
    assert_eq!(answer.header("allow"), Some("GET"));
}

/// A cursor behind an erasure purged since it was handed out: 400, `Expired`.
#[tokio::test]
async fn a_cursor_behind_a_purged_erasure_has_expired() {
    let store = Arc::new(MemoryStore::new());
    let app = spawn_with(store.clone(), None).await;
    let first = app.created(&json!({})).await["id"].as_i64().unwrap();
    let page = feed(&app, "start_time=0&per_page=1").await;
    let cursor = page.body["after_cursor"].as_str().unwrap().to_owned();
    app.created(&json!({})).await;
    assert_eq!(app.delete(first).await.status, StatusCode::NO_CONTENT);
    let erased_at = chrono::Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(store.purge_erasures(erased_at).await.unwrap(), 1);

    let answer = feed(&app, &format!("cursor={cursor}")).await;
    assert_eq!(answer.assert_bad_query(), ["cursor"]);
    assert_eq!(answer.body["details"]["cursor"][0]["error"], "Expired");
    // Starting again from the beginning works.
    let again = feed(&app, "start_time=0").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["changes"].as_array().unwrap().len(), 1);
    app.stop().await;
}
