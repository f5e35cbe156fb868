//! The `visitor-http` binary itself: its settings, its start-up lines, its logs and its stop.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

/// The binary cargo built next to this test's executable.
fn binary() -> PathBuf {
    let mut path = std::env::current_exe().unwrap();
    path.pop();
    if path.ends_with("deps") {
        path.pop();
    }
    path.join("visitor-http")
}

fn start(args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("VISITORS_TOKENS")
        .env("VISITORS_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .spawn()
        .expect("target/debug/visitor-http is built (make test builds it first)")
}

/// Reads stdout lines until the `listening on` line; returns (address, lines read before it).
fn wait_for_listening(
    child: &mut Child,
) -> (String, Vec<String>, BufReader<std::process::ChildStdout>) {
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line).unwrap();
        assert!(
            read > 0,
            "the server exited before listening; stdout: {seen:?}"
        );
        if let Some(addr) = line.trim().strip_prefix("listening on http://") {
            return (addr.to_owned(), seen, reader);
        }
        seen.push(line);
    }
}

fn terminate(child: &mut Child) {
    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            panic!("the server did not stop within {limit:?}");
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// Waits for a server that must refuse to start; returns what it wrote on stderr.
fn refused(child: &mut Child, limit: Duration) -> String {
    let status = wait_with_timeout(child, limit);
    assert!(!status.success(), "the server should have refused to start");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

#[tokio::test]
async fn in_memory_with_no_token_generates_one_and_serves_on_a_free_port() {
    let mut child = start(&["--bind", "127.0.0.1:0"], &[]);
    let (addr, before, mut rest) = wait_for_listening(&mut child);
    assert!(!addr.ends_with(":0"), "the real port is printed: {addr}");
    let token = before
        .iter()
        .find_map(|line| {
            line.trim()
                .strip_prefix("generated administrator token (in-memory mode, none configured): ")
        })
        .expect("the generated token is printed")
        .to_owned();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let created = client
        .post(format!("http://{addr}/api/v2/chat/visitors"))
        .bearer_auth(&token)
        .json(&json!({"email": "secret.person@example.com", "phone": "+65 99998888"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    terminate(&mut child);
    let status = wait_with_timeout(&mut child, Duration::from_secs(10));
    assert!(status.success(), "graceful stop exits 0: {status}");
    let mut stdout = String::new();
    rest.read_to_string(&mut stdout).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let logs = format!("{}{stdout}{stderr}", before.concat());
    assert!(
        logs.contains("\"status\":201"),
        "one line per request: {logs}"
    );
    assert!(
        logs.contains("in memory"),
        "the start-up log says the store is in memory"
    );
    for secret in ["secret.person@example.com", "99998888"] {
        assert!(!logs.contains(secret), "the logs show {secret}");
    }
    // The generated token is printed once, on its own line, and never logged.
    assert_eq!(logs.matches(token.as_str()).count(), 1, "{logs}");
}

#[test]
fn postgres_with_no_token_refuses_to_start_and_says_how_to_configure() {
    let mut child = start(
        &[
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ],
        &[],
    );
    let stderr = refused(&mut child, Duration::from_secs(20));
    assert!(
        stderr.contains("--token") && stderr.contains("VISITORS_TOKENS"),
        "{stderr}"
    );
}

#[test]
fn tokens_come_from_the_environment_and_bad_ones_are_refused() {
    let mut child = start(
        &["--bind", "127.0.0.1:0"],
        &[("VISITORS_TOKENS", "owner:abc")],
    );
    let stderr = refused(&mut child, Duration::from_secs(10));
    assert!(stderr.contains("unknown role"), "{stderr}");
    assert!(!stderr.contains("abc\""), "{stderr}");
}

#[tokio::test]
async fn env_tokens_configure_roles() {
    let mut child = start(
        &[],
        &[
            ("VISITORS_TOKENS", "administrator:env-admin,agent:env-agent"),
            ("VISITORS_BIND", "127.0.0.1:0"),
        ],
    );
    let (addr, before, _rest) = wait_for_listening(&mut child);
    assert!(
        before.iter().all(|line| !line.contains("generated")),
        "{before:?}"
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{addr}/api/v2/chat/visitors");
    let admin = client
        .post(&url)
        .bearer_auth("env-admin")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status().as_u16(), 201);
    let agent = client
        .post(&url)
        .bearer_auth("env-agent")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(agent.status().as_u16(), 403);
    terminate(&mut child);
    assert!(wait_with_timeout(&mut child, Duration::from_secs(10)).success());
}

/// Reads an HTTP/1.1 response head (status line and headers) on `stream`.
fn read_head(stream: &mut std::net::TcpStream) -> String {
    let mut data = Vec::new();
    let mut byte = [0_u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).unwrap();
        assert!(
            n > 0,
            "the connection closed mid-response: {:?}",
            String::from_utf8_lossy(&data)
        );
        data.push(byte[0]);
    }
    String::from_utf8_lossy(&data).to_string()
}

/// Reads the HTTP/1.1 response on `stream` (head and a Content-Length body).
fn read_response(stream: &mut std::net::TcpStream) -> String {
    let head = read_head(stream);
    let length: usize = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0_u8; length];
    stream.read_exact(&mut body).unwrap();
    format!("{head}{}", String::from_utf8_lossy(&body))
}

/// SIGINT and SIGTERM stop gracefully: a request in flight when the signal arrives (its body
/// half sent) still gets its answer, and the process then exits 0.
#[test]
fn a_signal_lets_the_request_in_flight_finish() {
    use std::io::Write;
    use std::sync::mpsc;

    for signal in ["-INT", "-TERM"] {
        let mut child = start(
            &["--bind", "127.0.0.1:0"],
            &[
                ("VISITORS_TOKENS", "administrator:tok"),
                ("RUST_LOG", "info"),
            ],
        );
        let (addr, _, reader) = wait_for_listening(&mut child);
        let (lines, logged) = mpsc::channel();
        std::thread::spawn(move || {
            for line in reader.lines() {
                if lines.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });

        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        // A first request on the connection proves a worker is serving it.
        write!(stream, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        assert!(read_response(&mut stream).starts_with("HTTP/1.1 200"));

        // The request's headers, with Expect: 100-continue: the interim answer shows the server
        // has taken the request up; then half of the body.
        let body = r#"{"name": "In flight"}"#;
        write!(
            stream,
            "POST /api/v2/chat/visitors HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer tok\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len(),
        )
        .unwrap();
        let interim = read_head(&mut stream);
        assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
        stream.write_all(&body.as_bytes()[..5]).unwrap();
        stream.flush().unwrap();

        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success());
        // Wait until the server has begun to stop, then send the rest of the body.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = logged
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no graceful stop was logged after kill {signal}"));
            if line.contains("stopping gracefully") {
                break;
            }
        }
        stream.write_all(&body.as_bytes()[5..]).unwrap();
        let response = read_response(&mut stream);
        assert!(response.starts_with("HTTP/1.1 201"), "{signal}: {response}");
        assert!(response.contains("\"name\":\"In flight\""), "{response}");
        drop(stream);
        let status = wait_with_timeout(&mut child, Duration::from_secs(20));
        assert!(status.success(), "{signal}: exit {status}");
    }
}
