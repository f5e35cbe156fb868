//! Requests written byte by byte on a raw socket: only what the HTTP stack refuses before the
//! request is parsed (a malformed request line: 400; headers too many or too large: 431) may
//! answer without the JSON envelope (contract §4). Everything else gets the envelope.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::helpers::{spawn_memory, ADMIN_TOKEN};

/// Sends `request` and reads the answer: its status and body.
fn exchange(base: &str, request: &[u8]) -> (u16, String, String) {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0_u8; 8192];
    // Read until the server closes (every request here asks it to) or the answer is complete.
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
        if complete(&answer) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, head.to_owned(), body.to_owned())
}

/// True when the head is in and as many body bytes as its Content-Length says.
fn complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    body.len() >= length
}

fn assert_envelope(what: &str, status: u16, head: &str, body: &str) {
    let value: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|_| panic!("{what}: {status} without the envelope: {head}\n{body:?}"));
    assert!(
        value["error"].is_string() && value["description"].is_string(),
        "{what}: {value}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{what}: {head}"
    );
}

#[tokio::test]
async fn only_unparsable_requests_answer_without_the_envelope() {
    let app = spawn_memory().await;
    let base = app.base.clone();
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
    tokio::task::spawn_blocking(move || {
        // Refused before parsing: a bare status is allowed.
        let (status, _, _) = exchange(&base, b"NOT A REQUEST LINE\r\n\r\n");
        assert_eq!(status, 400);
        // Large or many headers: the stack either serves the request or refuses it bare.
        let big = format!("X-Big: {}\r\n", "a".repeat(256 * 1024));
        let many: String = (0..500).map(|n| format!("X-H{n}: v\r\n")).collect();
        for headers in [big, many] {
            let request = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n");
            let (status, head, body) = exchange(&base, request.as_bytes());
            match status {
                200 => assert_eq!(body, r#"{"status":"ok"}"#, "{head}"),
                400 | 431 => {}
                other => panic!("{other}: {head}"),
            }
        }

        // Parsed requests: every error carries the envelope.
        let cases: Vec<(&str, String)> = vec![
            ("an unknown method", format!("BREW /api/v2/chat/visitors HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")),
            ("a bad percent-escape in the id", format!("GET /api/v2/chat/visitors/%ZZ HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")),
            ("a body that ends early", format!("POST /api/v2/chat/visitors HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n{{\"a\"\r\n0\r\n\r\n")),
            ("a body over the limit announced", format!("POST /api/v2/chat/visitors HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 70000\r\nConnection: close\r\n\r\n{{}}")),
            ("no token on an unknown path", "GET /api/v2/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_owned()),
            ("an unknown path", "GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_owned()),
            ("a query string that is not one", format!("GET /api/v2/chat/visitors?page[size]=%FF%FE HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")),
            ("a body on a GET with a bad length", format!("PUT /api/v2/chat/visitors/1 HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")),
        ];
        for (what, request) in cases {
            let (status, head, body) = exchange(&base, request.as_bytes());
            assert!(status >= 400, "{what}: {status}");
            assert_envelope(what, status, &head, &body);
        }
    })
    .await
    .unwrap();
    app.stop().await;
}
