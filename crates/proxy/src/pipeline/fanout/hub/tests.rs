//! The hub's unit tests: subscriptions, the reader's wait for room, the registry.

use futures::FutureExt;
use wsproxy_protocol::params::SocketPayload;
use wsproxy_protocol::FormatType;

use super::*;

fn hub() -> Arc<Hub> {
    hub_of(100)
}

fn hub_of(max_records: usize) -> Arc<Hub> {
    Arc::new(Hub {
        key: HubKey { topic: "t".to_owned(), creds: None, read_committed: false },
        state: Mutex::new(State {
            log: Log::new(max_records, 1 << 20),
            codecs: Vec::new(),
            version: 0,
            subscribers: 0,
            empty_since: None,
            retired: false,
            failure: None,
            reader_waits: None,
        }),
        head: watch::channel(0).0,
        room: Notify::new(),
    })
}

/// As the reader appends: under the lock, then the wakeup outside it.
fn push(hub: &Hub, offset: i64) {
    let payload = Entry { frames: Vec::new(), record_bytes: 0 };
    hub.lock().log.push(Slot { partition: 0, offset, size: 1, payload });
    hub.head.send_modify(|h| *h += 1);
}

fn offsets(out: &[Arc<Slot<Entry>>]) -> Vec<i64> {
    out.iter().map(|s| s.offset).collect()
}

#[test]
fn a_subscription_never_waits_while_entries_it_has_not_read_are_in_the_log() {
    let hub = hub();
    let mut sub = hub.subscribe(SocketCodec::new(SocketPayload::Json, None, FormatType::String)).unwrap();
    let mut out = Vec::new();
    assert!(sub.next(10, &mut out).now_or_never().is_none(), "nothing yet: it waits");
    for o in 0..3 {
        push(&hub, o);
    }
    // A read stopped at its max: the rest comes without another wakeup.
    assert_eq!(sub.next(2, &mut out).now_or_never(), Some(Ok(())));
    assert_eq!(offsets(&out), [0, 1]);
    out.clear();
    assert_eq!(sub.next(2, &mut out).now_or_never(), Some(Ok(())));
    assert_eq!(offsets(&out), [2]);
    out.clear();
    assert!(sub.next(2, &mut out).now_or_never().is_none());
    // A wakeup consumed while a write waited (`fell_behind`) does not hide its entry.
    push(&hub, 3);
    assert!(sub.fell_behind().now_or_never().is_none());
    assert_eq!(sub.next(2, &mut out).now_or_never(), Some(Ok(())));
    assert_eq!(offsets(&out), [3]);
    out.clear();
    // A failure reaches a waiting subscription.
    hub.lock().failure = Some("gone".to_owned());
    hub.head.send_modify(|h| *h += 1);
    assert_eq!(sub.next(2, &mut out).now_or_never(), Some(Err(Stop::Failed("gone".to_owned()))));
}

/// As the reader waits in `append`: for room for an entry of `size` bytes, or now.
fn reader_waits(hub: &Hub, size: usize) -> bool {
    let mut st = hub.lock();
    let waits = !st.log.has_room(size);
    st.reader_waits = waits.then_some(size);
    waits
}

fn woken(hub: &Hub) -> bool {
    hub.room.notified().now_or_never().is_some()
}

#[test]
fn the_waiting_reader_is_woken_by_the_move_that_makes_room_and_only_by_it() {
    let hub = hub_of(8);
    let codec = SocketCodec::new(SocketPayload::Json, None, FormatType::String);
    let (mut fast, mut slow) = (hub.subscribe(codec).unwrap(), hub.subscribe(codec).unwrap());
    let mut out = Vec::new();
    push(&hub, 0);
    push(&hub, 1);
    assert!(reader_waits(&hub, 1), "the fastest has a quarter of the log (2 of 8) unread");
    assert_eq!(fast.next(2, &mut out).now_or_never(), Some(Ok(())));
    assert!(woken(&hub), "the fastest read: room");
    assert_eq!(hub.lock().reader_waits, None);
    push(&hub, 2);
    push(&hub, 3);
    assert!(reader_waits(&hub, 1));
    out.clear();
    assert_eq!(slow.next(2, &mut out).now_or_never(), Some(Ok(())));
    assert!(!woken(&hub), "a slower socket's read makes no room");
    assert_eq!(hub.lock().reader_waits, Some(1), "the reader still waits");
    // A socket of a new format joins at the live end: the fastest, with nothing unread.
    let other = SocketCodec::new(SocketPayload::Json, None, FormatType::Json);
    let newcomer = hub.subscribe(other).unwrap();
    assert!(woken(&hub), "a join at the live end makes room");
    push(&hub, 4);
    push(&hub, 5);
    assert!(reader_waits(&hub, 1));
    drop(newcomer);
    assert!(!woken(&hub), "the others are as far behind as before");
    out.clear();
    assert_eq!(fast.next(1, &mut out).now_or_never(), Some(Ok(())));
    assert!(!woken(&hub), "still 3 unread by the fastest after one read");
    drop(fast);
    drop(slow);
    assert!(woken(&hub), "nobody left: room for anything");
}

/// Review (27 Nov): a socket joined at the live end, the fastest with nothing unread, so
/// each join let the reader push another quarter of the log; four joins while a socket
/// read one quarter pushed that socket out of the log (1013), none of the newcomers
/// having read anything. A newcomer of a format in use now starts where the fastest is.
#[test]
fn joins_make_no_room_for_the_reader_and_push_no_reading_socket_out() {
    let hub = hub_of(8);
    let codec = SocketCodec::new(SocketPayload::Json, None, FormatType::String);
    let mut reading = hub.subscribe(codec).unwrap();
    let mut out = Vec::new();
    push(&hub, 0);
    push(&hub, 1);
    assert!(reader_waits(&hub, 1));
    let mut newcomers = Vec::new();
    for _ in 0..4 {
        newcomers.push(hub.subscribe(codec).unwrap());
        assert!(!woken(&hub), "a join makes no room");
        assert!(reader_waits(&hub, 1));
    }
    assert_eq!(reading.next(10, &mut out).now_or_never(), Some(Ok(())));
    assert_eq!(offsets(&out), [0, 1]);
    // A newcomer gets what the fastest had not read when it joined, then what comes.
    out.clear();
    assert_eq!(newcomers[3].next(10, &mut out).now_or_never(), Some(Ok(())));
    assert_eq!(offsets(&out), [0, 1]);
}

/// Review (27 Nov): the registry's cell for a key was made before the hub's consumer, and
/// removed only when making it failed: an upgrade dropped while the consumer was being made
/// (a client that hung up during the handshake) left its empty cell for good, one per key,
/// and a key holds the client's Kafka credentials.
#[test]
fn a_subscription_dropped_while_its_hub_is_made_leaves_nothing_in_the_registry() {
    let vars = [("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "127.0.0.1:1")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::load(&vars, &crate::config::Overrides::default(), true).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let kafka = Kafka::new(&config).unwrap();
        let hubs = Hubs::new(&config, CancellationToken::new());
        let key = HubKey { topic: "t".to_owned(), creds: None, read_committed: false };
        let codec = SocketCodec::new(SocketPayload::Json, None, FormatType::String);
        // No broker answers: making the consumer waits for its metadata.
        let gave_up =
            tokio::time::timeout(std::time::Duration::from_millis(200), hubs.subscribe(&kafka, key, codec)).await;
        assert!(gave_up.is_err(), "the subscription was still waiting");
        assert!(hubs.cells().is_empty(), "the registry still holds the key");
    });
    // The consumer being made (on a blocking thread) gives up on its own.
    rt.shutdown_background();
}
