//! The connection loop of both listeners: HTTP/1.1 with upgrades, one task per connection.
//!
//! `axum::serve` has no header read timeout, so a client that sends its upgrade request one
//! byte at a time (slowloris) could hold a connection and its task forever. Here hyper gets a
//! timer and `WSPROXY_HTTP_HEADER_READ_TIMEOUT`: a request whose headers are not complete in
//! time (also the next request on a kept-alive connection) closes the connection without an
//! answer. Upgraded sockets leave this loop; their pipelines watch the shutdown token.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use crate::http::Peer;

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
            let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
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
