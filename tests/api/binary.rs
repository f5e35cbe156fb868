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
