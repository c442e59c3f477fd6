//! The edges of the wire (issue 14, items 3 and 4; M5, L5, L8): the listener's accept queue,
//! malformed upgrade requests and frame headers from raw TCP clients, the memory a hostile
//! produce frame can cost, the end of a busy socket, and what reaches the log and the admin API.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Sends a WebSocket upgrade request by hand and returns the connection and the answer's head.
async fn raw_upgrade(port: u16, path: &str, extra: &[(&str, &str)]) -> (TcpStream, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut byte)).await.expect("an answer").unwrap();
        assert!(n == 1, "connection closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

/// Reads server frames until a close frame and returns its code (None if the connection ends).
async fn close_code(s: &mut TcpStream) -> Option<u16> {
    let read = async {
        loop {
            let mut h = [0u8; 2];
            s.read_exact(&mut h).await.ok()?;
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                let mut l = [0u8; 2];
                s.read_exact(&mut l).await.ok()?;
                len = u64::from(u16::from_be_bytes(l));
            } else if len == 127 {
                let mut l = [0u8; 8];
                s.read_exact(&mut l).await.ok()?;
                len = u64::from_be_bytes(l);
            }
            let mut payload = vec![0u8; len as usize];
            s.read_exact(&mut payload).await.ok()?;
            if h[0] & 0x0f == 0x8 {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("a close frame or the end in time")
}

/// Issue 14, item 3: the listener's accept queue is 1024 by default (it was tokio's 128, and
/// 1,000 clients connecting at once lost SYNs and waited a second for the retry), and
/// `WSPROXY_LISTEN_BACKLOG` sets it. `ss` shows a listener's backlog as its Send-Q.
#[tokio::test]
async fn listen_backlog_is_1024_by_default_and_configurable() {
    let somaxconn: u32 =
        std::fs::read_to_string("/proc/sys/net/core/somaxconn").map_or(4096, |s| s.trim().parse().unwrap_or(4096));
    let backlog_of = |port: u16| -> u32 {
        let out = std::process::Command::new("ss").args(["-ltnH", &format!("sport = :{port}")]).output().expect("ss");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text.lines().next().unwrap_or_else(|| panic!("no listener on {port}: {text}"));
        line.split_whitespace().nth(2).and_then(|q| q.parse().ok()).unwrap_or_else(|| panic!("{line}"))
    };
    let proxy = Proxy::start(&[]).await;
    assert_eq!(backlog_of(proxy.port), 1024.min(somaxconn), "default accept queue");
    // 1,000 simultaneous connects all complete (a liveness bound, not a target).
    let started = Instant::now();
    let connects: Vec<_> = (0..1000)
        .map(|_| {
            let port = proxy.port;
            tokio::spawn(async move {
                let t = Instant::now();
                let s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
                (s, t.elapsed())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    let mut held = Vec::new();
    for c in connects {
        let (s, took) = tokio::time::timeout(Duration::from_secs(30), c).await.expect("connected in time").unwrap();
        slowest = slowest.max(took);
        held.push(s);
    }
    eprintln!("1,000 simultaneous connects: all in {:?}, slowest {slowest:?}", started.elapsed());
    drop(held);
    let custom = Proxy::start(&[("WSPROXY_LISTEN_BACKLOG", "300")]).await;
    assert_eq!(backlog_of(custom.port), 300);
}

/// Issue 14, item 3: a request with two `Origin` headers was judged by the first one only;
/// it is refused with 400, with or without an allow-list.
#[tokio::test]
async fn a_request_with_two_origin_headers_is_refused_with_400() {
    let topic = unique("origins");
    create_topic(&topic, 1).await;
    for env in [vec![], vec![("WSPROXY_ALLOWED_ORIGINS", "https://good.example")]] {
        let proxy = Proxy::start(&env).await;
        let path = format!("/socket/in?clientId=o&topic={topic}");
        let (_, head) =
            raw_upgrade(proxy.port, &path, &[("Origin", "https://good.example"), ("Origin", "https://evil.example")])
                .await;
        assert!(head.starts_with("HTTP/1.1 400"), "two origins ({env:?}): {head}");
        // One allowed Origin still opens the socket.
        let (_, head) = raw_upgrade(proxy.port, &path, &[("Origin", "https://good.example")]).await;
        assert!(head.starts_with("HTTP/1.1 101"), "one origin ({env:?}): {head}");
    }
}

/// Issue 14, item 3: a frame header that claims a huge length on a control frame, or comes
/// unmasked from a client, is a protocol error (1002), not a message too big (1009).
#[tokio::test]
async fn huge_control_frames_and_unmasked_frames_close_with_1002() {
    let proxy = Proxy::start(&[("WSPROXY_ECHO_ENABLED", "true")]).await;
    let huge = 1u64 << 32;
    let mut ping = vec![0x89, 0x80 | 127];
    ping.extend_from_slice(&huge.to_be_bytes());
    ping.extend_from_slice(&[1, 2, 3, 4]);
    let mut unmasked = vec![0x81, 127];
    unmasked.extend_from_slice(&huge.to_be_bytes());
    for (what, header) in [("a ping claiming 4 GiB", ping), ("an unmasked text frame", unmasked)] {
        let (mut s, head) = raw_upgrade(proxy.port, "/socket/echo", &[]).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        s.write_all(&header).await.unwrap();
        assert_eq!(close_code(&mut s).await, Some(1002), "{what}");
    }
    // A masked data frame over the hard limit is still 1009.
    let (mut s, _) = raw_upgrade(proxy.port, "/socket/echo", &[]).await;
    let mut big = vec![0x81, 0x80 | 127];
    big.extend_from_slice(&huge.to_be_bytes());
    big.extend_from_slice(&[1, 2, 3, 4]);
    s.write_all(&big).await.unwrap();
    assert_eq!(close_code(&mut s).await, Some(1009));
}

/// Peak resident memory of the proxy (VmHWM), in KiB.
fn peak_rss_kib(proxy: &Proxy) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.pid())).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Repeats `item` (comma-separated) inside `open`/`close` up to about `size` bytes.
fn filled(open: &str, item: &str, close: &str, size: usize) -> String {
    let n = (size - open.len() - close.len()) / (item.len() + 1);
    let mut s = String::with_capacity(size);
    s.push_str(open);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(item);
    }
    s.push_str(close);
    s
}

/// M5: JSON produce frames were parsed into a `serde_json::Value` tree, about 80 times their
/// size for small nested objects, before any limit was checked. 16 sockets each send a 4 MiB
/// frame of small nested objects at once (an array of 500k records, a record with 380k
/// headers, a `json` value of 500k objects); the proxy's peak RSS grows by less than 512 MiB
/// (a safety bound; the figure is printed).
#[tokio::test]
async fn m5_sixteen_4_mib_frames_of_small_objects_cost_bounded_memory() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("m5");
    create_topic(&topic, 1).await;
    let size = 4 * 1024 * 1024 - 1024; // under WSPROXY_WS_MAX_FRAME_SIZE (4 MiB)
    let shapes = [
        filled("[", r#"{"a":0}"#, "]", size),
        filled(r#"{"value":{"value":"v"},"headers":["#, r#"{"key":""}"#, "]}", size),
        filled(r#"{"value":{"value":["#, r#"{"a":0}"#, "]}}", size),
    ];
    let mut sockets = Vec::new();
    for i in 0..16 {
        let ws = connect(&proxy.url(&format!("/socket/in?clientId=m5-{i}&topic={topic}&valType=json"))).await;
        sockets.push(ws);
    }
    // A small record first on each, so that everything a socket needs is allocated already.
    for ws in &mut sockets {
        send(ws, record(None, "warm", None)).await;
        assert!(recv_json(ws).await["offset"].is_number());
    }
    let before = proxy.rss_kib();
    let peak_before = peak_rss_kib(&proxy);
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            let frame = shapes[i % shapes.len()].clone();
            tokio::spawn(async move {
                ws.send(Message::Text(frame.into())).await.expect("send");
                let answer = recv_text(&mut ws, Duration::from_secs(120)).await;
                let v: Value = serde_json::from_str(&answer).unwrap();
                (i, v)
            })
        })
        .collect();
    for t in tasks {
        let (i, answer) = t.await.unwrap();
        // Each frame gets its answer: the array is refused whole, the others are too large for
        // Kafka or produced; either way one answer and the socket lives.
        assert!(answer.is_object(), "socket {i}: {answer}");
    }
    let peak = peak_rss_kib(&proxy);
    let grew = peak.saturating_sub(before.max(1));
    eprintln!(
        "M5: 16 x 4 MiB frames: RSS {before} KiB before, peak {peak} KiB (peak before {peak_before} KiB): +{} MiB",
        grew / 1024
    );
    assert!(grew < 512 * 1024, "the proxy grew by {} MiB parsing 64 MiB of frames", grew / 1024);
}

/// L5: admin writes need `Content-Type: application/json` (a cross-site `text/plain` POST needs
/// no CORS preflight, and browsers add cached Basic credentials): 415 with a clear message.
#[tokio::test]
async fn l5_admin_writes_without_a_json_content_type_get_415() {
    let admin_port = free_port();
    let admin_s = admin_port.to_string();
    let _proxy = Proxy::start(&[
        ("WSPROXY_ADMIN_ENDPOINT_ENABLED", "true"),
        ("WSPROXY_ADMIN_PORT", admin_s.as_str()),
        ("WSPROXY_ADMIN_BIND_INTERFACE", "127.0.0.1"),
    ])
    .await;
    let body = r#"{"producer-id":"p","messages-per-second":1}"#;
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let mut s = TcpStream::connect(("127.0.0.1", admin_port)).await.unwrap();
        let mut req = format!(
            "POST /admin/client/config/producer HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(ct) = content_type {
            req.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(30), s.read_to_string(&mut answer)).await.unwrap().unwrap();
        assert!(answer.starts_with("HTTP/1.1 415"), "{content_type:?}: {answer}");
        assert!(answer.contains("Content-Type: application/json"), "{answer}");
    }
}

/// L8: a `clientId` with a newline (URL-encoded) cannot forge a log line: ids are logged escaped.
#[tokio::test]
async fn l8_a_client_id_with_a_newline_cannot_forge_log_lines() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("l8");
    create_topic(&topic, 1).await;
    let mut ws = connect(&proxy.url(&format!("/socket/in?clientId=x%0AFORGED%20line&topic={topic}"))).await;
    send(&mut ws, record(None, "v", None)).await;
    assert!(recv_json(&mut ws).await["offset"].is_number());
    hang_up(ws).await;
    let log = proxy.log_text();
    assert!(log.contains("FORGED"), "the socket was logged");
    assert!(!log.lines().any(|l| l.starts_with("FORGED")), "a forged line:\n{log}");
}

/// Issue 14, item 4 on the echo socket: a client pipelining far more frames than the proxy
/// reads before SIGTERM still receives every echo sent and the 1001 (no RST).
#[tokio::test]
async fn sigterm_closes_a_busy_echo_socket_with_1001_and_nothing_lost() {
    let mut proxy = Proxy::start(&[("WSPROXY_ECHO_ENABLED", "true")]).await;
    let ws = connect(&proxy.url("/socket/echo")).await;
    let (mut sink, mut stream) = ws.split();
    let n = 20_000;
    let writer = tokio::spawn(async move {
        for i in 0..n {
            if sink.feed(Message::Text(format!("{i:0>100}").into())).await.is_err() {
                break;
            }
        }
        let _ = sink.flush().await;
    });
    assert!(matches!(stream.next().await, Some(Ok(Message::Text(_)))));
    std::process::Command::new("kill").args(["-TERM", &proxy.pid().to_string()]).status().unwrap();
    let (mut echoed, mut code) = (1, None);
    while let Some(Ok(m)) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.expect("no stall") {
        match m {
            Message::Text(t) => {
                assert_eq!(t.as_str(), format!("{echoed:0>100}"), "echoes stay in order");
                echoed += 1;
            }
            Message::Close(f) => {
                code = f.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    writer.abort();
    eprintln!("{echoed} of {n} pipelined frames echoed before the 1001");
    assert_eq!(code, Some(1001), "closed with 1001 after {echoed} echoes");
    assert!(proxy.signal_and_wait("TERM", Duration::from_secs(20)).expect("exits").success());
}
