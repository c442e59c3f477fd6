//! A bare WebSocket client for the load generators: the upgrade by hand on a plain
//! `TcpStream`, client frames encoded (and masked) once by tungstenite's frame codec and written
//! many at a time, server frames read into one buffer with their headers parsed by the same
//! codec (`FrameHeader::parse`). The bench shares the 2 cores with the proxy and the broker:
//! tungstenite's full stream (a message allocated per frame, a waker wrapped per poll, a second
//! buffer, a mask per frame) cost the load generator about as much CPU as the proxy's own per
//! record, and every µs it takes is a µs the proxy waits for a core, which a direct librdkafka
//! client does not pay. A real deployment has its clients on other machines. Each frame is
//! still sent and read whole; answers are checked (an error answer fails the load).

use std::io::Cursor;
use std::ops::Range;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

use crate::harness::{within, Outcome};

/// A connected bare client: the two halves of its stream and the bytes read but not consumed.
pub struct Bare {
    pub read: Reader,
    pub write: OwnedWriteHalf,
}

/// The read half with its buffer.
pub struct Reader {
    stream: OwnedReadHalf,
    buf: Vec<u8>,
}

/// A complete server frame: FIN, opcode, payload range, the frame's length.
pub type FrameAt = (bool, OpCode, Range<usize>, usize);

impl Bare {
    /// Opens `url` (`ws://host:port/path?query`) and upgrades it.
    pub async fn connect(url: &str) -> Outcome<Bare> {
        let (s, buf) = connect_raw(url).await?;
        let (read, write) = s.into_split();
        Ok(Bare { read: Reader { stream: read, buf }, write })
    }

    /// Sends a close frame and waits (at most 5 s) for the proxy to close in reply.
    pub async fn close(mut self) {
        let _ = self.write.write_all(&client_frame(OpCode::Control(Control::Close), &1000u16.to_be_bytes())).await;
        let _ = within(Duration::from_secs(5), "close", async {
            let mut sink = [0u8; 4096];
            while matches!(self.read.stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

impl Reader {
    /// Reads text frames until `on_text`, called with each one's payload, has counted `want`
    /// `what`s (pings and pongs skipped); every read waits at most `wait`. A close frame, any
    /// other frame, the end of the stream or a read slower than `wait` fails the read, saying
    /// how far it got ("after 17 of 100 results").
    pub async fn read_texts(
        &mut self,
        wait: Duration,
        want: usize,
        what: &str,
        mut on_text: impl FnMut(&str) -> Outcome<usize>,
    ) -> Outcome<()> {
        let mut got = 0;
        let so_far = |got: usize| format!("after {got} of {want} {what}");
        loop {
            let mut at = 0;
            while got < want {
                let Some((fin, opcode, payload, len)) = frame_at(&self.buf[at..])? else { break };
                let body = &self.buf[at + payload.start..at + payload.end];
                at += len;
                match (fin, opcode) {
                    (true, OpCode::Data(Data::Text)) => {
                        let text = std::str::from_utf8(body).map_err(|e| format!("{}: {e}", so_far(got)))?;
                        got += on_text(text).map_err(|e| format!("{}: {e}", so_far(got)))?;
                    }
                    (true, OpCode::Control(Control::Ping | Control::Pong)) => {}
                    (_, OpCode::Control(Control::Close)) => {
                        return Err(format!("closed {}{}", so_far(got), close_reason(body)));
                    }
                    _ => return Err(format!("{}: frame fin {fin} opcode {opcode:?}", so_far(got))),
                }
            }
            self.buf.drain(..at);
            if got >= want {
                return Ok(());
            }
            self.buf.reserve(64 * 1024);
            match tokio::time::timeout(wait, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) => return Err(format!("socket ended {}", so_far(got))),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("socket error {}: {e}", so_far(got))),
                Err(_) => return Err(format!("{}: no answer within {} s", so_far(got), wait.as_secs())),
            }
        }
    }
}

/// `with close code 1011 ("…")` of a close frame's payload.
fn close_reason(body: &[u8]) -> String {
    if body.len() < 2 {
        return String::new();
    }
    let code = CloseCode::from(u16::from_be_bytes([body[0], body[1]]));
    format!(" with close code {} ({:?})", u16::from(code), String::from_utf8_lossy(&body[2..]))
}

/// One masked client frame (RFC 6455 5.3: a client masks every frame), encoded by tungstenite.
pub fn client_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader { opcode, mask: Some([0x37, 0xfa, 0x21, 0x3d]), ..FrameHeader::default() };
    let mut out = Vec::with_capacity(payload.len() + 14);
    Frame::from_payload(header, payload.to_vec().into()).format(&mut out).expect("writing to a Vec");
    out
}

/// A masked text frame.
pub fn text_frame(text: &str) -> Vec<u8> {
    client_frame(OpCode::Data(Data::Text), text.as_bytes())
}

/// One complete server frame at the start of `buf`: (FIN, opcode, payload range, frame
/// length). The header is parsed by tungstenite's own frame codec; only the buffering is here.
pub fn frame_at(buf: &[u8]) -> Result<Option<FrameAt>, String> {
    let mut cursor = Cursor::new(buf);
    let Some((header, len)) = FrameHeader::parse(&mut cursor).map_err(|e| format!("frame: {e}"))? else {
        return Ok(None);
    };
    let head = cursor.position() as usize;
    let end = usize::try_from(len).ok().and_then(|l| head.checked_add(l)).ok_or("frame: too long")?;
    Ok((buf.len() >= end).then_some((header.is_final, header.opcode, head..end, end)))
}

/// The upgrade by hand: returns the stream and any bytes read past the 101 response.
pub async fn connect_raw(url: &str) -> Outcome<(TcpStream, Vec<u8>)> {
    let rest = url.strip_prefix("ws://").ok_or_else(|| format!("not a ws:// url: {url}"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let upgrade = async {
        let mut s = TcpStream::connect(host).await?;
        s.set_nodelay(true)?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::with_capacity(4096);
        loop {
            if s.read_buf(&mut buf).await? == 0 {
                return Ok::<_, std::io::Error>((s, buf, None));
            }
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok((s, buf, Some(end + 4)));
            }
        }
    };
    let (s, mut buf, end) =
        within(Duration::from_secs(30), "connect", upgrade).await?.map_err(|e| format!("connect: {e}"))?;
    let end = end.ok_or_else(|| format!("connect: closed during the upgrade: {}", String::from_utf8_lossy(&buf)))?;
    if !buf.starts_with(b"HTTP/1.1 101") {
        return Err(format!("connect: {}", String::from_utf8_lossy(&buf[..end])));
    }
    buf.drain(..end);
    Ok((s, buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_frame_reads_back_through_the_codec() {
        let bytes = text_frame("{\"value\":1}");
        let (fin, opcode, payload, len) = frame_at(&bytes).unwrap().unwrap();
        assert!(fin);
        assert_eq!(opcode, OpCode::Data(Data::Text));
        assert_eq!(len, bytes.len());
        // Masked on the wire: the payload is not the text until unmasked.
        assert_ne!(&bytes[payload.clone()], b"{\"value\":1}");
        let mut cursor = Cursor::new(&bytes[..]);
        let (header, _) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        let mask = header.mask.unwrap();
        let plain: Vec<u8> = bytes[payload].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
        assert_eq!(plain, b"{\"value\":1}");
        assert_eq!(frame_at(&bytes[..bytes.len() - 1]).unwrap(), None);
    }

    #[test]
    fn close_reasons_read_like_tungstenite_s() {
        assert_eq!(close_reason(&[0x03, 0xf3, b'x']), " with close code 1011 (\"x\")");
        assert_eq!(close_reason(&[]), "");
    }
}
