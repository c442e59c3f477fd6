//! Resumable consume sockets (`resumable=true`, issue 19 part 1), end to end against the real
//! broker with real WebSocket clients: a client cut off by a TCP reset every 1,000 records
//! resumes with its token and ends with every record at least once (checked against the
//! independent Python client), while a second member of its group sees no rebalance; wrong,
//! reused, foreign and expired tokens get a 400; a clean close does not park; a session not
//! resumed within the window is closed and its slot freed; beyond the cap the oldest goes.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use common::resume::*;
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_client_cut_off_every_1000_records_resumes_without_a_rebalance_and_gets_every_record() {
    // The socket sends far ahead of what the client read (the connection's buffers): a commit
    // stack of 100 per partition would have dropped a record before its commit came.
    let proxy = Proxy::start(&[("WSPROXY_CH_MAX_STACK_SIZE", "20000")]).await;
    let topic = unique("resume");
    create_topic(&topic, 2).await;
    fill(&topic, 2, 10_000).await;
    let group = unique("g");
    let url_a = proxy.url(&resumable_out("a", &group, &topic, false));
    let url_b = proxy.url(&format!("/socket/out?clientId=b&groupId={group}&topic={topic}"));

    let mut a = connect(&url_a).await;
    let mut token = session_token(&mut a).await;
    await_members(&group, &[("a", 2)]);
    // The second member: plain, auto-commit, read all along by a task of its own.
    let b = connect(&url_b).await;
    // A is read meanwhile: a socket whose client does not read does not poll its consumer,
    // and the rebalance waits for every member to poll.
    let deadline = Instant::now() + Duration::from_secs(60);
    let settled = loop {
        consumed_during(&mut a, Duration::from_millis(500)).await;
        let now = members(&group);
        if now.iter().map(|(c, p)| (c.as_str(), p.len())).eq([("a", 1), ("b", 1)]) {
            break now;
        }
        assert!(Instant::now() < deadline, "the group never settled: {now:?}");
    };
    let (a_partition, b_partition) = (settled[0].1[0], settled[1].1[0]);
    let (stop_b, stopped) = tokio::sync::oneshot::channel::<()>();
    let reader_b = tokio::spawn(async move {
        let (mut b, mut stopped, mut seen) = (b, stopped, Vec::new());
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                m = b.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        let r: Value = serde_json::from_str(&t).unwrap();
                        seen.push((r["partition"].as_i64().unwrap(), r["offset"].as_i64().unwrap()));
                    }
                    Some(Ok(_)) => {}
                    other => panic!("the second member's socket ended: {other:?}"),
                }
            }
        }
        hang_up(b).await;
        seen
    });

    // Before the group settled, A was sent records of both partitions: cut it off once first,
    // so that from now on it reads only its own partition.
    reset(a);
    a = connect(&format!("{url_a}&resumeToken={token}")).await;
    token = session_token(&mut a).await;

    let mut got: BTreeSet<i64> = BTreeSet::new();
    let (mut received, mut since_cut, mut cuts, mut repeated) = (0usize, 0usize, 0usize, 0usize);
    let mut committed_next = 0i64;
    let (mut resume_ms, mut attach_ms) = (Vec::new(), Vec::new());
    // The first record after a resume, read to time the resume.
    let mut pending: Option<Value> = None;
    while got.len() < 10_000 {
        let r = match pending.take() {
            Some(r) => r,
            None => recv_json(&mut a).await,
        };
        assert!(r.get("error").is_none(), "an error frame: {r}");
        assert_eq!(r["partition"].as_i64(), Some(a_partition), "a record of another partition: {r}");
        let offset = r["offset"].as_i64().unwrap();
        assert_eq!(r["value"]["value"], json!(format!("p{a_partition}-{offset}")));
        if !got.insert(offset) {
            repeated += 1;
        }
        received += 1;
        since_cut += 1;
        if offset % 100 == 99 || got.len() == 10_000 {
            send(&mut a, json!({"wsProxyMessageId": r["wsProxyMessageId"]}).to_string()).await;
            committed_next = offset + 1;
        }
        if since_cut == 1_000 && got.len() < 10_000 {
            since_cut = 0;
            cuts += 1;
            reset(a);
            if cuts % 2 == 1 {
                // While A is gone: its consumer is still the member with its partition.
                tokio::time::sleep(Duration::from_millis(300)).await;
                assert_eq!(members(&group), settled, "the group changed while A was parked");
            }
            let started = Instant::now();
            a = connect(&format!("{url_a}&resumeToken={token}")).await;
            token = session_token(&mut a).await;
            attach_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            let first = recv_json(&mut a).await;
            resume_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            // What was sent and not committed comes again: nothing after the last commit is skipped.
            let at = first["offset"].as_i64().unwrap_or(-1);
            assert!(at <= committed_next, "resumed at {at}, beyond the committed {committed_next}: records lost");
            pending = Some(first);
        }
    }
    hang_up(a).await;
    assert!(cuts >= 9, "cut off {cuts} times");
    let _ = stop_b.send(());
    let seen_b = reader_b.await.unwrap();
    let partitions_b: HashSet<i64> = seen_b.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        partitions_b,
        HashSet::from([b_partition]),
        "the second member got records of another partition: a rebalance"
    );
    let offsets_b: HashSet<i64> = seen_b.iter().map(|(_, o)| *o).collect();
    assert_eq!(offsets_b.len(), 10_000, "the second member read its whole partition");

    // Every record of A's partition, as the independent client reads the topic, came to A.
    let all = read_back(&topic, 20_000, "string", "string");
    let in_kafka: BTreeSet<i64> = all
        .iter()
        .filter(|r| r["partition"].as_i64() == Some(a_partition))
        .map(|r| r["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(in_kafka.len(), 10_000);
    assert_eq!(got, in_kafka, "A got every record of its partition");
    let committed: Value = serde_json::from_str(&kafka_tool(&["committed", &group, &topic], "")).unwrap();
    assert_eq!(committed[a_partition.to_string()], json!(10_000), "A's last commit landed: {committed}");
    assert_eq!(metric(&proxy, "wsproxy_consumer_sessions_resumed_total").await, (cuts + 1) as f64);
    let spread = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!("min {:.0} ms, median {:.0} ms, max {:.0} ms", v[0], v[v.len() / 2], v[v.len() - 1])
    };
    eprintln!(
        "resume: {received} records received for 10000 ({repeated} sent again) over {cuts} cuts; reconnect to session frame: {}; to first record: {}",
        spread(attach_ms),
        spread(resume_ms)
    );
}

#[tokio::test]
async fn wrong_reused_and_foreign_tokens_are_refused_and_a_clean_close_does_not_park() {
    let proxy = Proxy::start(&[]).await;
    let topic = one_partition_with(&unique("resume-tokens"), 10).await;
    let group = unique("g");
    let url = proxy.url(&resumable_out("c", &group, &topic, true));

    // Fan-out sockets have nothing to park.
    let (status, _, body) =
        refused(&proxy.url(&format!("/socket/out?clientId=f&topic={topic}&fanOut=true&resumable=true"))).await;
    assert_eq!(status, 400);
    assert!(body.contains("Request param 'resumable' is not supported with fanOut=true"), "{body}");

    let (status, content_type, body) = refused(&format!("{url}&resumeToken=0123456789abcdef")).await;
    assert_eq!((status, content_type.as_str()), (400, "application/json"));
    let message: Value = serde_json::from_str(&body).unwrap();
    assert!(message["message"].as_str().unwrap().contains("'resumeToken' names no parked session"), "{body}");

    let mut ws = connect(&url).await;
    let token = session_token(&mut ws).await;
    assert_eq!(recv_json(&mut ws).await["offset"], json!(0), "records follow the session frame");
    reset(ws);
    // Another client may not take it, and trying does not burn it.
    let foreign = proxy.url(&format!("/socket/out?clientId=other&groupId={group}&topic={topic}&resumeToken={token}"));
    let (status, _, body) = refused(&foreign).await;
    assert_eq!(status, 400);
    assert!(body.contains("belongs to a session of another client"), "{body}");
    let mut ws = connect(&format!("{url}&resumeToken={token}")).await;
    let fresh = session_token(&mut ws).await;
    assert_ne!(fresh, token, "a resumed socket gets a fresh token");
    // Once the client was heard from on the resumed socket, it has the fresh token: the old
    // one is used up.
    heard(&mut ws).await;
    let (status, _, body) = refused(&format!("{url}&resumeToken={token}")).await;
    assert_eq!(status, 400, "a token is used once: {body}");

    // A clean close (1000) leaves nothing parked: the token names nothing, the slot is free.
    hang_up(ws).await;
    let (status, _, body) = refused(&format!("{url}&resumeToken={fresh}")).await;
    assert_eq!(status, 400, "{body}");
    let ws = connect(&url).await;
    hang_up(ws).await;
    assert_eq!(metric(&proxy, "wsproxy_consumer_sessions_parked").await, 0.0);
}

#[tokio::test]
async fn a_session_not_resumed_within_the_window_is_closed_and_its_slot_freed() {
    let proxy = Proxy::start(&[("WSPROXY_CONSUMER_RESUME_WINDOW", "3 seconds")]).await;
    let topic = one_partition_with(&unique("resume-window"), 10).await;
    let group = unique("g");
    let url = proxy.url(&resumable_out("c", &group, &topic, true));
    let mut ws = connect(&url).await;
    let first = recv_json(&mut ws).await;
    assert_eq!(first["session"]["resumeWindowMs"], json!(3000));
    let token = first["session"]["resumeToken"].as_str().unwrap().to_owned();
    recv_json(&mut ws).await;
    reset(ws);
    eventually_metric(&proxy, "wsproxy_consumer_sessions_parked", 1.0).await;
    // Parked: still connected as far as the session and the group go.
    let (status, _, body) = refused(&url).await;
    assert_eq!(status, 400);
    assert!(body.contains("a consumer with the same ID is already registered"), "{body}");
    assert_eq!(members(&group).len(), 1);

    eventually_metric(&proxy, "wsproxy_consumer_sessions_expired_total{reason=\"window\"}", 1.0).await;
    assert_eq!(metric(&proxy, "wsproxy_consumer_sessions_parked").await, 0.0);
    let (status, _, body) = refused(&format!("{url}&resumeToken={token}")).await;
    assert_eq!(status, 400, "an expired token: {body}");
    await_members(&group, &[]);
    let ws = connect(&url).await;
    hang_up(ws).await;
}

#[tokio::test]
async fn beyond_the_cap_the_oldest_parked_session_is_closed() {
    let proxy = Proxy::start(&[("WSPROXY_CONSUMER_RESUME_MAX_PARKED", "1")]).await;
    let topic = one_partition_with(&unique("resume-cap"), 10).await;
    let mut tokens = Vec::new();
    let mut urls = Vec::new();
    for client in ["old", "new"] {
        let url = proxy.url(&resumable_out(client, &unique("g"), &topic, true));
        let mut ws = connect(&url).await;
        tokens.push(session_token(&mut ws).await);
        recv_json(&mut ws).await;
        reset(ws);
        urls.push(url);
        eventually_metric(&proxy, "wsproxy_consumer_sessions_parked", 1.0).await;
    }
    eventually_metric(&proxy, "wsproxy_consumer_sessions_expired_total{reason=\"cap\"}", 1.0).await;
    let (status, _, body) = refused(&format!("{}&resumeToken={}", urls[0], tokens[0])).await;
    assert_eq!(status, 400, "the oldest was closed: {body}");
    let mut ws = connect(&format!("{}&resumeToken={}", urls[1], tokens[1])).await;
    session_token(&mut ws).await;
    hang_up(ws).await;
}

#[tokio::test]
async fn a_pull_socket_gets_its_session_frame_before_any_credit_and_keeps_pulling_after_a_resume() {
    let proxy = Proxy::start(&[]).await;
    let topic = one_partition_with(&unique("resume-pull"), 20).await;
    let url = proxy.url(&format!(
        "/socket/out?clientId=c&groupId={}&topic={topic}&pull=true&resumable=true&autoCommit=false",
        unique("g")
    ));
    let mut ws = connect(&url).await;
    let token = session_token(&mut ws).await;
    assert_eq!(maybe_json(&mut ws, Duration::from_secs(3)).await, None, "no record before credit");
    send(&mut ws, json!({"request": 3}).to_string()).await;
    for offset in 0..3 {
        assert_eq!(recv_json(&mut ws).await["offset"], json!(offset));
    }
    let last = recv_json_none(&mut ws).await;
    assert!(last, "exactly the credit");
    reset(ws);
    let mut ws = connect(&format!("{url}&resumeToken={token}")).await;
    session_token(&mut ws).await;
    assert_eq!(maybe_json(&mut ws, Duration::from_secs(2)).await, None, "a resumed pull socket starts without credit");
    send(&mut ws, json!({"request": 1}).to_string()).await;
    assert_eq!(recv_json(&mut ws).await["offset"], json!(0), "nothing was committed: the records come again");
    hang_up(ws).await;
}

/// Whether nothing more came within a second.
async fn recv_json_none(ws: &mut Ws) -> bool {
    maybe_json(ws, Duration::from_secs(1)).await.is_none()
}

#[tokio::test]
async fn a_reconnect_takes_over_a_socket_whose_connection_died_silently() {
    let proxy = Proxy::start(&[]).await;
    let topic = one_partition_with(&unique("resume-silent"), 10).await;
    let url = proxy
        .url(&format!("/socket/out?clientId=c&groupId={}&topic={topic}&resumable=true&autoCommit=false", unique("g")));
    let mut old = connect(&url).await;
    let token = session_token(&mut old).await;
    assert_eq!(recv_json(&mut old).await["offset"], json!(0));
    // The old connection stays open but the client is gone (no reset, no close): the node
    // cannot tell. The reconnect does not wait for the idle timeout.
    let started = Instant::now();
    let mut ws = connect(&format!("{url}&resumeToken={token}")).await;
    session_token(&mut ws).await;
    assert_eq!(recv_json(&mut ws).await["offset"], json!(0), "nothing was committed: from the start again");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    eprintln!("take-over of a silently dead connection: {} ms to the first record", started.elapsed().as_millis());
    hang_up(ws).await;
    drop(old);
}

#[tokio::test]
async fn a_resume_cut_off_before_its_client_read_the_new_token_is_resumed_with_the_old_one() {
    let proxy = Proxy::start(&[]).await;
    let topic = one_partition_with(&unique("resume-flap"), 10).await;
    let url = proxy
        .url(&format!("/socket/out?clientId=c&groupId={}&topic={topic}&resumable=true&autoCommit=false", unique("g")));
    let mut ws = connect(&url).await;
    let first = session_token(&mut ws).await;
    recv_json(&mut ws).await;
    reset(ws);
    // A flapping network: the resume's connection dies before the client read its first frame.
    let ws = connect(&format!("{url}&resumeToken={first}")).await;
    reset(ws);
    // The client still has only the first token: it names the session until the client is
    // heard from on a resumed socket.
    let mut ws = connect(&format!("{url}&resumeToken={first}")).await;
    let third = session_token(&mut ws).await;
    assert_eq!(recv_json(&mut ws).await["offset"], json!(0), "nothing was committed: from the start again");
    heard(&mut ws).await;
    reset(ws);
    // Heard from: now only the newest token names it.
    let (status, _, body) = refused(&format!("{url}&resumeToken={first}")).await;
    assert_eq!(status, 400, "{body}");
    let mut ws = connect(&format!("{url}&resumeToken={third}")).await;
    session_token(&mut ws).await;
    assert_eq!(recv_json(&mut ws).await["offset"], json!(0));
    hang_up(ws).await;
}
