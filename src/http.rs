//! The HTTP server: `/metrics` (or `--web.telemetry-path`), `/`, `/-/healthy`, `/-/ready`.
//! A scrape only encodes the latest snapshot; it never touches a device.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ALLOW, AUTHORIZATION, CONNECTION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::metrics::Format;
use crate::state::State;
use crate::webconfig::WebConfig;

/// Most header lines a request may carry; more is answered 431.
pub const MAX_HEADERS: usize = 64;
/// Largest request head (request line and headers) in bytes; larger is refused.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The server's settings: what is served, how it is protected and its limits.
#[derive(Debug, Clone)]
pub struct Options {
    pub telemetry_path: Arc<str>,
    pub web: WebConfig,
    /// Scrapes of the telemetry path served at once; more get 503. 0: no limit.
    pub max_requests: usize,
    /// Connections open at once; beyond it the server stops accepting until one closes.
    pub max_connections: usize,
    /// Time a client has to send its request head (and finish the TLS handshake).
    pub read_header_timeout: Duration,
    /// Longest a connection stays open; then it closes after its current response.
    pub connection_timeout: Duration,
}

/// What a request handler shares.
struct Shared {
    state: Arc<State>,
    options: Options,
    scrapes: Option<Semaphore>,
    /// When each operator-fixable handshake failure was last logged, and how many since.
    tls_warned: std::sync::Mutex<std::collections::BTreeMap<&'static str, (Option<Instant>, u64)>>,
}

/// A TLS handshake failure the operator can fix (a client certificate of the wrong version,
/// from another CA, expired or not yet valid, or none), as a short reason; None for the rest
/// (scanners, plain HTTP, old protocol versions), which stay at debug level.
pub fn fixable_tls_failure(err: &std::io::Error) -> Option<&'static str> {
    use rustls::{CertificateError, Error};
    let e = err.get_ref()?.downcast_ref::<Error>()?;
    Some(match e {
        Error::NoCertificatesPresented => {
            "the client presented no certificate (client_auth_type requires one)"
        }
        Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                "the client certificate is not signed by client_ca_file's CA (unknown CA)"
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the client certificate has expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the client certificate is not valid yet (its notBefore is in the future: clock skew?)"
            }
            CertificateError::Other(o) if format!("{o:?}").contains("UnsupportedCertVersion") => {
                "the client certificate is X.509 version 1, which rustls (unlike Go's crypto/tls) never accepts: \
                 make a version 3 certificate (openssl x509 -req ... -extfile with extendedKeyUsage=clientAuth; \
                 see the README's TLS section)"
            }
            CertificateError::BadSignature => "the client certificate's signature does not verify",
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "the client certificate is not for client authentication (extendedKeyUsage lacks clientAuth)"
            }
            _ => "the client certificate was rejected",
        },
        _ => return None,
    })
}

impl Shared {
    /// A handshake failure: warned about when the operator can fix it, at most once a minute
    /// per reason (with how many were held back); the rest at debug level.
    fn handshake_failed(&self, peer: std::net::SocketAddr, err: &std::io::Error) {
        let Some(reason) = fixable_tls_failure(err) else {
            tracing::debug!(message = "TLS handshake failed", %peer, error = %err);
            return;
        };
        let mut warned = self.tls_warned.lock().unwrap_or_else(|e| e.into_inner());
        let entry = warned.entry(reason).or_insert((None, 0));
        if entry.0.is_some_and(|t| t.elapsed() < TLS_WARN_EVERY) {
            entry.1 += 1;
            return;
        }
        tracing::warn!(message = "TLS handshake refused", reason, %peer, error = %err, suppressed_since_last_log = entry.1);
        *entry = (Some(Instant::now()), 0);
    }
}

/// At most one warning per handshake failure reason in this long.
const TLS_WARN_EVERY: Duration = Duration::from_secs(60);

/// Serves on every listener until `shutdown` completes, then gives open connections 5 s to end.
/// `--web.max-connections` is one limit over all listeners.
pub async fn serve(
    listeners: Vec<TcpListener>,
    state: Arc<State>,
    options: Options,
    shutdown: impl Future<Output = ()>,
) {
    let connections = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let all = options.max_connections.max(1) as u32;
    let tls = options.web.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let scrapes = (options.max_requests > 0).then(|| Semaphore::new(options.max_requests));
    let shared = Arc::new(Shared { state, options, scrapes, tls_warned: Default::default() });
    let (stop_tx, stop_rx) = watch::channel(false);
    for listener in listeners {
        tokio::spawn(accept(listener, connections.clone(), shared.clone(), tls.clone(), stop_rx.clone()));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    if tokio::time::timeout(Duration::from_secs(5), connections.acquire_many(all)).await.is_err() {
        tracing::warn!("connections still open after 5 s; closing them");
    }
}

/// Accepts connections on one listener until the server stops, each holding a connection slot.
async fn accept(
    listener: TcpListener,
    connections: Arc<Semaphore>,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        // At the connection limit, wait for a slot: new clients queue in the kernel's backlog.
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = stopped(&mut stop) => return,
        };
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
            () = stopped(&mut stop) => return,
        };
        let _ = stream.set_nodelay(true);
        let (shared, tls, stop) = (shared.clone(), tls.clone(), stop.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let handshake_timeout = shared.options.read_header_timeout;
            let result = match tls {
                None => connection(stream, shared, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => connection(tls, shared, stop).await,
                        Ok(Err(e)) => {
                            shared.handshake_failed(peer, &e);
                            Ok(())
                        }
                        Err(_) => Err("TLS handshake timed out".into()),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(message = "connection ended with an error", %peer, error = %e);
            }
        });
    }
}

/// Completes once the server stops (the guard `wait_for` returns is not held across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves one connection until the client closes it, its lifetime ends or the server stops.
async fn connection<I>(io: I, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) -> Result<(), String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let options = &shared.options;
    let lifetime = options.connection_timeout;
    let handler = shared.clone();
    let born = Instant::now();
    let service = service_fn(move |req| {
        let shared = handler.clone();
        async move {
            let mut response = handle(req, &shared).await;
            // Past its lifetime, a response says it is the last (hyper then closes after it), so
            // a keep-alive client never sends its next request into a connection being closed.
            if born.elapsed() >= lifetime {
                response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.read_header_timeout)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => Some(r),
        // A connection that asks for nothing in the header timeout after its lifetime is closed.
        () = tokio::time::sleep(lifetime + options.read_header_timeout) => None,
        _ = stop.wait_for(|s| *s) => None,
    };
    let result = match ended {
        Some(r) => r,
        None => {
            // Finish the response in flight, then close; a client that will not read it is dropped.
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(options.read_header_timeout, conn).await {
                Ok(r) => r,
                Err(_) => return Err("closed: the client did not read its response in time".into()),
            }
        }
    };
    result.map_err(|e| e.to_string())
}

async fn handle(req: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    // Scrapes, and with basic auth every request (the password check is the costly part), count
    // against --web.max-requests until answered; beyond it the answer is an immediate 503.
    let limited = shared.options.web.auth.is_some() || req.uri().path() == &*shared.options.telemetry_path;
    let permit = match &shared.scrapes {
        Some(s) if limited => s.try_acquire().map(Some),
        _ => Ok(None),
    };
    let mut response = match (permit, &shared.options.web.auth) {
        (Err(_), _) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many requests in progress (--web.max-requests).\n".into(),
        ),
        (Ok(_permit), None) => respond(&req, shared),
        (Ok(_permit), Some(auth)) => {
            let header = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes().to_vec());
            let auth = auth.clone();
            // bcrypt takes tens of milliseconds: keep it off the thread serving the other clients.
            let allowed = tokio::task::spawn_blocking(move || auth.check(header.as_deref())).await;
            if allowed.unwrap_or(false) {
                respond(&req, shared)
            } else {
                let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized.\n".into());
                r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
                r
            }
        }
    };
    for (name, value) in &shared.options.web.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

const LANDING: &str = "<!DOCTYPE html>\n<html><head><title>storwatch</title></head><body>\n\
<h1>storwatch</h1>\n<p>Storage health agent, version VERSION.</p>\n\
<ul><li><a href=\"PATH\">Metrics</a></li><li><a href=\"/-/healthy\">Health</a></li>\
<li><a href=\"/-/ready\">Readiness</a></li></ul>\n</body></html>\n";

fn respond(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let (state, telemetry_path) = (&shared.state, &*shared.options.telemetry_path);
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
