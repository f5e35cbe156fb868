//! The `visitor-http` binary itself: its settings, its start-up lines, its logs and its stop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

/// The binary cargo built for these tests.
fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_visitor-http"))
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
        .expect("the visitor-http binary cargo built for this test starts")
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
        logs.contains("\"client_address\":\"127.0.0.1\""),
        "the access line names the client: {logs}"
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

/// The server's log lines as they come, read on a thread of their own.
struct LogFollower(std::sync::mpsc::Receiver<String>);

impl LogFollower {
    fn new(reader: BufReader<std::process::ChildStdout>) -> Self {
        let (lines, logged) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in reader.lines() {
                if lines.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        Self(logged)
    }

    /// Waits (at most 10 s) for a line containing `text`; returns when it was read.
    #[track_caller]
    fn wait_for(&self, text: &str) -> std::time::Instant {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .0
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{text:?} was not logged"));
            if line.contains(text) {
                return std::time::Instant::now();
            }
        }
    }
}

/// SIGINT and SIGTERM stop gracefully: a request in flight when the signal arrives (its body
/// half sent) still gets its answer, and the process then exits 0.
#[test]
fn a_signal_lets_the_request_in_flight_finish() {
    use std::io::Write;

    for signal in ["-INT", "-TERM"] {
        let mut child = start(
            &["--bind", "127.0.0.1:0"],
            &[
                ("VISITORS_TOKENS", "administrator:tok"),
                ("RUST_LOG", "info"),
            ],
        );
        let (addr, _, reader) = wait_for_listening(&mut child);
        let log = LogFollower::new(reader);

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
        log.wait_for("stopping gracefully");
        stream.write_all(&body.as_bytes()[5..]).unwrap();
        let response = read_response(&mut stream);
        assert!(response.starts_with("HTTP/1.1 201"), "{signal}: {response}");
        assert!(response.contains("\"name\":\"In flight\""), "{response}");
        drop(stream);
        let status = wait_with_timeout(&mut child, Duration::from_secs(20));
        assert!(status.success(), "{signal}: exit {status}");
    }
}

/// A database of the test's own, for binaries that connect to it themselves; dropped with
/// `WITH (FORCE)`, since a stopped server's sessions may still be closing on the server side.
struct OwnDatabase {
    admin: String,
    name: String,
    url: String,
}

impl OwnDatabase {
    async fn create() -> Self {
        use sqlx::Connection;
        let admin = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
        let name = format!("visitors_binary_{}", uuid_like());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let (server, _) = admin.rsplit_once('/').unwrap();
        let url = format!("{server}/{name}");
        Self { admin, name, url }
    }

    async fn drop(self) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.admin).await.unwrap();
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// A name part no other run uses at the same time.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}_{nanos}", std::process::id())
}

/// Runs `visitor-http tokens …` to its end: (success, stdout, stderr).
fn tokens_command(args: &[&str], database: Option<&str>) -> (bool, String, String) {
    let mut command = Command::new(binary());
    command.arg("tokens").args(args).env_remove("DATABASE_URL");
    if let Some(url) = database {
        command.env("DATABASE_URL", url);
    }
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test]
async fn tokens_are_created_listed_and_revoked_from_the_command_line() {
    let database = OwnDatabase::create().await;
    let url = database.url.clone();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (ok, listed, _) = tokens_command(&["list"], Some(&url));
    assert!(ok);
    assert_eq!(listed.lines().count(), 1, "only the heading: {listed}");

    // With no configured token and none stored, the Postgres mode refuses to start.
    let mut child = start(&["--bind", "127.0.0.1:0"], &[("DATABASE_URL", &url)]);
    let stderr = refused(&mut child, Duration::from_secs(20));
    assert!(stderr.contains("tokens create"), "{stderr}");

    let (ok, stdout, stderr) = tokens_command(
        &["create", "--role", "administrator", "--name", "ci"],
        Some(&url),
    );
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "the token alone on one line: {stdout:?}");
    let token = lines[0];
    assert!(
        token.len() >= 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );
    assert!(stderr.contains("created token 1"), "{stderr}");

    // Only the digest is stored.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT digest FROM api_tokens WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        stored,
        <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()).to_vec()
    );
    let text: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_tokens WHERE position(convert_to($1, 'UTF8') in digest) > 0",
    )
    .bind(token)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(text, 0);

    // Now it starts, on the stored token alone.
    let mut child = start(&["--bind", "127.0.0.1:0"], &[("DATABASE_URL", &url)]);
    let (addr, _, _reader) = wait_for_listening(&mut child);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer = client
        .get(format!("http://{addr}/api/v2/chat/visitors"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    let (ok, _, _) = tokens_command(&["create", "--role", "agent"], Some(&url));
    assert!(ok);
    let (ok, listed, _) = tokens_command(&["list"], Some(&url));
    assert!(ok);
    assert!(
        listed.lines().nth(1).unwrap().contains("administrator"),
        "{listed}"
    );
    assert!(
        listed.lines().nth(1).unwrap().trim_end().ends_with("ci"),
        "{listed}"
    );
    assert!(listed.lines().nth(2).unwrap().contains("agent"), "{listed}");
    assert!(!listed.contains(token));

    let (ok, _, stderr) = tokens_command(&["revoke", "1"], Some(&url));
    assert!(ok, "{stderr}");
    let (_, listed, _) = tokens_command(&["list"], Some(&url));
    assert!(
        listed.lines().nth(1).unwrap().contains("revoked"),
        "{listed}"
    );
    let (ok, _, stderr) = tokens_command(&["revoke", "99"], Some(&url));
    assert!(!ok && stderr.contains("no token has id 99"), "{stderr}");
    let (ok, _, stderr) = tokens_command(&["create", "--role", "agent", "--name", ""], Some(&url));
    assert!(!ok && stderr.contains("--name"), "{stderr}");
    terminate(&mut child);
    assert!(wait_with_timeout(&mut child, Duration::from_secs(20)).success());
    pool.close().await;
    database.drop().await;
}

#[test]
fn the_in_memory_mode_has_no_token_store() {
    let (ok, stdout, stderr) = tokens_command(&["create", "--role", "administrator"], None);
    assert!(!ok);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("in-memory mode has no token store") && stderr.contains("DATABASE_URL"),
        "{stderr}"
    );
}

/// SIGTERM with a drain period: `/readyz` answers 503 at once, requests are still served (and
/// told to close their connections) for the period, then the process exits 0.
#[test]
fn sigterm_drains_before_it_stops() {
    use std::io::Write;

    let mut child = start(
        &["--bind", "127.0.0.1:0", "--drain-seconds", "2"],
        &[
            ("VISITORS_TOKENS", "administrator:tok"),
            ("RUST_LOG", "info"),
        ],
    );
    let (addr, _, reader) = wait_for_listening(&mut child);
    let log = LogFollower::new(reader);
    let request = |path: &str| {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer tok\r\n\r\n"
        )
        .unwrap();
        read_response(&mut stream)
    };
    assert!(request("/readyz").starts_with("HTTP/1.1 200"));

    terminate(&mut child);
    let draining = log.wait_for("draining");
    let ready = request("/readyz");
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    let listed = request("/api/v2/chat/visitors");
    assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
    assert!(
        listed.to_ascii_lowercase().contains("connection: close"),
        "{listed}"
    );

    let stopping = log.wait_for("stopping gracefully");
    assert!(
        stopping - draining >= Duration::from_millis(1900),
        "the drain lasted {:?}",
        stopping - draining
    );
    assert!(wait_with_timeout(&mut child, Duration::from_secs(20)).success());
}

/// The access log is written by a thread of its own, off the request path; a graceful stop still
/// writes every line: the last requests before SIGTERM are in the log.
#[test]
fn every_request_before_sigterm_is_logged() {
    use std::io::Write;

    let mut child = start(
        &["--bind", "127.0.0.1:0", "--rate-limit", "off"],
        &[
            ("VISITORS_TOKENS", "administrator:tok"),
            ("RUST_LOG", "info"),
        ],
    );
    let (addr, _, mut reader) = wait_for_listening(&mut child);
    // Read the log as it comes, as a file or a collector would take it.
    let collected = std::thread::spawn(move || {
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        rest
    });
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    const REQUESTS: usize = 500;
    for n in 0..REQUESTS {
        // One write per request: written in pieces, Nagle's algorithm would hold each back.
        let request = format!(
            "GET /api/v2/chat/visitors/{} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer tok\r\nX-Request-Id: last-{n}\r\n\r\n",
            n + 1
        );
        stream.write_all(request.as_bytes()).unwrap();
        assert!(read_response(&mut stream).starts_with("HTTP/1.1 404"));
    }
    drop(stream);
    terminate(&mut child);
    assert!(wait_with_timeout(&mut child, Duration::from_secs(20)).success());
    let rest = collected.join().unwrap();
    let logged: Vec<serde_json::Value> = rest
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|line: &serde_json::Value| {
            line["request_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("last-"))
        })
        .collect();
    assert_eq!(logged.len(), REQUESTS, "every request has its line");
    let last = &logged[REQUESTS - 1];
    assert_eq!(last["request_id"], format!("last-{}", REQUESTS - 1));
    assert_eq!(last["status"], 404);
    assert_eq!(last["route"], "/api/v2/chat/visitors/{visitor_id}");
    assert!(
        rest.contains("\"stopped\""),
        "the last line of all, after the server stopped, is there too"
    );
}

/// Runs `visitor-http export|import …` to its end: (exit code, stdout, stderr).
fn transfer_command(
    args: &[&str],
    database: Option<&str>,
    stdin: Option<&[u8]>,
) -> (i32, Vec<u8>, String) {
    use std::io::Write;
    let mut command = Command::new(binary());
    command.args(args).env_remove("DATABASE_URL");
    if let Some(url) = database {
        command.env("DATABASE_URL", url);
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        output.stdout,
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Visitors with every awkward value a row can hold: escapes COPY must carry, characters
/// outside ASCII, absent values, fractional and whole `created`, gaps in the ids.
const AWKWARD_VISITORS: &str = r#"
INSERT INTO visitors (name, email, phone, notes, external_id, banned, created) VALUES
  ('Tab	and newline
here', 'a@example.com', '+1 (555) 010.2', E'back\\slash \\N and \t', 'ext-1', true,
   '2014-09-01T10:29:59.25Z'),
  (NULL, NULL, NULL, '', NULL, false, '2020-01-01T00:00:00Z'),
  ('Zoë “quoted” 名前 🎉', 'zoe@example.com', NULL, 'x', 'ext-3', false, '1999-12-31T23:59:59.000001Z'),
  ('control  char', NULL, '12', NULL, 'ext-4', false, now());
DELETE FROM visitors WHERE external_id = 'ext-3';
INSERT INTO visitors (name, created) VALUES ('after a gap', '2001-02-03T04:05:06Z');
"#;

#[tokio::test]
async fn export_then_import_into_an_empty_database_gives_the_same_bytes() {
    let source = OwnDatabase::create().await;
    let target = OwnDatabase::create().await;
    let (code, out, stderr) = transfer_command(&["export"], Some(&source.url), None);
    assert_eq!(
        (code, out.len()),
        (0, 0),
        "an empty store exports nothing: {stderr}"
    );
    let pool = sqlx::PgPool::connect(&source.url).await.unwrap();
    sqlx::raw_sql(AWKWARD_VISITORS)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let dir = std::env::temp_dir().join(format!("visitors_export_{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let first = dir.join("first.ndjson");
    let (code, _, stderr) = transfer_command(
        &["export", "--output", first.to_str().unwrap()],
        Some(&source.url),
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("exported 4 visitors"), "{stderr}");
    let exported = std::fs::read(&first).unwrap();
    let lines: Vec<serde_json::Value> = exported
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect();
    let ids: Vec<i64> = lines.iter().map(|v| v["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 4, 5], "id order, gaps kept");
    assert_eq!(lines[0]["created"], "2014-09-01T10:29:59.250Z");
    assert_eq!(lines[0]["notes"], "back\\slash \\N and \t");
    assert_eq!(lines[1]["notes"], "");
    assert_eq!(lines[1]["name"], serde_json::Value::Null);

    let (code, _, stderr) = transfer_command(
        &["import", first.to_str().unwrap()],
        Some(&target.url),
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("created 4, skipped 0, failed 0"),
        "{stderr}"
    );
    let (code, again, stderr) = transfer_command(&["export"], Some(&target.url), None);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(again, exported, "export, import, export: the same bytes");

    // Run again (from standard input): everything is there already.
    let (code, _, stderr) = transfer_command(&["import", "-"], Some(&target.url), Some(&exported));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("created 0, skipped 4, failed 0"),
        "{stderr}"
    );

    // Ids given afterwards continue above every imported id.
    let pool = sqlx::PgPool::connect(&target.url).await.unwrap();
    let next: i64 =
        sqlx::query_scalar("INSERT INTO visitors (created) VALUES (now()) RETURNING id")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(next, 6);
    pool.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
    source.drop().await;
    target.drop().await;
}

#[tokio::test]
async fn import_reports_each_failed_line_goes_on_and_exits_1() {
    let database = OwnDatabase::create().await;
    let visitor = |id: i64, external_id: &str, name: &str| {
        format!(
            r#"{{"banned":false,"created":"2014-09-01T10:29:59Z","email":null,"external_id":"{external_id}","id":{id},"name":"{name}","notes":null,"phone":null}}"#
        )
    };
    let file = [
        visitor(1, "one", "One"),
        "{not json".to_owned(),
        visitor(2, "two", "Two"),
        String::new(),
        visitor(1, "one", "Changed"),
        visitor(3, "two", "Three"),
        r#"{"banned":false,"created":"2014-09-01T10:29:59Z","email":"nope","external_id":null,"id":4,"name":null,"notes":null,"phone":null}"#.to_owned(),
        r#"{"id":5,"id":6,"banned":false,"created":"2014-09-01T10:29:59Z"}"#.to_owned(),
        visitor(7, "seven", "Seven"),
    ]
    .join("\n");
    let (code, _, stderr) =
        transfer_command(&["import", "-"], Some(&database.url), Some(file.as_bytes()));
    assert_eq!(code, 1, "{stderr}");
    let failed: Vec<&str> = stderr.lines().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(failed.len(), 5, "{stderr}");
    assert!(failed[0].starts_with("line 2: not a visitor"), "{stderr}");
    assert!(
        failed[1].starts_with("line 5: visitor 1 exists with other content"),
        "{stderr}"
    );
    assert!(
        failed[2].starts_with("line 6: external_id \"two\" belongs to visitor 2"),
        "{stderr}"
    );
    assert!(failed[3].starts_with("line 7: not a visitor"), "{stderr}");
    assert!(failed[3].contains("e-mail"), "{stderr}");
    assert!(
        failed[4].starts_with("line 8: not a visitor: duplicate field"),
        "{stderr}"
    );
    assert!(
        stderr.contains("created 3, skipped 0, failed 5"),
        "{stderr}"
    );
    let (_, exported, _) = transfer_command(&["export"], Some(&database.url), None);
    let ids: Vec<i64> = String::from_utf8(exported)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, [1, 2, 7]);
    database.drop().await;
}

#[tokio::test]
async fn export_and_import_refuse_to_run_without_what_they_need() {
    let (code, _, stderr) = transfer_command(&["export"], None, None);
    assert_eq!(code, 2);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    let (code, _, stderr) = transfer_command(&["import", "-"], None, Some(b"{}"));
    assert_eq!(code, 2);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    let database = OwnDatabase::create().await;
    let (code, _, stderr) = transfer_command(
        &["import", "/no/such/file.ndjson"],
        Some(&database.url),
        None,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot open /no/such/file.ndjson"),
        "{stderr}"
    );
    let line = br#"{"banned":false,"created":"2014-09-01T10:29:59Z","email":null,"external_id":null,"id":1,"name":null,"notes":null,"phone":null}"#;
    let mut input = line.to_vec();
    input.extend_from_slice(b"\n{\"name\": \"\xff\"}\n");
    let (code, _, stderr) = transfer_command(&["import", "-"], Some(&database.url), Some(&input));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("line 2 is not UTF-8"), "{stderr}");
    database.drop().await;
}
