//! Time limits and the diagnostics echo socket: a client that dribbles its upgrade request
//! (slowloris) is cut off by the header read timeout while others are served; an idle socket
//! is closed with 1001 and a reason, and pings, pongs and frames keep a socket alive;
//! `/socket/echo` echoes with the real sockets' limits and exists only when enabled.

mod common;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::*;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// Waits for the close frame (other frames skipped): (code, reason), or None when the
/// connection ended without one.
async fn close_frame(ws: &mut Ws, within: Duration) -> Option<(u16, String)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.expect("no close within the time limit") {
            Some(Ok(Message::Close(f))) => return f.map(|f| (u16::from(f.code), f.reason.to_string())),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

/// Sends a record and expects its acknowledgement.
async fn produces(ws: &mut Ws, value: &str) {
    send(ws, record(None, value, Some(value))).await;
    let r = recv_json(ws).await;
    assert_eq!(r["clientMessageId"], value, "{r}");
    assert!(r["offset"].is_number(), "{r}");
}

/// Open file descriptors of a process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// The process's open file descriptors once they stopped changing for a second (at most 15 s):
/// a proxy that is ready may still be opening its Kafka clients' broker connections (the
/// resume topic's reader connects to the partition's leader about half a second later).
async fn settled_fds(pid: u32) -> usize {
    let until = Instant::now() + Duration::from_secs(15);
    let (mut last, mut since) = (fds(pid), Instant::now());
    while since.elapsed() < Duration::from_secs(1) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = fds(pid);
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    last
}

#[tokio::test]
async fn slowloris_upgrade_requests_are_cut_off_while_others_are_served() {
    let proxy = Proxy::start(&[("WSPROXY_HTTP_HEADER_READ_TIMEOUT", "2 seconds")]).await;
    let topic = unique("slowloris");
    create_topic(&topic, 1).await;
    let baseline_fds = settled_fds(proxy.pid()).await;

    // 100 raw TCP clients send an upgrade request one byte every 100 ms (the whole request
    // would take about 25 s); each notes when the proxy hung up and how much it had sent.
    let request = format!(
        "GET /socket/in?clientId=slow&topic={topic} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let port = proxy.port;
    let dribblers: Vec<_> = (0..100)
        .map(|_| {
            let request = request.clone().into_bytes();
            tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                let t0 = Instant::now();
                let mut buf = [0u8; 512];
                let mut answer = Vec::new();
                for (sent, byte) in request.iter().enumerate() {
                    if s.write_all(&[*byte]).await.is_err() {
                        return (t0.elapsed(), sent, answer);
                    }
                    match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
                        Err(_) => {}
                        Ok(Ok(0)) | Ok(Err(_)) => return (t0.elapsed(), sent + 1, answer),
                        Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                    }
                }
                panic!("the proxy waited for the whole dribbled request ({} bytes)", request.len());
            })
        })
        .collect();

    // Meanwhile a normal client opens a socket and produces, and the probes answer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let mut ws = connect(&proxy.url(&format!("/socket/in?clientId=normal&topic={topic}"))).await;
    for i in 0..20 {
        produces(&mut ws, &format!("normal-{i}")).await;
    }
    let (status, _, _) = http(proxy.port, "GET", "/healthcheck", &[]).await.unwrap();
    assert_eq!(status, 200);
    println!("normal client: connected and 20 records acknowledged in {:?} beside 100 slowloris clients", t0.elapsed());

    let mut cut_after = Vec::new();
    for d in dribblers {
        let (after, sent, answer) = d.await.unwrap();
        assert!(sent < request.len(), "the request was never complete");
        assert!(answer.is_empty(), "no answer to an incomplete request: {}", String::from_utf8_lossy(&answer));
        cut_after.push(after);
    }
    cut_after.sort();
    println!(
        "slowloris clients cut off after {:?} (first) to {:?} (last); header read timeout 2 s",
        cut_after[0],
        cut_after[cut_after.len() - 1]
    );
    assert!(cut_after[0] >= Duration::from_millis(1500), "not cut before the timeout: {:?}", cut_after[0]);
    assert!(cut_after[cut_after.len() - 1] < Duration::from_secs(15), "cut off late: {cut_after:?}");
    // Their file descriptors are gone again (the normal socket still holds one).
    let deadline = Instant::now() + Duration::from_secs(10);
    while fds(proxy.pid()) > baseline_fds + 1 {
        assert!(Instant::now() < deadline, "fds {} vs baseline {baseline_fds}", fds(proxy.pid()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    produces(&mut ws, "after the slowloris").await;
}

#[tokio::test]
async fn a_kept_alive_http_connection_without_a_next_request_is_closed() {
    let proxy = Proxy::start(&[("WSPROXY_HTTP_HEADER_READ_TIMEOUT", "1 second")]).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    s.write_all(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let t0 = Instant::now();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut all)).await.expect("closed").unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(t0.elapsed() >= Duration::from_millis(800), "closed after {:?}", t0.elapsed());
}

#[tokio::test]
async fn an_idle_socket_is_closed_with_1001_and_a_reason() {
    // Server pings only every minute, so nothing makes the client answer.
    let proxy = Proxy::start(&[
        ("WSPROXY_SOCKET_IDLE_TIMEOUT", "2 seconds"),
        ("WSPROXY_SOCKET_KEEP_ALIVE_INTERVAL", "60 seconds"),
    ])
    .await;
    let topic = unique("idle");
    create_topic(&topic, 1).await;
    let mut producer = connect(&proxy.url(&format!("/socket/in?clientId=idle-in&topic={topic}"))).await;
    produces(&mut producer, "before going quiet").await;
    let mut consumer =
        connect(&proxy.url(&format!("/socket/out?clientId=idle-out&groupId={}&topic={topic}", unique("g")))).await;
    let t0 = Instant::now();
    let closed = close_frame(&mut producer, Duration::from_secs(20)).await;
    let after = t0.elapsed();
    assert_eq!(closed, Some((1001, "idle timeout: nothing received for 2 s".to_owned())));
    assert!(after >= Duration::from_millis(1500), "closed after {after:?}");
    let closed = close_frame(&mut consumer, Duration::from_secs(20)).await;
    assert_eq!(closed, Some((1001, "idle timeout: nothing received for 2 s".to_owned())));
    println!("idle produce socket closed {after:?} after its last frame (timeout 2 s)");
}

#[tokio::test]
async fn pings_pongs_and_frames_keep_a_socket_alive() {
    let topic = unique("alive");
    create_topic(&topic, 1).await;
    // 1. The client pings (the server never does within the test).
    let proxy = Proxy::start(&[
        ("WSPROXY_SOCKET_IDLE_TIMEOUT", "2 seconds"),
        ("WSPROXY_SOCKET_KEEP_ALIVE_INTERVAL", "60 seconds"),
    ])
    .await;
    let mut pinger = connect(&proxy.url(&format!("/socket/in?clientId=pinger&topic={topic}"))).await;
    let mut talker = connect(&proxy.url(&format!("/socket/in?clientId=talker&topic={topic}"))).await;
    let group = unique("g");
    let mut committer =
        connect(&proxy.url(&format!("/socket/out?clientId=c&groupId={group}&topic={topic}&autoCommit=false"))).await;
    let t0 = Instant::now();
    let mut i = 0;
    while t0.elapsed() < Duration::from_secs(7) {
        pinger.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
        produces(&mut talker, &format!("talk-{i}")).await;
        // Any text frame counts on a consume socket (this one is an invalid commit).
        send(&mut committer, "{}").await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    produces(&mut pinger, "the pinger is still open").await;
    produces(&mut talker, "the talker is still open").await;
    drop(proxy);

    // 2. The server pings every 500 ms and the client only reads (its library answers pongs).
    let proxy =
        Proxy::start(&[("WSPROXY_SOCKET_IDLE_TIMEOUT", "2 seconds"), ("WSPROXY_SOCKET_KEEP_ALIVE_INTERVAL", "500ms")])
            .await;
    let mut reader = connect(&proxy.url(&format!("/socket/in?clientId=reader&topic={topic}"))).await;
    let mut consumer =
        connect(&proxy.url(&format!("/socket/out?clientId=r&groupId={}&topic={topic}", unique("g")))).await;
    let mut pings = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(7) {
        for ws in [&mut reader, &mut consumer] {
            match tokio::time::timeout(Duration::from_millis(50), ws.next()).await {
                Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
                Ok(Some(Ok(Message::Text(_)))) | Err(_) => {}
                other => panic!("socket ended while the client answered pings: {other:?}"),
            }
        }
    }
    assert!(pings >= 10, "the server pinged {pings} times in 7 s");
    produces(&mut reader, "the reader is still open").await;
}

/// Reads the echo of one frame (the server's pings skipped).
async fn echoed(ws: &mut Ws) -> Message {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("an echo").expect("open") {
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(m) => return m,
            Err(e) => panic!("echo socket failed: {e}"),
        }
    }
}

#[tokio::test]
async fn echo_socket_echoes_with_the_real_limits_and_is_off_by_default() {
    let off = Proxy::start(&[]).await;
    let (status, _, body) = refused(&off.url("/socket/echo")).await;
    assert_eq!(status, 404, "{body}");
    drop(off);

    let proxy = Proxy::start(&[
        ("WSPROXY_ECHO_ENABLED", "true"),
        ("WSPROXY_WS_MAX_FRAME_SIZE", "65536"),
        ("WSPROXY_BASIC_AUTH_ENABLED", "true"),
        ("WSPROXY_BASIC_AUTH_REALM", "proxy"),
        ("WSPROXY_BASIC_AUTH_USERNAME", "echo"),
        ("WSPROXY_BASIC_AUTH_PASSWORD", "s3cret"),
        ("WSPROXY_MAX_CONNECTIONS_PER_IP", "2"),
        ("WSPROXY_ALLOWED_ORIGINS", "https://ok.example"),
    ])
    .await;
    let url = proxy.url("/socket/echo");
    let good = format!("Basic {}", BASE64.encode("echo:s3cret"));
    // The same authentication and Origin rules as the real sockets.
    assert_eq!(connect_with(&url, NO_HEADERS).await.err().map(|e| e.0), Some(401));
    let wrong = format!("Basic {}", BASE64.encode("echo:wrong"));
    assert_eq!(connect_with(&url, &[("authorization", &wrong)]).await.err().map(|e| e.0), Some(401));
    let evil = [("authorization", good.as_str()), ("origin", "https://evil.example")];
    assert_eq!(connect_with(&url, &evil).await.err().map(|e| e.0), Some(403));

    let ok = [("authorization", good.as_str()), ("origin", "https://ok.example")];
    let mut ws = connect_with(&url, &ok).await.unwrap();
    send(&mut ws, "hello, echo").await;
    assert_eq!(echoed(&mut ws).await, Message::Text("hello, echo".into()));
    let bytes: Vec<u8> = (0..=255).collect();
    ws.send(Message::Binary(bytes.clone().into())).await.unwrap();
    assert_eq!(echoed(&mut ws).await, Message::Binary(bytes.into()));
    let just_fits = "é".repeat(32_768); // 65,536 bytes
    send(&mut ws, just_fits.clone()).await;
    assert_eq!(echoed(&mut ws).await, Message::Text(just_fits.into()));
    // Over the frame limit: the produce socket's error frame, and the socket stays open.
    send(&mut ws, "x".repeat(70_000)).await;
    let Message::Text(err) = echoed(&mut ws).await else { panic!("expected an error frame") };
    let err: serde_json::Value = serde_json::from_str(&err).unwrap();
    assert_eq!(err["error"]["code"], "FRAME_TOO_LARGE", "{err}");
    send(&mut ws, "still here").await;
    assert_eq!(echoed(&mut ws).await, Message::Text("still here".into()));

    // The per-IP limit counts echo sockets: a second one is admitted, a third is refused.
    let mut second = connect_with(&url, &ok).await.unwrap();
    let Err((status, body)) = connect_with(&url, &ok).await else { panic!("a third socket was admitted") };
    assert_eq!(status, 503, "{body}");

    // Over the codec's hard limit (2 x max): closed with 1009, like a produce socket.
    let _ = second.send(Message::Text("x".repeat(200_000).into())).await;
    let code = loop {
        match second.next().await {
            Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None, // reset before the close frame was read
        }
    };
    assert!(code.is_none() || code == Some(1009), "oversized echo frame closes with 1009, got {code:?}");
    send(&mut ws, "the first echo socket lives on").await;
    assert_eq!(echoed(&mut ws).await, Message::Text("the first echo socket lives on".into()));
    ws.close(None).await.unwrap();
}

/// Writes `n` string records with the independent client.
fn fill_with_tool(topic: &str, n: usize) {
    let records: Vec<serde_json::Value> =
        (0..n).map(|i| serde_json::json!({"value": {"format": "string", "value": format!("v{i}")}})).collect();
    write_with_tool(topic, &records);
}

/// M8: the consumer defaults (`WSPROXY_CONSUMER_RATELIMIT_DEFAULT_MESSAGES_PER_SEC`,
/// `WSPROXY_CONSUMER_DEFAULT_BATCH_SIZE`) and a group's entry in
/// `WSPROXY_CONSUMER_CLIENT_SPECIFIC_LIMITS` cap what a socket asks for with `rate=` and
/// `batchSize=`; asking for less is granted. Rates are checked from above (a loaded machine
/// only slows a socket down) and "unlimited" as far faster than the cap would allow.
#[tokio::test]
async fn m8_consumer_rate_and_batch_size_limits_cap_what_sockets_ask_for() {
    let free = unique("free-group");
    let statics = format!(r#"[{{"group-id":"{free}","messages-per-second":0,"batch-size":3}}]"#);
    let proxy = Proxy::start(&[
        ("WSPROXY_CONSUMER_RATELIMIT_DEFAULT_MESSAGES_PER_SEC", "2"),
        ("WSPROXY_CONSUMER_DEFAULT_BATCH_SIZE", "5"),
        ("WSPROXY_CONSUMER_CLIENT_SPECIFIC_LIMITS", &statics),
    ])
    .await;
    let topic = unique("consumer-caps");
    create_topic(&topic, 1).await;
    fill_with_tool(&topic, 200);
    let url = |group: &str, extra: &str| {
        proxy.url(&format!("/socket/out?clientId={}&groupId={group}&topic={topic}&valType=string{extra}", unique("c")))
    };
    // Asking for more than the defaults: 2 records a second, at most 5 per frame.
    let mut greedy = connect(&url(&unique("g"), "&rate=1000&batchSize=50")).await;
    // Asking for nothing: the default rate.
    let mut plain = connect(&url(&unique("g"), "")).await;
    // Asking for less than the default rate: granted.
    let mut modest = connect(&url(&unique("g"), "&rate=1")).await;
    // The free group: no rate cap, at most 3 per frame.
    let mut free_ws = connect(&url(&free, "&batchSize=50")).await;

    let span = Duration::from_secs(5);
    let ((greedy_n, greedy_frame), (plain_n, _), (modest_n, _)) = tokio::join!(
        consumed_during(&mut greedy, span),
        consumed_during(&mut plain, span),
        consumed_during(&mut modest, span)
    );
    let started = Instant::now();
    let (mut free_n, mut free_frame) = (0, 0);
    while free_n < 200 {
        let frame = recv_json(&mut free_ws).await;
        free_n += records_in(&frame);
        free_frame = free_frame.max(records_in(&frame));
    }
    let free_took = started.elapsed();
    eprintln!("in {span:?}: greedy {greedy_n} (frames up to {greedy_frame}), plain {plain_n}, modest {modest_n}; free group: 200 in {free_took:?} (frames up to {free_frame})");
    // The rate over the span, a first burst of at most the rate, slack.
    let most = |rate: usize| rate * span.as_secs() as usize + rate + 2;
    assert!((1..=most(2)).contains(&greedy_n), "rate=1000 under a cap of 2/s: {greedy_n} records in {span:?}");
    assert!(greedy_frame <= 5, "batchSize=50 under a cap of 5: a frame of {greedy_frame}");
    assert!((1..=most(2)).contains(&plain_n), "no rate= under a cap of 2/s: {plain_n} records in {span:?}");
    assert!((1..=most(1)).contains(&modest_n), "rate=1 under a cap of 2/s: {modest_n} records in {span:?}");
    assert!(free_frame <= 3, "batchSize=50 under the group's cap of 3: a frame of {free_frame}");
    assert!(free_took < Duration::from_secs(50), "the free group's 200 records took {free_took:?} (100 s at 2/s)");
}
