//! WebSocket clients of the proxy under test: produce and consume loads. Every wait has a
//! deadline; a proxy that stops answering, refuses a record or closes the socket makes the
//! load fail with the reason instead of hanging.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::bare::{text_frame, Bare};
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
    refuse_errors(text, per_frame > 1, "the proxy refused a record")?;
    Ok(per_frame)
}

/// Fails with `what` and the frame's start when the frame (an array of them when `array`) holds
/// an error object.
fn refuse_errors(text: &str, array: bool, what: &str) -> Outcome<()> {
    let is_error = if array { text.contains("{\"error\"") } else { text.starts_with("{\"error\"") };
    if is_error {
        return Err(format!("{what}: {}", text.chars().take(200).collect::<String>()));
    }
    Ok(())
}

/// Pipelines `frames` frames of `per_frame` records each on one bare socket (written 64 KiB at
/// a time) and waits for every result; returns the elapsed time.
pub async fn produce_via_socket(ws: Bare, text: &str, frames: usize, per_frame: usize) -> Outcome<Duration> {
    let Bare { mut read, mut write } = ws;
    let one = text_frame(text);
    let per_write = (64 * 1024 / one.len()).max(1);
    let chunk = one.repeat(per_write);
    let t0 = Instant::now();
    let sender = tokio::spawn(async move {
        let mut left = frames;
        while left > 0 {
            let k = left.min(per_write);
            write.write_all(&chunk[..k * one.len()]).await?;
            left -= k;
        }
        Ok::<_, std::io::Error>(write)
    });
    let abort = sender.abort_handle();
    let received = read.read_texts(ANSWER_WAIT, frames * per_frame, "results", |t| results_in(t, per_frame)).await;
    let elapsed = t0.elapsed();
    if let Err(e) = received {
        abort.abort();
        return Err(e);
    }
    // The close handshake runs on its own: a proxy slow to answer a close frame (the Scala
    // proxy never does; the close waits 5 s) must not lengthen the measured run.
    tokio::spawn(async move {
        match tokio::time::timeout(Duration::from_secs(5), sender).await {
            Ok(Ok(Ok(write))) => Bare { read, write }.close().await,
            _ => abort.abort(),
        }
    });
    Ok(elapsed)
}

/// Reads `n` records from a consume socket; time from the first record to the last. A batch
/// frame's records are counted by their `"offset":` keys (the bench's values are `x`s), not
/// parsed: the client shares the cores.
pub async fn consume_via_socket(ws: &mut Bare, n: usize, batched: bool) -> Outcome<Duration> {
    let mut first = None;
    ws.read
        .read_texts(ANSWER_WAIT, n, "records", |t| {
            first.get_or_insert_with(Instant::now);
            refuse_errors(t, batched, "the proxy sent an error")?;
            Ok(if batched { t.matches("\"offset\":").count().max(1) } else { 1 })
        })
        .await?;
    Ok(first.map(|f| f.elapsed()).unwrap_or_default())
}

/// Sends `per_ms` frames every millisecond until `n` are sent and returns when each was sent
/// and answered, in send order (the proxy answers in input order).
pub async fn latency_via_socket(ws: Bare, text: &str, n: usize, per_ms: usize) -> Outcome<Vec<(Instant, Instant)>> {
    let Bare { mut read, mut write } = ws;
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let one = text_frame(text);
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let mut sent = 0;
        while sent < n {
            tick.tick().await;
            let k = per_ms.min(n - sent);
            let now = Instant::now();
            for _ in 0..k {
                let _ = sent_tx.send(now);
            }
            write.write_all(&one.repeat(k)).await?;
            sent += k;
        }
        Ok::<_, std::io::Error>(write)
    });
    let abort = sender.abort_handle();
    let mut lat = Vec::with_capacity(n);
    let received = read
        .read_texts(ANSWER_WAIT, n, "results", |t| {
            results_in(t, 1)?;
            let sent = sent_rx.try_recv().map_err(|_| "more results than records sent".to_owned())?;
            lat.push((sent, Instant::now()));
            Ok(1)
        })
        .await;
    abort.abort();
    received?;
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
