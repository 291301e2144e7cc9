//! The HTTP server: `/metrics` (or `--web.telemetry-path`), `/`, `/-/healthy`, `/-/ready`.
//! A scrape only encodes the latest snapshot; it never touches a device.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::metrics::Format;
use crate::state::State;

pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    telemetry_path: Arc<str>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(message = "accept failed", error = %e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let state = state.clone();
        let path = telemetry_path.clone();
        let service = service_fn(move |req| {
            let response = respond(&req, &state, &path);
            async move { Ok::<_, Infallible>(response) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(message = "connection ended with an error", %peer, error = %e);
            }
        });
    }
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after 5 s; closing them");
    }
}

const LANDING: &str = "<!DOCTYPE html>\n<html><head><title>storwatch</title></head><body>\n\
<h1>storwatch</h1>\n<p>Storage health agent, version VERSION.</p>\n\
<ul><li><a href=\"PATH\">Metrics</a></li><li><a href=\"/-/healthy\">Health</a></li>\
<li><a href=\"/-/ready\">Readiness</a></li></ul>\n</body></html>\n";

fn respond(req: &Request<Incoming>, state: &State, telemetry_path: &str) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed: use GET.\n".into());
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        p if p == telemetry_path => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::from_accept(accept);
            let mut r = Response::new(Full::new(Bytes::from(state.encode(format))));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
            r
        }
        "/" => {
            let page = LANDING.replace("VERSION", env!("CARGO_PKG_VERSION")).replace("PATH", telemetry_path);
            let mut r = Response::new(Full::new(Bytes::from(page)));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            r
        }
        "/-/healthy" => text(StatusCode::OK, "Healthy.\n".into()),
        "/-/ready" if state.ready() => text(StatusCode::OK, "Ready.\n".into()),
        "/-/ready" => {
            text(StatusCode::SERVICE_UNAVAILABLE, "Not ready: waiting for the first samples.\n".into())
        }
        p => text(StatusCode::NOT_FOUND, format!("Not found: {p}. Metrics are at {telemetry_path}.\n")),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}
