//! The connection loop of both listeners: HTTP/1.1 with upgrades, one task per connection.
//!
//! `axum::serve` has no header read timeout, so a client that sends its upgrade request one
//! byte at a time (slowloris) could hold a connection and its task forever. Here hyper gets a
//! timer and `WSPROXY_HTTP_HEADER_READ_TIMEOUT`: a request whose headers are not complete in
//! time (also the next request on a kept-alive connection) closes the connection without an
//! answer. Upgraded sockets leave this loop; their pipelines watch the shutdown token.
//!
//! Listeners are bound here with an explicit accept backlog (`WSPROXY_LISTEN_BACKLOG`), and
//! every connection ends with a half-close: see [`Lingering`].

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use crate::http::Peer;

/// Binds a listener with an accept queue of `backlog` connections (`WSPROXY_LISTEN_BACKLOG`;
/// tokio's `TcpListener::bind` uses 128, and 1,000 clients connecting at once then lost SYNs
/// and waited a second for the retry). Like `bind`, it sets `SO_REUSEADDR`.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves `app` on `listener` until `shutdown`, then lets open requests finish.
pub async fn serve<L>(mut listener: L, app: Router, header_read_timeout: Duration, shutdown: CancellationToken)
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let connections = TaskTracker::new();
    loop {
        let (io, remote) = tokio::select! {
            c = listener.accept() => c,
            _ = shutdown.cancelled() => break,
        };
        let (app, stop) = (app.clone(), shutdown.clone());
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(Peer(remote)));
                let mut app = app.clone();
                async move {
                    Ok::<_, Infallible>(app.call(req.map(axum::body::Body::new)).await.unwrap_or_else(|e| match e {}))
                }
            });
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
            let conn = builder.serve_connection(TokioIo::new(Lingering::new(io)), service).with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// How long a closed connection waits for the client's EOF after the half-close.
const LINGER: Duration = Duration::from_secs(2);

/// A connection that, when dropped before the client ended its side, half-closes and reads
/// until the client's EOF (at most [`LINGER`]) instead of closing at once (issue 14, item 4).
///
/// Closing a TCP socket with unread input sends RST, and an RST makes the client's kernel
/// discard what it had not read yet: the last answers and the close frame of a WebSocket.
/// The socket loops read until the client's close frame ([`crate::pipeline::close::finish`]);
/// this covers what arrives after it, and plain HTTP connections that hyper closes (a header
/// timeout, `Connection: close`). Dropped on every path (upgraded or not), so nothing is missed.
pub struct Lingering<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    io: Option<IO>,
    eof: bool,
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static> Lingering<IO> {
    pub fn new(io: IO) -> Self {
        Lingering { io: Some(io), eof: false }
    }

    fn io(&mut self) -> &mut IO {
        self.io.as_mut().expect("taken only in drop")
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for Lingering<IO> {
    fn drop(&mut self) {
        let (Some(mut io), false) = (self.io.take(), self.eof) else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            let _ = tokio::time::timeout(LINGER, async {
                io.shutdown().await?;
                let mut buf = [0u8; 8192];
                while io.read(&mut buf).await? > 0 {}
                Ok::<_, io::Error>(())
            })
            .await;
        });
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for Lingering<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(self.io()).poll_read(cx, buf);
        match &poll {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => self.eof = true,
            // A reset connection has nothing left to drain.
            Poll::Ready(Err(_)) => self.eof = true,
            _ => {}
        }
        poll
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for Lingering<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(self.io()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.io()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.io()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.io()).poll_shutdown(cx)
    }
}
