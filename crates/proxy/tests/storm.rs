//! Malformed-frame storm: 10,000 hostile frames (random bytes, deep nesting, huge strings,
//! wrong types, binary, oversized, invalid UTF-8) at one produce socket, with good records
//! mixed in. The proxy must not crash, must answer every frame (or close with 1007/1009 where
//! RFC 6455 requires it), a bystander socket must not notice, and only the good records may
//! reach Kafka.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// xorshift64*: reproducible noise for the storm (the seed is printed).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Between 1 and `max` random bytes.
    fn bytes(&mut self, max: u64) -> Vec<u8> {
        let n = 1 + self.below(max);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One frame of the storm and what it must be answered with.
enum Expect {
    /// A record Kafka must hold, by message id.
    Good(String),
    /// An error frame with one of these codes.
    Error(&'static [&'static str]),
    /// An array answer of this many error frames.
    Errors(usize),
}

fn storm_frame(n: &mut Noise, i: usize) -> (Message, Expect) {
    const JSON: &[&str] = &["INVALID_JSON", "INVALID_FRAME"];
    match n.below(12) {
        0 | 1 => {
            let id = format!("good-{i}");
            (Message::Text(record(None, &id, Some(&id)).into()), Expect::Good(id))
        }
        2 => {
            // Random bytes made text: starts with a letter so it is never blank (blank frames are skipped).
            let text = format!("x{}", String::from_utf8_lossy(&n.bytes(300)));
            (Message::Text(text.into()), Expect::Error(JSON))
        }
        3 => (Message::Binary(n.bytes(500).into()), Expect::Error(&["UNSUPPORTED_FRAME"])),
        4 => {
            // Deep nesting, inside the value and bare.
            let depth = 200 + n.below(20_000) as usize; // beyond serde_json's recursion limit (128)
            let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let text = if n.below(2) == 0 {
                format!("{{\"value\": {{\"value\": {deep}, \"format\": \"json\"}}}}")
            } else {
                deep
            };
            (Message::Text(text.into()), Expect::Error(&["INVALID_JSON", "INVALID_FRAME", "INVALID_VALUE"]))
        }
        5 => {
            // A huge number where this string socket wants a string, or a huge format name.
            // (The socket's valType decides the encoding, so a huge *string* would be a good record.)
            let digits = "9".repeat(10_000 + n.below(50_000) as usize);
            let text = if n.below(2) == 0 {
                format!("{{\"value\": {{\"value\": {digits}, \"format\": \"int\"}}}}")
            } else {
                json!({"value": {"value": "v", "format": digits}}).to_string()
            };
            (Message::Text(text.into()), Expect::Error(&["INVALID_JSON", "INVALID_VALUE", "INVALID_FORMAT"]))
        }
        6 => {
            // Over WSPROXY_WS_MAX_FRAME_SIZE (64 KiB) but under the codec's hard limit.
            let frame = json!({"value": {"value": "z".repeat(70_000 + n.below(40_000) as usize)}});
            (Message::Text(frame.to_string().into()), Expect::Error(&["FRAME_TOO_LARGE"]))
        }
        7 => {
            let wrong = [
                json!(42),
                json!("value"),
                json!(null),
                json!({"value": 1}),
                json!({"value": {"value": 12, "format": "string"}}),
                json!({"value": {"value": "v", "format": 7}}),
                json!({"value": {"value": "v"}, "headers": {"a": "b"}}),
                json!({"value": {"value": "v"}, "headers": [{"key": 1, "value": "x"}]}),
                json!({"value": {"value": "v"}, "messageId": [1]}),
                json!({"key": {"value": "k"}, "value": {"value": "v"}}),
                json!({"value": {"value": 1e300, "format": "float"}}),
                json!({"value": {"value": 70000, "format": "short"}}),
                json!({"value": {"value": -1.5, "format": "long"}}),
            ];
            let pick = wrong[n.below(wrong.len() as u64) as usize].to_string();
            (
                Message::Text(pick.into()),
                Expect::Error(&["INVALID_FRAME", "INVALID_VALUE", "INVALID_FORMAT", "INVALID_KEY", "INVALID_JSON"]),
            )
        }
        8 => {
            // An array of bad records: one error per record.
            let k = 1 + n.below(20) as usize;
            let items: Vec<Value> = (0..k).map(|j| json!({"value": {"value": j, "format": "string"}})).collect();
            (Message::Text(Value::from(items).to_string().into()), Expect::Errors(k))
        }
        9 => {
            // Truncated good JSON.
            let full = record(Some("k"), "truncated", Some("t"));
            let cut = 1 + n.below(full.len() as u64 - 2) as usize;
            (Message::Text(full[..cut].to_owned().into()), Expect::Error(JSON))
        }
        10 => {
            // Control characters and escapes.
            let text = format!("{{\"value\": {{\"value\": \"\\u{:04x}\\ud800\", \"format\": \"string\"}}", n.below(32));
            (Message::Text(text.into()), Expect::Error(JSON))
        }
        _ => {
            // Valid JSON of another shape entirely.
            let frame = json!({"records": [{"value": "v"}], "topic": "elsewhere", "n": i});
            (Message::Text(frame.to_string().into()), Expect::Error(JSON))
        }
    }
}

fn high_watermark(topic: &str) -> i64 {
    let c: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap()).create().unwrap();
    c.fetch_watermarks(topic, 0, Duration::from_secs(10)).unwrap().1
}

#[tokio::test]
async fn ten_thousand_malformed_frames_crash_nothing_and_only_good_records_land() {
    const FRAMES: usize = 10_000;
    let proxy = Proxy::start(&[("WSPROXY_WS_MAX_FRAME_SIZE", "65536")]).await;
    let topic = unique("storm");
    create_topic(&topic, 1).await;
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("storm seed {seed}");
    let mut noise = Noise(seed);

    // The bystander produces all along and must see every record acknowledged promptly.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bystander = {
        let (url, stop) = (proxy.url(&format!("/socket/in?clientId=bystander&topic={topic}")), stop.clone());
        tokio::spawn(async move {
            let mut ws = connect(&url).await;
            let (mut n, mut slowest) = (0usize, Duration::ZERO);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("bystander-{n}");
                let t0 = Instant::now();
                send(&mut ws, record(None, &id, Some(&id))).await;
                let r = recv_json(&mut ws).await;
                assert_eq!(r["clientMessageId"], id.as_str(), "bystander got {r}");
                slowest = slowest.max(t0.elapsed());
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (n, slowest)
        })
    };

    // FRAMES - 2 storm frames pipelined on one socket, then a text frame that is not UTF-8.
    let (frames, expected): (Vec<Message>, Vec<Expect>) = (0..FRAMES - 2).map(|i| storm_frame(&mut noise, i)).unzip();
    let shown: Vec<String> = frames.iter().map(|f| f.to_string().chars().take(120).collect()).collect();
    let ws = connect(&proxy.url(&format!("/socket/in?clientId=storm&topic={topic}"))).await;
    let (mut tx, mut rx) = ws.split();
    let t0 = Instant::now();
    let sender = tokio::spawn(async move {
        for f in frames {
            tx.feed(f).await.expect("the storm socket stays open");
        }
        let not_utf8 = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
        tx.send(Message::Frame(not_utf8)).await.expect("send the invalid UTF-8 frame");
        tx
    });
    let mut answers = Vec::new();
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(60), rx.next()).await.expect("the storm socket went silent") {
            Some(Ok(Message::Text(t))) => answers.push(serde_json::from_str::<Value>(&t).expect("answers are JSON")),
            Some(Ok(Message::Close(f))) => break f.map(|f| (u16::from(f.code), f.reason.to_string())),
            Some(Ok(_)) => {}
            other => panic!("the storm socket ended without a close frame: {other:?}"),
        }
    };
    let _tx = sender.await.unwrap();
    println!("storm: {} frames answered in {:?}, then closed with {close:?}", answers.len(), t0.elapsed());
    assert_eq!(close, Some((1007, "text frame is not valid UTF-8".to_owned())));
    assert_eq!(answers.len(), expected.len(), "one answer per frame, in order");

    let mut good = HashSet::new();
    let mut errors_by_code = std::collections::BTreeMap::<String, usize>::new();
    for (i, (answer, expect)) in answers.iter().zip(&expected).enumerate() {
        match expect {
            Expect::Good(id) => {
                assert_eq!(answer["clientMessageId"], id.as_str(), "frame {i}: {answer}");
                assert!(answer["offset"].is_number(), "frame {i}: {answer}");
                good.insert(id.clone());
            }
            Expect::Error(codes) => {
                let code = answer["error"]["code"]
                    .as_str()
                    .unwrap_or_else(|| panic!("frame {i} ({}): no error: {answer}", shown[i]));
                assert!(codes.contains(&code), "frame {i} ({}): {code} not in {codes:?}: {answer}", shown[i]);
                *errors_by_code.entry(code.to_owned()).or_default() += 1;
            }
            Expect::Errors(k) => {
                let list = answer.as_array().unwrap_or_else(|| panic!("frame {i}: not an array answer: {answer}"));
                assert_eq!(list.len(), *k, "frame {i}");
                assert!(list.iter().all(|a| a["error"]["code"] == "INVALID_VALUE"), "frame {i}: {answer}");
                *errors_by_code.entry("INVALID_VALUE (array)".to_owned()).or_default() += 1;
            }
        }
    }
    println!("error frames by code: {errors_by_code:?}; good records {}", good.len());

    // The last frame: over the codec's hard limit on a fresh socket closes it with 1009.
    let mut huge = connect(&proxy.url(&format!("/socket/in?clientId=huge&topic={topic}"))).await;
    let _ = huge.send(Message::Text("x".repeat(200_000).into())).await;
    let code = loop {
        match huge.next().await {
            Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None, // reset before the close frame was read
        }
    };
    assert!(code.is_none() || code == Some(1009), "oversized frame closes with 1009, got {code:?}");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (bystander_records, slowest) = bystander.await.expect("the bystander never failed");
    println!("bystander: {bystander_records} records acknowledged during the storm, slowest {slowest:?}");
    assert!(bystander_records > 0);
    let (status, _, _) = http(proxy.port, "GET", "/healthcheck", &[]).await.unwrap();
    assert_eq!(status, 200, "the proxy is alive");

    // Kafka holds exactly the good records and the bystander's: nothing malformed got through.
    let total = good.len() + bystander_records;
    assert_eq!(high_watermark(&topic), total as i64, "only good records are in Kafka");
    let stored = read_back(&topic, total, "raw", "string");
    let values: HashSet<String> = stored.iter().map(|r| r["value"].as_str().unwrap().to_owned()).collect();
    assert!(good.is_subset(&values), "every acknowledged good record is in Kafka");
    assert!(values.iter().all(|v| v.starts_with("good-") || v.starts_with("bystander-")), "{values:?}");
}
