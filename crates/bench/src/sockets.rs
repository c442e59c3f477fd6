//! WebSocket clients of the proxy under test: produce and consume loads. Every wait has a
//! deadline; a proxy that stops answering, refuses a record or closes the socket makes the
//! load fail with the reason instead of hanging.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::harness::{within, Outcome};

pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a load waits for the next frame before it gives up.
pub const ANSWER_WAIT: Duration = Duration::from_secs(30);

pub async fn connect(url: &str) -> Outcome<Ws> {
    // Like any latency-aware client, disable Nagle's algorithm.
    let (ws, _) =
        within(Duration::from_secs(30), "connect", tokio_tungstenite::connect_async_with_config(url, None, true))
            .await?
            .map_err(|e| format!("connect: {e}"))?;
    Ok(ws)
}

/// A produce frame holding one record of `size` ASCII bytes.
pub fn frame(size: usize) -> String {
    format!("{{\"value\":{{\"value\":\"{}\",\"format\":\"string\"}}}}", "x".repeat(size))
}

/// A produce frame holding an array of `records` such records.
pub fn array_frame(size: usize, records: usize) -> String {
    format!("[{}]", vec![frame(size); records].join(","))
}

/// Records answered by one result frame: an array frame answers each of its records.
fn results_in(text: &str, per_frame: usize) -> Outcome<usize> {
    let is_error = if per_frame > 1 { text.contains("{\"error\"") } else { text.starts_with("{\"error\"") };
    if is_error {
        return Err(format!("the proxy refused a record: {}", text.chars().take(200).collect::<String>()));
    }
    Ok(per_frame)
}

/// ": close code 1000, reason ..." of a close frame.
fn closed(c: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    c.map_or(String::new(), |c| format!(" with close code {} ({:?})", u16::from(c.code), c.reason.as_str()))
}

/// Pipelines `frames` frames of `per_frame` records each on one socket and waits for every
/// result; returns the elapsed time.
pub async fn produce_via_socket(ws: Ws, text: &str, frames: usize, per_frame: usize) -> Outcome<Duration> {
    let (mut tx, mut rx) = ws.split();
    let t0 = Instant::now();
    let text = text.to_owned();
    let sender = tokio::spawn(async move {
        for _ in 0..frames {
            tx.feed(Message::Text(text.clone().into())).await?;
        }
        tx.flush().await?;
        Ok::<_, tokio_tungstenite::tungstenite::Error>(tx)
    });
    let abort = sender.abort_handle();
    let want = frames * per_frame;
    let mut got = 0;
    let received = async {
        while got < want {
            match within(ANSWER_WAIT, &format!("result after {got} of {want}"), rx.next()).await? {
                Some(Ok(Message::Text(t))) => got += results_in(&t, per_frame)?,
                Some(Ok(Message::Close(c))) => return Err(format!("closed after {got} results{}", closed(c))),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("socket error after {got} results: {e}")),
                None => return Err(format!("socket ended after {got} results")),
            }
        }
        Ok(())
    }
    .await;
    let elapsed = t0.elapsed();
    if let Err(e) = received {
        abort.abort();
        return Err(e);
    }
    if let Ok(Ok(Ok(mut tx))) = tokio::time::timeout(Duration::from_secs(5), sender).await {
        let _ = tokio::time::timeout(Duration::from_secs(5), tx.close()).await;
    } else {
        abort.abort();
    }
    Ok(elapsed)
}

/// Reads `n` records from a consume socket; time from the first record to the last.
pub async fn consume_via_socket(ws: &mut Ws, n: usize, batched: bool) -> Outcome<Duration> {
    let mut got = 0;
    let mut first = None;
    while got < n {
        match within(ANSWER_WAIT, &format!("record after {got} of {n}"), ws.next()).await? {
            Some(Ok(Message::Text(t))) => {
                first.get_or_insert_with(Instant::now);
                got += if batched {
                    serde_json::from_str::<Vec<serde::de::IgnoredAny>>(&t).map(|v| v.len()).unwrap_or(1)
                } else {
                    1
                };
            }
            Some(Ok(Message::Close(c))) => return Err(format!("closed after {got} records{}", closed(c))),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("socket error after {got} records: {e}")),
            None => return Err(format!("socket ended after {got} records")),
        }
    }
    Ok(first.map(|f| f.elapsed()).unwrap_or_default())
}

/// Sends `per_ms` frames every millisecond until `n` are sent and returns each one's
/// acknowledgement latency, in send order (the proxy answers in input order).
pub async fn latency_via_socket(ws: Ws, text: &str, n: usize, per_ms: usize) -> Outcome<Vec<Duration>> {
    let (mut tx, mut rx) = ws.split();
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let text = text.to_owned();
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let mut sent = 0;
        while sent < n {
            tick.tick().await;
            for _ in 0..per_ms.min(n - sent) {
                let _ = sent_tx.send(Instant::now());
                tx.feed(Message::Text(text.clone().into())).await?;
                sent += 1;
            }
            tx.flush().await?;
        }
        Ok::<_, tokio_tungstenite::tungstenite::Error>(tx)
    });
    let abort = sender.abort_handle();
    let mut lat = Vec::with_capacity(n);
    let received = async {
        while lat.len() < n {
            match within(ANSWER_WAIT, &format!("result after {} of {n}", lat.len()), rx.next()).await? {
                Some(Ok(Message::Text(t))) => {
                    results_in(&t, 1)?;
                    let sent = sent_rx.recv().await.ok_or("more results than records sent")?;
                    lat.push(sent.elapsed());
                }
                Some(Ok(Message::Close(c))) => return Err(format!("closed after {} results{}", lat.len(), closed(c))),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("socket error: {e}")),
                None => return Err(format!("socket ended after {} results", lat.len())),
            }
        }
        Ok(())
    }
    .await;
    abort.abort();
    received?;
    lat.sort();
    Ok(lat)
}

/// Opens a produce socket, closes it and waits for the proxy's close frame in reply (RFC 6455
/// 5.5.1); each step within `limit`.
pub async fn open_and_close(url: &str, limit: Duration) -> Outcome<()> {
    let mut ws = connect(url).await?;
    within(limit, "close", ws.close(None)).await?.map_err(|e| format!("close: {e}"))?;
    within(limit, "the close frame in reply", async { while let Some(Ok(_)) = ws.next().await {} }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_frame_holds_the_records() {
        let v: Vec<serde_json::Value> = serde_json::from_str(&array_frame(10, 100)).unwrap();
        assert_eq!(v.len(), 100);
        assert_eq!(v[99]["value"]["value"].as_str().unwrap().len(), 10);
    }

    #[test]
    fn error_results_fail_the_load() {
        assert_eq!(results_in("{\"topic\":\"t\"}", 1), Ok(1));
        assert_eq!(results_in("[{\"topic\":\"t\"},{\"topic\":\"t\"}]", 2), Ok(2));
        assert!(results_in("{\"error\":{\"code\":\"x\"}}", 1).is_err());
        assert!(results_in("[{\"topic\":\"t\"},{\"error\":{}}]", 2).is_err());
    }
}
