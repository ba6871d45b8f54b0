//! A bearer-token gate in front of an open registry, as Docker Hub or GHCR put one in
//! front of theirs: `/v2/` requests without a valid `Authorization: Bearer` get a 401
//! challenge naming the realm, `GET /token` trades HTTP basic credentials for a token,
//! and authorised requests are streamed through to the registry. One request per
//! connection (`Connection: close` both ways) keeps it simple.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::http::{header, read_head};

/// The `service` the challenge names.
pub const SERVICE: &str = "lamina-test";

/// One call of the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub service: Option<String>,
    pub scope: Option<String>,
    /// Whether the credentials were right and a token was issued.
    pub granted: bool,
}

/// What the gate saw.
#[derive(Debug, Clone, Default)]
pub struct GateLog {
    pub token_requests: Vec<TokenRequest>,
    /// `METHOD path` of each request answered with a challenge.
    pub challenged: Vec<String>,
    /// `METHOD path` of each request let through with a valid token.
    pub authorized: Vec<String>,
}

struct State {
    port: u16,
    upstream: u16,
    /// The `Authorization` header the token endpoint accepts.
    basic: String,
    tokens: Mutex<HashSet<String>>,
    log: Mutex<GateLog>,
}

/// The running gate; stops when dropped.
pub struct TokenGate {
    pub port: u16,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl TokenGate {
    /// Listens on a free loopback port, hands out tokens for `user` / `password` and
    /// forwards authorised requests to `127.0.0.1:upstream`.
    pub async fn start(upstream: u16, user: &str, password: &str) -> TokenGate {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            port,
            upstream,
            basic: format!("Basic {}", base64(format!("{user}:{password}").as_bytes())),
            tokens: Mutex::default(),
            log: Mutex::default(),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(conn, &state).await;
                });
            }
        });
        TokenGate { port, state, task }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A copy of what the gate saw so far.
    pub fn log(&self) -> GateLog {
        self.state.log.lock().unwrap().clone()
    }
}

impl Drop for TokenGate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut conn: TcpStream, state: &State) -> std::io::Result<()> {
    let Some((head, rest)) = read_head(&mut conn).await? else {
        return Ok(());
    };
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut words = head.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let line = format!("{method} {path}");
    let authorization = header(&head, "authorization").unwrap_or("");

    if path == "/token" {
        let granted = authorization == state.basic;
        state.log.lock().unwrap().token_requests.push(TokenRequest {
            service: query_value(query, "service"),
            scope: query_value(query, "scope"),
            granted,
        });
        if !granted {
            return reply(
                conn,
                "401 Unauthorized",
                "",
                r#"{"details":"bad credentials"}"#,
            )
            .await;
        }
        // Each `RandomState` has fresh random keys: a new token per request, no extra crate.
        let token = format!("{:016x}", RandomState::new().hash_one(state.port));
        state.tokens.lock().unwrap().insert(token.clone());
        let body = format!(r#"{{"token":"{token}","access_token":"{token}"}}"#);
        return reply(conn, "200 OK", "Content-Type: application/json\r\n", &body).await;
    }
    if !path.starts_with("/v2/") {
        return reply(conn, "404 Not Found", "", "").await;
    }
    let valid = authorization
        .strip_prefix("Bearer ")
        .is_some_and(|t| state.tokens.lock().unwrap().contains(t));
    if !valid {
        let scope = repository(path)
            .map(|repo| format!(r#",scope="repository:{repo}:pull,push""#))
            .unwrap_or_default();
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{}/token\",service=\"{SERVICE}\"{scope}\r\nContent-Type: application/json\r\n",
            state.port
        );
        state.log.lock().unwrap().challenged.push(line);
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
        return reply(conn, "401 Unauthorized", &challenge, body).await;
    }
    state.log.lock().unwrap().authorized.push(line);
    forward(conn, &head, &rest, state).await
}

/// Streams the request to the registry and its answer back, with `Location` pointed at
/// the gate. (`docker-registry` builds `Location` from the request's `Host`, already the
/// gate's; the rewrite covers a registry configured with a host name of its own.)
async fn forward(conn: TcpStream, head: &str, rest: &[u8], state: &State) -> std::io::Result<()> {
    let up = TcpStream::connect(("127.0.0.1", state.upstream)).await?;
    let (mut up_read, mut up_write) = up.into_split();
    let (mut conn_read, mut conn_write) = conn.into_split();
    up_write
        .write_all(rewrite_head(head, "", "").as_bytes())
        .await?;
    up_write.write_all(rest).await?;
    // The body (sized or chunked) flows on until the registry has answered.
    let body = tokio::spawn(async move { tokio::io::copy(&mut conn_read, &mut up_write).await });

    let Some((response_head, response_rest)) = read_head(&mut up_read).await? else {
        body.abort();
        return Ok(());
    };
    let response_head = String::from_utf8_lossy(&response_head);
    let gate = format!("127.0.0.1:{}", state.port);
    let upstream = format!("127.0.0.1:{}", state.upstream);
    let head = rewrite_head(&response_head, &upstream, &gate);
    conn_write.write_all(head.as_bytes()).await?;
    conn_write.write_all(&response_rest).await?;
    tokio::io::copy(&mut up_read, &mut conn_write).await?;
    body.abort();
    conn_write.shutdown().await
}

/// Answers without asking the registry, then reads whatever body the client still sends
/// so that it sees the answer rather than a reset connection.
async fn reply(
    mut conn: TcpStream,
    status: &str,
    headers: &str,
    body: &str,
) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(response.as_bytes()).await?;
    conn.shutdown().await?;
    let mut sink = [0u8; 64 * 1024];
    let drain = async {
        while conn.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    Ok(())
}

/// The head with `Connection: close`, and `from` replaced by `to` in a `Location` header.
fn rewrite_head(head: &str, from: &str, to: &str) -> String {
    let mut out = String::new();
    for line in head.trim_end_matches("\r\n").split("\r\n") {
        let name = line
            .split_once(':')
            .map(|(k, _)| k.trim().to_ascii_lowercase());
        match name.as_deref() {
            Some("connection") => continue,
            Some("location") if !from.is_empty() => out.push_str(&line.replace(from, to)),
            _ => out.push_str(line),
        }
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

/// The repository a `/v2/<name>/(blobs|manifests|tags)/...` path names.
fn repository(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.strip_prefix("/v2/")?.split('/').collect();
    let kind = segments
        .iter()
        .rposition(|s| matches!(*s, "blobs" | "manifests" | "tags"))?;
    (kind > 0).then(|| segments[..kind].join("/"))
}

/// The percent-decoded value of `key` in a query string.
fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (other, _) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
