//! Resume on another node (issue 19): two proxy processes share their session state and resume
//! topic; a resumable client cut off from node A (TCP reset) reconnects to node B with its token.
//! A hands the session over at once (its consumer leaves the group), and B's fresh consumer
//! starts from the committed offsets: every record comes at least once (checked against the
//! independent Python client), well before the consumers' session timeout could have freed the
//! partition. Foreign, reused and wrong tokens get the 400; an open socket on A is taken over.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::resume::*;
use common::*;
use serde_json::{json, Value};

/// The consumers' session timeout: a handover that did not make A's consumer leave its group
/// would wait this long for the partition.
const SESSION_TIMEOUT_MS: &str = "30000";

/// Two nodes sharing a session state topic and a resume topic.
async fn two_nodes() -> (Proxy, Proxy) {
    let (sessions, resume) = (unique("wsproxy-test-sessions"), unique("wsproxy-test-resume"));
    let mut nodes = Vec::new();
    for name in ["a", "b"] {
        let id = unique(&format!("node-{name}"));
        nodes.push(
            Proxy::start(&[
                ("WSPROXY_SERVER_ID", id.as_str()),
                ("WSPROXY_SESSION_STATE_TOPIC", sessions.as_str()),
                ("WSPROXY_RESUME_TOPIC", resume.as_str()),
                ("WSPROXY_CONSUMER_SESSION_TIMEOUT_MS", SESSION_TIMEOUT_MS),
                // The socket sends far ahead of what the client read: keep every record committable.
                ("WSPROXY_CH_MAX_STACK_SIZE", "20000"),
            ])
            .await,
        );
    }
    let b = nodes.pop().unwrap();
    (nodes.pop().unwrap(), b)
}

/// The message of a 400 (the reference's JSON body).
async fn refusal(url: &str) -> String {
    let (status, content_type, body) = refused(url).await;
    assert_eq!((status, content_type.as_str()), (400, "application/json"), "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    body["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_reconnect_to_another_node_takes_the_session_over_from_the_committed_offsets() {
    let (a, b) = two_nodes().await;
    let topic = one_partition_with(&unique("handover"), 1_000).await;
    let group = unique("g");
    let query = resumable_out("c", &group, &topic, false);
    let (url_a, url_b) = (a.url(&query), b.url(&query));

    let mut ws = connect(&url_a).await;
    let token = session_token(&mut ws).await;
    let mut got: BTreeSet<i64> = BTreeSet::new();
    for _ in 0..300 {
        let r = recv_json(&mut ws).await;
        let offset = r["offset"].as_i64().unwrap();
        assert_eq!(r["value"]["value"], json!(format!("p0-{offset}")));
        got.insert(offset);
        if offset == 199 {
            send(&mut ws, json!({"wsProxyMessageId": r["wsProxyMessageId"]}).to_string()).await;
        }
    }
    // The commit landed (the independent client reads it); then the connection is lost.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let committed: Value = serde_json::from_str(&kafka_tool(&["committed", &group, &topic], "")).unwrap();
        if committed["0"] == json!(200) {
            break;
        }
        assert!(Instant::now() < deadline, "the commit never landed: {committed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reset(ws);
    eventually_metric(&a, "wsproxy_consumer_sessions_parked", 1.0).await;

    // Another client's reconnect on B is refused by A (the binding differs), and A keeps it.
    let foreign = b.url(&format!("{}&resumeToken={token}", resumable_out("other", &group, &topic, false)));
    let message = refusal(&foreign).await;
    assert!(message.contains("belongs to a session of another client"), "{message}");
    assert_eq!(metric(&a, "wsproxy_consumer_sessions_parked").await, 1.0, "a refused attempt leaves it parked");

    let started = Instant::now();
    let mut ws = connect(&format!("{url_b}&resumeToken={token}")).await;
    let fresh = session_token(&mut ws).await;
    let to_frame = started.elapsed();
    let first = recv_json(&mut ws).await;
    let to_record = started.elapsed();
    assert_eq!(first["offset"], json!(200), "B starts from the committed offset");
    assert!(
        to_record < Duration::from_secs(15),
        "the handover took {to_record:?}: A's consumer did not leave its group at once (session timeout {SESSION_TIMEOUT_MS} ms)"
    );
    // A's consumer left the group before B's joined: B's is the only member.
    let now = members(&group);
    assert_eq!(now.len(), 1, "A's consumer is still a member: {now:?}");
    eprintln!(
        "handover to another node: {} ms to the session frame, {} ms to the first record",
        to_frame.as_millis(),
        to_record.as_millis()
    );
    got.insert(200);
    while got.len() < 1_000 {
        let r = recv_json(&mut ws).await;
        got.insert(r["offset"].as_i64().unwrap());
    }
    // Every record of the topic, as the independent client reads it, came at least once.
    let in_kafka: BTreeSet<i64> =
        read_back(&topic, 1_000, "string", "string").iter().map(|r| r["offset"].as_i64().unwrap()).collect();
    assert_eq!(in_kafka.len(), 1_000);
    assert_eq!(got, in_kafka);
    assert_eq!(metric(&a, "wsproxy_consumer_sessions_handed_over_total").await, 1.0);
    assert_eq!(metric(&a, "wsproxy_consumer_sessions_parked").await, 0.0);
    await_members(&group, &[("c", 1)]);

    // Once the client was heard from on B (until then the token it came with names the new
    // session, as on one node), the token was used: it names nothing on any node, nor does a
    // wrong one.
    heard(&mut ws).await;
    let message = refusal(&format!("{url_b}&resumeToken={token}")).await;
    assert!(message.contains("'resumeToken' names no parked session"), "{message}");
    let message = refusal(&format!("{url_a}&resumeToken={token}")).await;
    assert!(message.contains("'resumeToken' names no parked session"), "{message}");
    let message = refusal(&format!("{url_b}&resumeToken={}", "0f".repeat(32))).await;
    assert!(message.contains("'resumeToken' names no parked session"), "{message}");

    // B's fresh token resumes on B as usual.
    reset(ws);
    let mut ws = connect(&format!("{url_b}&resumeToken={fresh}")).await;
    session_token(&mut ws).await;
    hang_up(ws).await;
}

#[tokio::test]
async fn a_reconnect_to_another_node_takes_over_a_socket_still_open_on_the_first() {
    let (a, b) = two_nodes().await;
    let topic = one_partition_with(&unique("handover-open"), 10).await;
    let group = unique("g");
    let query = resumable_out("c", &group, &topic, false);
    let mut old = connect(&a.url(&query)).await;
    let token = session_token(&mut old).await;
    assert_eq!(recv_json(&mut old).await["offset"], json!(0));
    // The old connection died silently: A cannot tell. The reconnect reaches B.
    let started = Instant::now();
    let mut ws = connect(&b.url(&format!("{query}&resumeToken={token}"))).await;
    session_token(&mut ws).await;
    assert_eq!(recv_json(&mut ws).await["offset"], json!(0), "nothing was committed: from the start again");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "took {took:?}");
    eprintln!("take-over of a socket open on another node: {} ms to the first record", took.as_millis());
    // A's consumer left the group before B's joined: B's is the only member.
    let now = members(&group);
    assert_eq!(now.len(), 1, "A's consumer is still a member: {now:?}");
    assert_eq!(metric(&a, "wsproxy_consumer_sessions_handed_over_total").await, 1.0);
    // A stopped the old socket.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        use futures::StreamExt;
        while let Some(Ok(_)) = old.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the old socket on A was not closed");
    hang_up(ws).await;
}

/// How long a refusal took, and its message.
async fn timed_refusal(url: &str) -> (Duration, String) {
    let started = Instant::now();
    let message = refusal(url).await;
    (started.elapsed(), message)
}

#[tokio::test]
async fn unknown_expired_and_malformed_tokens_are_refused_at_once() {
    // Well under the handover timeout (5 s): only a token of a node that is down waits for it.
    let at_once = Duration::from_secs(2);
    let proxy = Proxy::start(&[("WSPROXY_CONSUMER_RESUME_WINDOW", "2 seconds")]).await;
    let topic = one_partition_with(&unique("handover-unknown"), 10).await;
    let url = proxy.url(&resumable_out("c", &unique("g"), &topic, true));
    let mut ws = connect(&url).await;
    let token = session_token(&mut ws).await;
    // A token of this node that it never issued.
    let last = if token.ends_with('0') { "1" } else { "0" };
    let forged = format!("{}{last}", &token[..token.len() - 1]);
    for bad in [forged.as_str(), "0123456789abcdef", &"0f".repeat(32), &format!("{token}00"), &"zz".repeat(36)] {
        let (took, message) = timed_refusal(&format!("{url}&resumeToken={bad}")).await;
        assert!(message.contains("'resumeToken' names no parked session"), "{bad}: {message}");
        assert!(took < at_once, "{bad} took {took:?}");
    }
    // Expired: the window passed.
    reset(ws);
    eventually_metric(&proxy, "wsproxy_consumer_sessions_expired_total", 1.0).await;
    let (took, message) = timed_refusal(&format!("{url}&resumeToken={token}")).await;
    assert!(message.contains("'resumeToken' names no parked session"), "{message}");
    assert!(took < at_once, "an expired token took {took:?}");
}

#[tokio::test]
async fn a_token_of_another_node_that_it_no_longer_holds_is_refused_by_that_node_at_once() {
    let (a, b) = two_nodes().await;
    let topic = one_partition_with(&unique("handover-gone"), 10).await;
    let query = resumable_out("c", &unique("g"), &topic, true);
    let mut ws = connect(&a.url(&query)).await;
    let token = session_token(&mut ws).await;
    // A clean close parks nothing: A holds no session under the token any more.
    hang_up(ws).await;
    let (took, message) = timed_refusal(&b.url(&format!("{query}&resumeToken={token}"))).await;
    assert!(message.contains("'resumeToken' names no parked session"), "{message}");
    assert!(took < Duration::from_secs(2), "B waited {took:?} for an answer A should give at once");
}

#[tokio::test]
async fn a_node_that_cannot_use_the_resume_topic_starts_and_resumes_on_its_own() {
    // Not a valid topic name: the resume topic can be neither created nor read, as under ACLs
    // that cover the session state topic only.
    let proxy = Proxy::start(&[("WSPROXY_RESUME_TOPIC", "no such topic!")]).await;
    let topic = one_partition_with(&unique("handover-no-topic"), 10).await;
    let group = unique("g");
    let url = proxy.url(&resumable_out("c", &group, &topic, false));
    let mut ws = connect(&url).await;
    let token = session_token(&mut ws).await;
    assert_eq!(recv_json(&mut ws).await["offset"], json!(0));
    reset(ws);
    eventually_metric(&proxy, "wsproxy_consumer_sessions_parked", 1.0).await;
    let mut ws = connect(&format!("{url}&resumeToken={token}")).await;
    session_token(&mut ws).await;
    assert_eq!(recv_json(&mut ws).await["offset"], json!(0), "resumed on the same node");
    let (took, message) = timed_refusal(&format!("{url}&resumeToken={}", "0f".repeat(36))).await;
    assert!(message.contains("'resumeToken' names no parked session"), "{message}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    hang_up(ws).await;
}

#[tokio::test]
async fn a_request_whose_reconnect_went_away_is_tombstoned_all_the_same() {
    let resume = unique("wsproxy-test-resume");
    // A wait far longer than `read_back`'s: only the dropped wait's guard can tombstone the
    // request in time, not the end of the wait.
    let proxy =
        Proxy::start(&[("WSPROXY_RESUME_TOPIC", resume.as_str()), ("WSPROXY_RESUME_HANDOVER_TIMEOUT", "120 seconds")])
            .await;
    let topic = one_partition_with(&unique("handover-gone-away"), 1).await;
    // A token of a node that does not answer: the request waits for the handover timeout.
    let token = format!("ffffffff{}", "0f".repeat(32));
    let url = proxy.url(&format!("{}&resumeToken={token}", resumable_out("c", &unique("g"), &topic, true)));
    // The client gives up (its connection closes) while the proxy waits for an answer.
    let gave_up = tokio::time::timeout(Duration::from_secs(1), refused(&url)).await;
    assert!(gave_up.is_err(), "answered before the handover timeout: {gave_up:?}");
    // The request's record is tombstoned as soon as the wait is dropped: the independent
    // client reads the request, then its tombstone.
    let records = read_back(&resume, 2, "string", "string");
    let keys: Vec<&str> = records.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(keys[0].starts_with("request:") && keys[1] == keys[0], "{records:?}");
    assert!(records[0]["value"].is_string() && records[1]["value"].is_null(), "{records:?}");
}

#[tokio::test]
async fn a_request_kafka_does_not_take_is_a_503_not_an_unknown_token() {
    let resume = unique("wsproxy-test-resume");
    let proxy = Proxy::start(&[("WSPROXY_RESUME_TOPIC", resume.as_str())]).await;
    let topic = one_partition_with(&unique("handover-no-kafka"), 1).await;
    // The resume topic goes away after the start: the request cannot be written.
    kafka_tool(&["delete-topics", &format!("^{resume}$")], "");
    let token = format!("ffffffff{}", "0f".repeat(32));
    let url = proxy.url(&format!("{}&resumeToken={token}", resumable_out("c", &unique("g"), &topic, true)));
    let (status, _, body) = refused(&url).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Kafka is not reachable"), "{body}");
}

#[tokio::test]
async fn the_resume_topic_expires_what_is_left_and_the_session_state_topic_is_still_only_compacted() {
    let (sessions, resume) = (unique("wsproxy-test-sessions"), unique("wsproxy-test-resume"));
    let _proxy =
        Proxy::start(&[("WSPROXY_SESSION_STATE_TOPIC", sessions.as_str()), ("WSPROXY_RESUME_TOPIC", resume.as_str())])
            .await;
    let config = |topic: &str| -> Value { serde_json::from_str(&kafka_tool(&["topic-config", topic], "")).unwrap() };
    let r = config(&resume);
    assert_eq!(r["partitions"], json!(1), "{r}");
    assert_eq!(r["configs"]["cleanup.policy"], json!("compact,delete"), "{r}");
    assert_eq!(r["configs"]["retention.ms"], json!("3600000"), "{r}");
    assert_eq!(r["configs"]["segment.ms"], json!("3600000"), "{r}");
    let s = config(&sessions);
    assert_eq!(s["configs"]["cleanup.policy"], json!("compact"), "{s}");
}

#[tokio::test]
async fn a_token_handed_over_still_names_the_session_until_its_client_is_heard_from_even_back_on_its_first_node() {
    let (a, b) = two_nodes().await;
    let topic = one_partition_with(&unique("handover-back"), 10).await;
    let group = unique("g");
    let query = resumable_out("c", &group, &topic, false);
    let mut ws = connect(&a.url(&query)).await;
    let token = session_token(&mut ws).await;
    assert_eq!(recv_json(&mut ws).await["offset"], json!(0));
    reset(ws);
    eventually_metric(&a, "wsproxy_consumer_sessions_parked", 1.0).await;
    // Handed over to B; the connection is cut before the client could read B's token.
    let mut ws = connect(&b.url(&format!("{query}&resumeToken={token}"))).await;
    session_token(&mut ws).await;
    reset(ws);
    eventually_metric(&b, "wsproxy_consumer_sessions_parked", 1.0).await;
    // The token A issued names the session on B now: A asks for it instead of refusing it.
    let started = Instant::now();
    let mut ws = connect(&a.url(&format!("{query}&resumeToken={token}"))).await;
    session_token(&mut ws).await;
    assert_eq!(recv_json(&mut ws).await["offset"], json!(0), "nothing was committed");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(metric(&b, "wsproxy_consumer_sessions_handed_over_total").await, 1.0);
    let now = members(&group);
    assert_eq!(now.len(), 1, "B's consumer is still a member: {now:?}");
    hang_up(ws).await;
}
