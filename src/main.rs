//! storwatch: wiring only. Flags and config in, collector threads and the HTTP server out.

use std::io::IsTerminal;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

use storwatch::cli::{Cli, ListenAddr, LogFormat, LogLevel, Subcommand};
use storwatch::config::Config;
use storwatch::error::{CollectError, ErrorKind};
use storwatch::sdnotify::{self, Heartbeats};
use storwatch::sources::{self, Source};
use storwatch::state::State;
use storwatch::webconfig::WebConfig;
use storwatch::{families, http, report};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level, cli.log_format);
    let config = match &cli.config_file {
        None => Config::default(),
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("storwatch: {e}");
                return ExitCode::from(2);
            }
        },
    };

    let options = sources::Options {
        paths: cli.paths(),
        devices: cli.diskstats_filter(),
        docker: cli.docker_options(),
        fabric: config.fabric.clone(),
        watched: config.filesystems.paths.clone(),
    };
    let collectors: Vec<Box<dyn Source>> = cli
        .enabled_collectors()
        .into_iter()
        .map(|(name, every)| sources::build(name, &options, every))
        .collect();
    if let Some(Subcommand::Check { window, output }) = cli.command {
        return ExitCode::from(report::run(collectors, &config.checks, window, output));
    }

    let web = match &cli.web_config_file {
        None => WebConfig::default(),
        Some(path) => match WebConfig::load(path) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("storwatch: --web.config.file {e}");
                return ExitCode::from(2);
            }
        },
    };
    raise_fd_limit();

    let names: Vec<&'static str> = collectors.iter().map(|c| c.name()).collect();
    let intervals: Vec<Duration> = collectors.iter().map(|c| c.interval()).collect();
    let heartbeats = Arc::new(Heartbeats::new(&intervals));
    let outputs = families::Options { thermal_window: config.checks.thermal.window };
    let state = Arc::new(State::new(&names, config.checks.clone(), outputs));
    tracing::info!(message = "starting storwatch", version = env!("CARGO_PKG_VERSION"), collectors = ?names);

    // Each collector thread stops when its sender is dropped.
    let mut stops = Vec::new();
    for (index, collector) in collectors.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel::<()>();
        stops.push(tx);
        let (state, beats) = (state.clone(), heartbeats.clone());
        let spawned = thread::Builder::new()
            .name(format!("collector-{}", collector.name()))
            .spawn(move || run_collector(collector, &state, &rx, &|| beats.beat(index)));
        if let Err(e) = spawned {
            eprintln!("storwatch: cannot start a collector thread: {e}");
            return ExitCode::FAILURE;
        }
    }

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("storwatch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let listeners = match listeners(&cli).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("storwatch: {e}");
                return ExitCode::FAILURE;
            }
        };
        for listener in &listeners {
            let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::info!(message = "listening", address = %address, telemetry_path = %cli.telemetry_path);
        }
        let options = http::Options {
            telemetry_path: cli.telemetry_path.as_str().into(),
            web,
            max_requests: cli.max_requests,
            max_connections: cli.max_connections as usize,
            read_header_timeout: cli.read_header_timeout,
            connection_timeout: cli.connection_timeout,
        };
        tokio::spawn(supervise(state.clone(), heartbeats, names));
        http::serve(listeners, state, options, shutdown_signal()).await;
        sdnotify::notify("STOPPING=1");
        tracing::info!("shutting down");
        ExitCode::SUCCESS
    });
    drop(stops);
    code
}

/// Runs one source on its interval until `stop` is dropped, publishing each sample into the
/// state. A panic inside a run is caught and counted; the agent runs on.
/// `beat` marks progress for the systemd watchdog, before and after each run.
fn run_collector(mut collector: Box<dyn Source>, state: &State, stop: &mpsc::Receiver<()>, beat: &dyn Fn()) {
    let name = collector.name();
    let interval = collector.interval();
    let mut log = RateLimitedLog::new(name);
    let mut next = Instant::now();
    let mut published = Instant::now();
    loop {
        beat();
        // A source with nothing new is not run again, but at least every REPUBLISH, so the ages
        // its checks judge stay fresh.
        if collector.unchanged() && published.elapsed() < REPUBLISH {
            state.unchanged(name);
        } else {
            run_once(&mut *collector, state, &mut log);
            published = Instant::now();
        }
        beat();
        // Next tick on the original grid; ticks missed by a slow run are skipped, not bunched.
        let now = Instant::now();
        while next <= now {
            next += interval;
        }
        match stop.recv_timeout(next - now) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// How long a source that reports nothing new goes without a run: one default scrape interval.
const REPUBLISH: Duration = Duration::from_secs(15);

/// One run of a source, published into the state.
fn run_once(collector: &mut dyn Source, state: &State, log: &mut RateLimitedLog) {
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| collector.sample()))
        .unwrap_or_else(|_| Err(CollectError::new(ErrorKind::Internal, "the collector panicked")));
    let duration = started.elapsed();
    // A missing privilege is said once, by the state, as it first records it.
    let logged: Vec<CollectError> = match &result {
        Ok(c) => c.errors.iter(),
        Err(e) => std::slice::from_ref(e).iter(),
    }
    .filter(|e| e.denied().is_none())
    .cloned()
    .collect();
    log.errors(&logged);
    state.publish(collector.name(), duration, result);
}

/// Tells systemd READY=1 once every collector has published its first samples, then pings the
/// watchdog (when WatchdogSec= is set) only while no collector loop is wedged: a run stuck longer
/// than its interval plus the watchdog timeout stops the pings and systemd restarts the agent.
async fn supervise(state: Arc<State>, heartbeats: Arc<Heartbeats>, names: Vec<&'static str>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !state.ready() {
        tick.tick().await;
    }
    if sdnotify::notify("READY=1") {
        tracing::info!("told systemd the agent is ready");
    }
    let Some(period) = sdnotify::watchdog_period() else { return };
    let mut tick = tokio::time::interval(period);
    let mut wedged = None;
    loop {
        tick.tick().await;
        match heartbeats.stalled(period * 2) {
            None => {
                sdnotify::notify("WATCHDOG=1");
                wedged = None;
            }
            Some(i) if wedged != Some(i) => {
                tracing::error!(
                    message = "collector loop wedged; no longer pinging the systemd watchdog",
                    collector = names[i]
                );
                wedged = Some(i);
            }
            Some(_) => {}
        }
    }
}

/// Raises the soft open-file limit to the hard one: each connection is a descriptor.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// One warning line per collector per minute at most, saying how many were held back; the same
/// error as the last one logged is not logged again (the error counter shows it goes on).
struct RateLimitedLog {
    collector: &'static str,
    last: Option<(Instant, String)>,
    suppressed: u64,
}

impl RateLimitedLog {
    const EVERY: Duration = Duration::from_secs(60);

    fn new(collector: &'static str) -> Self {
        RateLimitedLog { collector, last: None, suppressed: 0 }
    }

    fn errors(&mut self, errors: &[CollectError]) {
        let Some(first) = errors.first() else { return };
        let repeated = self.last.as_ref().is_some_and(|(_, m)| *m == first.message);
        if repeated || self.last.as_ref().is_some_and(|(t, _)| t.elapsed() < Self::EVERY) {
            self.suppressed += errors.len() as u64;
            return;
        }
        tracing::warn!(
            message = "collector error",
            collector = self.collector,
            error = %first,
            errors_in_run = errors.len(),
            suppressed_since_last_log = self.suppressed,
        );
        self.last = Some((Instant::now(), first.message.clone()));
        self.suppressed = 0;
    }
}

/// The sockets to serve on: systemd's with `--web.systemd-socket` (the listen addresses are then
/// ignored, as node_exporter ignores them), else one bound to each `--web.listen-address`.
async fn listeners(cli: &Cli) -> Result<Vec<tokio::net::TcpListener>, String> {
    if cli.systemd_socket {
        let sockets = sdnotify::listen_sockets().map_err(|e| format!("--web.systemd-socket: {e}"))?;
        return sockets
            .into_iter()
            .map(|s| {
                s.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(s)
            })
            .collect::<std::io::Result<_>>()
            .map_err(|e| format!("--web.systemd-socket: {e}"));
    }
    let mut listeners = Vec::with_capacity(cli.listen.len());
    for listen in &cli.listen {
        listeners.push(bind(listen).await.map_err(|e| format!("cannot listen on {listen:?}: {e}"))?);
    }
    Ok(listeners)
}

async fn bind(listen: &ListenAddr) -> std::io::Result<tokio::net::TcpListener> {
    match listen {
        ListenAddr::Addr(a) => tokio::net::TcpListener::bind(a).await,
        // Dual-stack where the host has IPv6, IPv4 otherwise.
        ListenAddr::AnyHost(port) => {
            match tokio::net::TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, *port))).await {
                Ok(l) => Ok(l),
                Err(_) => {
                    tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, *port))).await
                }
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::warn!("cannot install signal handlers; stop storwatch with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn init_logging(level: LogLevel, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let level = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}
