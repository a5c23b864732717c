//! A small HTTP server on 127.0.0.1 for the life of a job's agent run (the
//! model proxy, the finish endpoint): a free port, stopped when dropped.

use std::net::SocketAddr;

/// Stops the server when dropped.
pub struct Loopback {
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Binds 127.0.0.1 on a free port and serves `app` until the result is dropped.
pub async fn serve(app: axum::Router) -> std::io::Result<Loopback> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(Loopback { addr, _stop: stop })
}
