//! The service's HTTP/1 server loop (hyper, under axum's router), with the time bounds `axum::serve`
//! does not offer, so slow clients cannot hold the process's descriptors and tasks:
//! - request headers must arrive within the header timeout; hyper restarts that timer whenever it waits
//!   for the next request on a kept-alive connection, so it is the idle timeout as well;
//! - a request body must arrive whole within the body timeout, counted from the end of its headers (a
//!   client sending a byte every few seconds is cut off, not only one that goes silent).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::Router;
use http_body::{Body, Frame, SizeHint};

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Request headers, and the idle time between requests on one connection.
    pub header: Duration,
    /// A whole request body.
    pub body: Duration,
}

/// The error a request body ends with when it did not arrive in time. Handlers that read bodies turn it
/// into `408 Request Timeout` (see [`is_body_timeout`]).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}; send it at once")]
pub struct BodyTimeout(Duration);

/// Whether reading a body failed because of [`BodyTimeout`].
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<BodyTimeout>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A request body with one deadline for all of it.
pub struct DeadlineBody<B> {
    inner: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, limit: Duration) -> Self {
        DeadlineBody { inner, deadline: Box::pin(tokio::time::sleep(limit)), limit }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `app` like `axum::serve`, within `timeouts`, until `shutdown` completes; then open requests
/// get ten seconds to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    timeouts: Timeouts,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use tower::ServiceExt;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, typically: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let body_limit = timeouts.body;
        let app = app.clone().map_request(move |r: axum::http::Request<hyper::body::Incoming>| {
            r.map(|b| axum::body::Body::new(DeadlineBody::new(b, body_limit)))
        });
        let service = hyper_util::service::TowerToHyperService::new(app);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(timeouts.header);
        let connection = graceful.watch(builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed");
            }
        });
    }
    drop(listener);
    // Requests in flight finish; long-polls and event streams get a few seconds, not forever.
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await.is_err() {
        tracing::info!("closing the connections still open after 10 s");
    }
    Ok(())
}
