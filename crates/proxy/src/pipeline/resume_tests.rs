//! Unit tests of the resumable sessions' rules ([`super::Ledger`]) and of [`super::Parking`].

use super::*;

fn binding(client: &str) -> Binding {
    Binding {
        principal: "anonymous".to_owned(),
        client_id: client.to_owned(),
        group_id: "g".to_owned(),
        topic: "t".to_owned(),
        auto_commit: false,
        kafka: None,
    }
}

#[test]
fn a_token_is_taken_once_and_only_by_its_binding() {
    let now = Instant::now();
    let mut l = Ledger::new(10);
    l.insert("tok".to_owned(), binding("a"), now + Duration::from_secs(30), 1, None);
    assert_eq!(l.take("tok", &binding("b"), now), Err(Refusal::NotYours));
    let mut other = binding("a");
    other.kafka = Some(KafkaCredentials { username: "u".into(), password: "p".into(), bearer: None });
    assert_eq!(l.take("tok", &other, now), Err(Refusal::NotYours), "other Kafka credentials");
    other = binding("a");
    other.principal = "sub:mallory".to_owned();
    assert_eq!(l.take("tok", &other, now), Err(Refusal::NotYours), "another identity");
    assert_eq!(l.take("nope", &binding("a"), now), Err(Refusal::Unknown));
    assert_eq!(l.take("tok", &binding("a"), now), Ok(1), "a refused attempt leaves it to its owner");
    assert_eq!(l.take("tok", &binding("a"), now), Err(Refusal::Unknown), "single use");
    assert!(l.is_empty());
}

#[test]
fn a_session_parked_before_its_client_read_the_new_token_is_also_named_by_the_old_one() {
    let now = Instant::now();
    let later = now + Duration::from_secs(30);
    let mut l = Ledger::new(10);
    l.insert("new".to_owned(), binding("a"), later, 1, Some("old".to_owned()));
    assert_eq!(l.take("old", &binding("b"), now), Err(Refusal::NotYours));
    assert_eq!(l.take("old", &binding("a"), now), Ok(1));
    // Taken once, by either name.
    assert_eq!(l.take("new", &binding("a"), now), Err(Refusal::Unknown));
    assert_eq!(l.take("old", &binding("a"), now), Err(Refusal::Unknown));
    // Taken by its own token, the old one goes with it; removed, both go.
    l.insert("new2".to_owned(), binding("a"), later, 2, Some("old2".to_owned()));
    assert_eq!(l.take("new2", &binding("a"), now), Ok(2));
    assert_eq!(l.take("old2", &binding("a"), now), Err(Refusal::Unknown));
    let (seq, _) = l.insert("new3".to_owned(), binding("a"), later, 3, Some("old3".to_owned()));
    assert_eq!(l.remove("new3", seq), Some(3));
    assert_eq!(l.take("old3", &binding("a"), now), Err(Refusal::Unknown));
    assert!(l.aliases.is_empty());
}

#[test]
fn an_expired_token_is_refused_and_left_to_its_own_removal() {
    let now = Instant::now();
    let mut l = Ledger::new(10);
    let (seq, _) = l.insert("tok".to_owned(), binding("a"), now + Duration::from_secs(30), 1, None);
    assert_eq!(l.take("tok", &binding("a"), now + Duration::from_secs(30)), Err(Refusal::Unknown));
    assert_eq!(l.len(), 1);
    assert_eq!(l.remove("tok", seq + 1), None, "only its own entry");
    assert_eq!(l.remove("tok", seq), Some(1));
    assert_eq!(l.remove("tok", seq), None);
}

#[test]
fn beyond_the_cap_the_oldest_sessions_are_closed_first() {
    let now = Instant::now();
    let mut l = Ledger::new(3);
    for i in 0..3 {
        let (_, evicted) = l.insert(format!("t{i}"), binding("a"), now + Duration::from_secs(30), i, None);
        assert!(evicted.is_empty());
    }
    assert_eq!(l.take("t0", &binding("a"), now), Ok(0));
    let (_, evicted) = l.insert("t3".to_owned(), binding("a"), now + Duration::from_secs(30), 3, None);
    assert!(evicted.is_empty(), "a taken session no longer counts");
    let (_, evicted) = l.insert("t4".to_owned(), binding("a"), now + Duration::from_secs(30), 4, None);
    assert_eq!(evicted, vec![1]);
    let (_, evicted) = l.insert("t5".to_owned(), binding("a"), now + Duration::from_secs(30), 5, None);
    assert_eq!(evicted, vec![2]);
    assert_eq!(l.len(), 3);
    assert_eq!(l.take("t1", &binding("a"), now), Err(Refusal::Unknown));
}

#[tokio::test]
async fn tokens_are_the_nodes_tag_and_256_random_bits_and_the_first_frame_names_the_window() {
    let p = Parking::new(Duration::from_secs(30), 10, CancellationToken::new(), TaskTracker::new());
    let (a, b) = (p.issue(), p.issue());
    assert_eq!(resume_token::issuer(&a), Some(p.tag()));
    assert_eq!(resume_token::issuer(&b), Some(p.tag()));
    let other = Parking::new(Duration::from_secs(30), 10, CancellationToken::new(), TaskTracker::new());
    assert_ne!(p.tag(), other.tag(), "a node's tag is drawn at its start (32 random bits)");
    assert_ne!(a[resume_token::TAG_LEN..], b[resume_token::TAG_LEN..]);
    let frame: serde_json::Value = serde_json::from_str(&p.session_frame(&a)).unwrap();
    assert_eq!(frame, serde_json::json!({"session": {"resumeToken": a, "resumeWindowMs": 30000}}));
}

#[tokio::test]
async fn another_nodes_take_stops_at_its_deadline_and_leaves_the_session_to_its_client() {
    let p = Parking::new(Duration::from_secs(30), 10, CancellationToken::new(), TaskTracker::new());
    let stop = CancellationToken::new();
    let open = p.open(binding("a"), None, None, stop.clone());
    // Past the deadline: the open socket is not even stopped.
    let past = Instant::now();
    assert_eq!(p.take_if(&open.token, |_| true, true, Some(past)).await.err(), Some(Refusal::Unknown));
    assert!(!stop.is_cancelled());
    // A socket that does not park before the deadline: the take gives up then, not after
    // the 10 s a reconnect on this node waits.
    let started = Instant::now();
    let until = Some(started + Duration::from_millis(300));
    assert_eq!(p.take_if(&open.token, |_| true, true, until).await.err(), Some(Refusal::Unknown));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(stop.is_cancelled(), "it was asked to park");
}
