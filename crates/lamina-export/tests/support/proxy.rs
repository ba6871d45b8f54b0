//! A hostile registry: an HTTP/1.1 proxy in front of a real one that, for requests whose
//! path contains a pattern, answers with an error status, cuts the body short or flips a
//! byte of it. One request per connection (`Connection: close` both ways) keeps it simple.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::http::{find, header, read_head};

/// What to do to a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and an empty body, without asking the registry.
    Status(u16),
    /// Forward, then send only half the body (the header still promises all of it).
    Truncate,
    /// Forward, then flip one byte in the middle of the body.
    Corrupt,
    /// Take the whole request, forward only its head, then close both connections without
    /// an answer: a connection cut in the middle of an upload, after the registry's last
    /// complete write. (Forwarding part of the body would test less: `docker-registry`
    /// drops an upload session whose stored size disagrees with what it last acknowledged,
    /// so the client could only start over.)
    Cut,
}

/// A fault for requests whose `METHOD path` contains `pattern`, `times` times (`None`:
/// every time).
#[derive(Debug, Clone)]
pub struct Rule {
    pub pattern: String,
    pub fault: Fault,
    pub times: Option<usize>,
    /// Matching requests let through before the fault applies.
    pub skip: usize,
}

/// The running proxy; stops when dropped.
pub struct FaultProxy {
    pub port: u16,
    rules: Arc<Mutex<Vec<Rule>>>,
    log: Arc<Mutex<Vec<String>>>,
    heads: Arc<Mutex<Vec<String>>>,
    answers: Arc<Mutex<Vec<(String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let answers: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let (r, l, h, a) = (rules.clone(), log.clone(), heads.clone(), answers.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (r, l, h, a) = (r.clone(), l.clone(), h.clone(), a.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, upstream, r, l, h, a).await;
                });
            }
        });
        FaultProxy {
            port,
            rules,
            log,
            heads,
            answers,
            task,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Adds a rule.
    pub fn inject(&self, pattern: &str, fault: Fault, times: Option<usize>) {
        self.rules.lock().unwrap().push(Rule {
            pattern: pattern.to_owned(),
            fault,
            times,
            skip: 0,
        });
    }

    /// Adds a rule that applies once, to the `nth` (from 1) request containing `pattern`.
    pub fn inject_nth(&self, pattern: &str, fault: Fault, nth: usize) {
        self.rules.lock().unwrap().push(Rule {
            pattern: pattern.to_owned(),
            fault,
            times: Some(1),
            skip: nth.saturating_sub(1),
        });
    }

    /// The value of header `name` (`None`: absent) in each request, in order, whose
    /// `METHOD path` contained `pattern`.
    pub fn request_headers(&self, pattern: &str, name: &str) -> Vec<Option<String>> {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.lines().next().is_some_and(|l| l.contains(pattern)))
            .map(|h| header(h, name).map(str::to_owned))
            .collect()
    }

    /// The value of header `name` (`None`: absent) in each answer the registry gave, in
    /// order, to a request whose `METHOD path` contained `pattern`.
    pub fn response_headers(&self, pattern: &str, name: &str) -> Vec<Option<String>> {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(request, _)| request.contains(pattern))
            .map(|(_, h)| header(h, name).map(str::to_owned))
            .collect()
    }

    /// Removes every rule and forgets the request log.
    pub fn reset(&self) {
        self.rules.lock().unwrap().clear();
        self.log.lock().unwrap().clear();
        self.heads.lock().unwrap().clear();
        self.answers.lock().unwrap().clear();
    }

    /// How many requests (`METHOD path`) contained `pattern`.
    pub fn count(&self, pattern: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(pattern))
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Replaces any `Connection` header with `Connection: close`.
fn close_connection(head: &str) -> String {
    let mut out = String::new();
    for line in head.trim_end_matches("\r\n").split("\r\n") {
        if line
            .split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

async fn serve(
    mut conn: TcpStream,
    upstream: u16,
    rules: Arc<Mutex<Vec<Rule>>>,
    log: Arc<Mutex<Vec<String>>>,
    heads: Arc<Mutex<Vec<String>>>,
    answers: Arc<Mutex<Vec<(String, String)>>>,
) -> std::io::Result<()> {
    let Some((head, mut body)) = read_head(&mut conn).await? else {
        return Ok(());
    };
    let head = String::from_utf8_lossy(&head).into_owned();
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while body.len() < length {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    log.lock().unwrap().push(request_line.clone());
    heads.lock().unwrap().push(head.clone());
    let fault = {
        let mut rules = rules.lock().unwrap();
        let mut hit = None;
        for rule in rules.iter_mut() {
            if request_line.contains(&rule.pattern) && rule.times != Some(0) {
                if rule.skip > 0 {
                    rule.skip -= 1;
                    continue;
                }
                if let Some(t) = rule.times.as_mut() {
                    *t -= 1;
                }
                hit = Some(rule.fault);
                break;
            }
        }
        hit
    };
    if let Some(Fault::Status(code)) = fault {
        let reply = format!(
            "HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\nRetry-After: 0\r\nConnection: close\r\n\r\n"
        );
        conn.write_all(reply.as_bytes()).await?;
        return conn.shutdown().await;
    }

    let mut up = TcpStream::connect(("127.0.0.1", upstream)).await?;
    up.write_all(close_connection(&head).as_bytes()).await?;
    if fault == Some(Fault::Cut) {
        // Give the registry time to take in the head before the connection goes.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        drop(up);
        drop(conn);
        return Ok(());
    }
    up.write_all(&body).await?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).await?;
    let Some(split) = find(&response, b"\r\n\r\n") else {
        conn.write_all(&response).await?;
        return conn.shutdown().await;
    };
    let response_head = String::from_utf8_lossy(&response[..split + 4]).into_owned();
    let mut response_body = response[split + 4..].to_vec();
    answers
        .lock()
        .unwrap()
        .push((request_line, response_head.clone()));
    match fault {
        Some(Fault::Truncate) => response_body.truncate(response_body.len() / 2),
        Some(Fault::Corrupt) if !response_body.is_empty() => {
            let mid = response_body.len() / 2;
            response_body[mid] ^= 0xff;
        }
        _ => {}
    }
    conn.write_all(close_connection(&response_head).as_bytes())
        .await?;
    conn.write_all(&response_body).await?;
    conn.shutdown().await
}
