//! The OpenAPI document: served, committed, and faithful to the seed's table.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::spawn_memory;

async fn served_document() -> Value {
    let app = spawn_memory().await;
    let answer = app
        .send(app.client.get(app.url("/api-docs/openapi.json")))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    app.stop().await;
    answer.body
}

fn committed_document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml");
    let text = std::fs::read_to_string(path).expect("openapi.yaml is committed at the root");
    serde_yaml::from_str(&text).expect("openapi.yaml is YAML")
}

#[tokio::test]
async fn the_committed_openapi_yaml_is_the_served_document() {
    assert!(
        served_document().await == committed_document(),
        "openapi.yaml differs from the served document: run `make openapi` and commit it"
    );
}

#[tokio::test]
async fn the_visitor_schema_matches_the_seed_point_by_point() {
    let doc = served_document().await;
    let visitor = &doc["components"]["schemas"]["Visitor"];
    let properties = visitor["properties"].as_object().unwrap();
    let seed = [
        (
            "banned",
            "boolean",
            "Whether the visitor is currently banned or not",
            false,
        ),
        (
            "created",
            "string",
            "The create date for the visitor",
            false,
        ),
        ("email", "string", "The email ID of the visitor", false),
        (
            "external_id",
            "string",
            "The external ID of the visitor",
            true,
        ),
        ("id", "integer", "The ID of the visitor", true),
        (
            "name",
            "string",
            "The name to be displayed for the visitor",
            false,
        ),
        (
            "notes",
            "string",
            "Any additional notes about the visitor",
            true,
        ),
        (
            "phone",
            "string",
            "The phone number of the visitor (if available)",
            false,
        ),
    ];
    assert_eq!(properties.len(), 8);
    for (key, json_type, description, read_only) in seed {
        let property = &properties[key];
        let types: Vec<&str> = match &property["type"] {
            Value::String(single) => vec![single.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            other => panic!("{key}: type {other}"),
        };
        assert_eq!(types[0], json_type, "{key}");
        assert!(types[1..].iter().all(|t| *t == "null"), "{key}: {types:?}");
        assert_eq!(property["description"], description, "{key}");
        assert_eq!(property["readOnly"] == json!(true), read_only, "{key}");
    }
    assert_eq!(properties["id"]["format"], "int64");
    assert_eq!(properties["created"]["format"], "date-time");
    for never_null in ["banned", "created", "id"] {
        assert!(
            properties[never_null]["type"].is_string(),
            "{never_null} is never null"
        );
    }
    assert!(visitor
        .get("required")
        .is_none_or(|r| r.as_array().unwrap().is_empty()));
    assert_eq!(
        visitor["example"],
        json!({
            "banned": false, "created": "2014-09-01T10:29:59Z", "email": "[email\u{a0}protected]",
            "external_id": "john_extid", "id": 1, "name": "Visitor 1",
            "notes": "This visitor is really cool.", "phone": "+65 12345678"
        })
    );
}

#[tokio::test]
async fn each_operation_has_the_seeds_words_security_and_its_errors() {
    let doc = served_document().await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let operations = [
        (
            "/api/v2/chat/visitors",
            "post",
            "Create Visitor",
            "Allows the account owner/administrator to add more visitors",
            "201",
            "VisitorCreate",
            vec![
                "400", "401", "403", "409", "413", "415", "422", "429", "500", "503",
            ],
        ),
        (
            "/api/v2/chat/visitors",
            "get",
            "List Visitors",
            "",
            "200",
            "",
            vec!["400", "401", "403", "429", "500", "503"],
        ),
        (
            "/api/v2/chat/visitors/{visitor_id}",
            "get",
            "Show Visitor",
            "Fetches a visitor by his or her Visitor ID",
            "200",
            "",
            vec!["304", "400", "401", "403", "404", "429", "500", "503"],
        ),
        (
            "/api/v2/chat/visitors/{visitor_id}",
            "delete",
            "Delete Visitor",
            "",
            "204",
            "",
            vec!["400", "401", "403", "404", "412", "429", "500", "503"],
        ),
        (
            "/api/v2/chat/visitors/{visitor_id}",
            "put",
            "Update Visitor",
            "Allows an account owner/admin to update details of visitor.",
            "200",
            "VisitorUpdate",
            vec![
                "204", "400", "401", "403", "404", "412", "413", "415", "422", "429", "500", "503",
            ],
        ),
    ];
    for (path, method, summary, description, success, request, errors) in operations {
        let operation = &doc["paths"][path][method];
        assert_eq!(operation["summary"], summary);
        // The seed's operations keep its words; the v2 ones have their own.
        if !description.is_empty() {
            assert_eq!(operation["description"], description);
        }
        assert_eq!(operation["security"], json!([{"bearer": []}]));
        let responses = operation["responses"].as_object().unwrap();
        let mut statuses: Vec<&str> = responses.keys().map(String::as_str).collect();
        statuses.sort_unstable();
        let mut expected = errors.clone();
        expected.push(success);
        expected.sort_unstable();
        assert_eq!(statuses, expected, "{method} {path}");
        let schema = match (method, success) {
            ("delete", _) => None,
            ("get", _) if summary == "List Visitors" => Some("VisitorList"),
            _ => Some("Visitor"),
        };
        match schema {
            Some(schema) => assert_eq!(
                responses[success]["content"]["application/json"]["schema"]["$ref"],
                format!("#/components/schemas/{schema}")
            ),
            None => assert!(responses[success].get("content").is_none()),
        }
        if schema == Some("Visitor") {
            assert!(responses[success]["content"]["application/json"]["example"].is_object());
            assert!(
                responses[success]["headers"]["ETag"].is_object(),
                "{method} {path}"
            );
        }
        if !request.is_empty() {
            assert_eq!(
                operation["requestBody"]["content"]["application/json"]["schema"]["$ref"],
                format!("#/components/schemas/{request}")
            );
        }
        let legacy = path.replace("/api/v2/chat/visitors", "/api/v2/visitors");
        assert_eq!(
            doc["paths"][legacy.as_str()][method]["deprecated"],
            true,
            "{legacy}"
        );
        assert!(operation.get("deprecated").is_none_or(|d| d == false));
    }
}

#[tokio::test]
async fn swagger_ui_is_served() {
    let app = spawn_memory().await;
    let page = app.send(app.client.get(app.url("/swagger-ui/"))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.to_lowercase().contains("swagger"));
    let config = app
        .send(
            app.client
                .get(app.url("/swagger-ui/swagger-initializer.js")),
        )
        .await;
    assert!(
        config.text.contains("/api-docs/openapi.json"),
        "{}",
        config.text
    );
    app.stop().await;
}
