//! The hand-written parts against the crates that could replace them, on the same input, for the
//! README's "Kept crates" comparison:
//!
//! - the exposition encoder (`metrics::encode`) against prometheus-client 0.26's text 0.0.4 and
//!   OpenMetrics encoders, fed the same families (the diskstats families of 1,000 disks) through
//!   a `Collector`; `outputs` prints how the two expositions differ;
//! - the `/proc` parsers against the procfs crate's (procfs-core 0.18): `/proc/diskstats` of
//!   1,000 disks, this process's `/proc/self/stat` and `/proc/self/limits`, and what one
//!   `process_*` scrape costs;
//! - the Docker client (`sources::docker::http`) against hyper's client on a tokio runtime, on
//!   this machine's engine (`docker_client`: the client's own CPU per request);
//!
//! each checked to read the same numbers before it is timed.
//!
//! Run: `cargo bench --bench kept_crates` (the differences: `cargo bench --bench kept_crates -- outputs`)

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use divan::{Bencher, black_box};
use procfs::FromRead;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use storwatch::metrics::{Family, Format, Kind, encode};
use storwatch::model::Model;
use storwatch::paths::Paths;
use storwatch::process;
use storwatch::sources::diskstats::{Diskstats, parse};
use storwatch::sources::{DeviceFilter, Source};

const DEVICES: usize = 1_000;

fn main() {
    divan::main();
}

/// A `/proc/diskstats` of `devices` whole disks, 20 fields a line (as benches/diskstats.rs).
fn synthetic_diskstats(devices: usize) -> String {
    let mut out = String::with_capacity(devices * 140);
    for i in 0..devices {
        let k = i as u64 + 1;
        let _ = write!(out, "{:4} {:7} sd{i:04}", 8 + i / 16, (i % 16) * 16);
        for f in [25_354_637 + k * 17, 34_367_663 + k * 3, 1_003_346_126 + k * 1_031, 18_492_372 + k * 7] {
            let _ = write!(out, " {f}");
        }
        for f in [28_444_756 + k * 19, 11_134_226 + k * 5, 505_697_032 + k * 977, 63_877_960 + k * 11] {
            let _ = write!(out, " {f}");
        }
        for f in
            [k % 3, 9_653_880 + k, 82_621_804 + k * 13, k * 2, 0, k * 512, k % 97, 1_555 + k, 1_944 + k * 2]
        {
            let _ = write!(out, " {f}");
        }
        out.push('\n');
    }
    out
}

/// The diskstats families of `devices` disks as the agent publishes them: two samples a little
/// apart through the model, so the window gauges exist too.
fn diskstats_families(devices: usize) -> Vec<Family> {
    let procfs = tempfile::tempdir().unwrap();
    let sysfs = tempfile::tempdir().unwrap();
    std::fs::write(procfs.path().join("diskstats"), synthetic_diskstats(devices)).unwrap();
    let paths =
        Paths { procfs: procfs.path().to_owned(), sysfs: sysfs.path().to_owned(), ..Paths::default() };
    let mut source = Diskstats::new(paths, DeviceFilter::default(), Duration::from_secs(5));
    let mut model = Model::default();
    model.update(source.sample().unwrap());
    std::thread::sleep(Duration::from_millis(2));
    model.update(source.sample().unwrap());
    storwatch::families::build(&model, "diskstats", &storwatch::families::Options::default())
}

/// The same families, handed to prometheus-client's encoder as an adopter would: integral values
/// as integers (prometheus-client writes an f64 12 as `12.0`), names without the `_total` and
/// `_info` it appends itself.
#[derive(Debug)]
struct Families(Vec<Family>);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in self.0.iter().filter(|f| !f.samples.is_empty()) {
            let (name, kind) = match f.kind {
                Kind::Counter => (f.name.strip_suffix("_total").unwrap_or(f.name), MetricType::Counter),
                Kind::Info => (f.name.strip_suffix("_info").unwrap_or(f.name), MetricType::Info),
                Kind::Gauge => (f.name, MetricType::Gauge),
                Kind::Histogram => unreachable!("no histograms among the diskstats families"),
            };
            let mut family = encoder.encode_descriptor(name, f.help, None, kind)?;
            for s in &f.samples {
                let labels: Vec<(&str, &str)> = s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let integral = s.value.fract() == 0.0 && s.value.abs() < 1e15;
                if f.kind == Kind::Info {
                    // An info's labels are its value: encoded by encode_info, not as a family.
                    family.encode_info(&labels)?;
                    continue;
                }
                let sample = family.encode_family(&labels)?;
                match (f.kind, integral) {
                    (Kind::Counter, true) => ConstCounter::new(s.value as u64).encode(sample)?,
                    (Kind::Counter, false) => ConstCounter::new(s.value).encode(sample)?,
                    (_, true) => ConstGauge::new(s.value as i64).encode(sample)?,
                    (_, false) => ConstGauge::new(s.value).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

fn registry(families: Vec<Family>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(Families(families)));
    r
}

fn client_text(r: &Registry) -> String {
    let mut out = String::with_capacity(1 << 20);
    prometheus_client::encoding::prometheus_text::encode(&mut out, r).unwrap();
    out
}

fn client_openmetrics(r: &Registry) -> String {
    let mut out = String::with_capacity(1 << 20);
    prometheus_client::encoding::text::encode(&mut out, r).unwrap();
    out
}

/// Lines of `a` not in `b`, the first few, and how many.
fn differ(a: &str, b: &str) -> (usize, Vec<String>) {
    let b: std::collections::HashSet<&str> = b.lines().collect();
    let only: Vec<&str> = a.lines().filter(|l| !b.contains(l)).collect();
    (only.len(), only.iter().take(4).map(|l| l.to_string()).collect())
}

/// Prints how the two encoders' expositions of the same families differ (the bench measures
/// nothing here; it is the report).
#[divan::bench(sample_count = 1, sample_size = 1)]
fn outputs() {
    let families = diskstats_families(DEVICES);
    let r = registry(families.clone());
    for (format, ours, theirs) in [
        ("text 0.0.4", encode(Format::Text, &families), client_text(&r)),
        ("OpenMetrics", encode(Format::OpenMetrics, &families), client_openmetrics(&r)),
    ] {
        let (n, first) = differ(&ours, &theirs);
        let (m, theirs_first) = differ(&theirs, &ours);
        eprintln!(
            "{format}: identical {}; ours {} bytes {} lines, prometheus-client {} bytes {} lines; \
             {n} of our lines not in theirs, e.g. {first:?}; {m} of theirs not in ours, e.g. {theirs_first:?}",
            ours == theirs,
            ours.len(),
            ours.lines().count(),
            theirs.len(),
            theirs.lines().count()
        );
    }
}

#[divan::bench]
fn encode_text_ours(bencher: Bencher) {
    let families = diskstats_families(DEVICES);
    bencher.bench(|| encode(black_box(Format::Text), &families));
}

#[divan::bench]
fn encode_text_prometheus_client(bencher: Bencher) {
    let r = registry(diskstats_families(DEVICES));
    bencher.bench(|| client_text(black_box(&r)));
}

#[divan::bench]
fn encode_openmetrics_ours(bencher: Bencher) {
    let families = diskstats_families(DEVICES);
    bencher.bench(|| encode(black_box(Format::OpenMetrics), &families));
}

#[divan::bench]
fn encode_openmetrics_prometheus_client(bencher: Bencher) {
    let r = registry(diskstats_families(DEVICES));
    bencher.bench(|| client_openmetrics(black_box(&r)));
}

#[divan::bench]
fn diskstats_ours(bencher: Bencher) {
    let text = synthetic_diskstats(DEVICES);
    bencher.bench(|| parse(black_box(text.as_bytes())));
}

#[divan::bench]
fn diskstats_procfs(bencher: Bencher) {
    let text = synthetic_diskstats(DEVICES);
    let theirs: Vec<procfs::DiskStat> =
        text.lines().map(|l| procfs::DiskStat::from_line(l).unwrap()).collect();
    let (ours, _) = parse(text.as_bytes());
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(
            (a.name.as_str(), a.read.completed, a.write.ticks_ms),
            (b.name.as_str(), b.reads, b.time_writing)
        );
        assert_eq!(a.flush.unwrap().ticks_ms, b.time_flushing.unwrap());
    }
    bencher.bench(|| {
        black_box(&text).lines().map(procfs::DiskStat::from_line).collect::<Result<Vec<_>, _>>().unwrap()
    });
}

fn self_file(name: &str) -> String {
    std::fs::read_to_string(Path::new("/proc/self").join(name)).unwrap()
}

#[divan::bench]
fn self_stat_ours(bencher: Bencher) {
    let text = self_file("stat");
    bencher.bench(|| process::parse_stat(black_box(&text)).unwrap());
}

#[divan::bench]
fn self_stat_procfs(bencher: Bencher) {
    let text = self_file("stat");
    let (ours, theirs) =
        (process::parse_stat(&text).unwrap(), procfs::process::Stat::from_read(text.as_bytes()).unwrap());
    assert_eq!(
        (ours.utime, ours.stime, ours.num_threads, ours.starttime, ours.vsize, ours.rss),
        (theirs.utime, theirs.stime, theirs.num_threads as u64, theirs.starttime, theirs.vsize, theirs.rss)
    );
    bencher.bench(|| procfs::process::Stat::from_read(black_box(text.as_bytes())).unwrap());
}

#[divan::bench]
fn self_limits_ours(bencher: Bencher) {
    let text = self_file("limits");
    bencher.bench(|| process::parse_limit(black_box(&text), "Max open files").unwrap());
}

#[divan::bench]
fn self_limits_procfs(bencher: Bencher) {
    let text = self_file("limits");
    let theirs = procfs::process::Limits::from_read(text.as_bytes()).unwrap();
    let soft = match theirs.max_open_files.soft_limit {
        procfs::process::LimitValue::Value(v) => v,
        procfs::process::LimitValue::Unlimited => u64::MAX,
    };
    assert_eq!(process::parse_limit(&text, "Max open files"), Some(soft));
    bencher.bench(|| procfs::process::Limits::from_read(black_box(text.as_bytes())).unwrap());
}

/// What the `process_*` series add to a scrape: reading /proc/self (stat, limits, /proc/stat, the
/// fd directory) and building the families.
#[divan::bench]
fn process_series_per_scrape(bencher: Bencher) {
    bencher.bench(|| process::families(&process::read(black_box(Path::new("/proc")))));
}

/// The Docker engine's socket the client comparison asks (this machine's engine).
const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// `GET path` through hyper's own HTTP/1.1 client (already a dependency, as the server) on a
/// tokio UnixStream, one connection a request as ours, with the same 5 s deadline; the collector
/// would hold a current-thread runtime on its thread.
fn hyper_get(rt: &tokio::runtime::Runtime, path: &str) -> Vec<u8> {
    use http_body_util::BodyExt;
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), async {
            let stream = tokio::net::UnixStream::connect(DOCKER_SOCKET).await.unwrap();
            let io = hyper_util::rt::TokioIo::new(stream);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            let request = hyper::Request::get(path)
                .header("Host", "docker")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert!(response.status().is_success());
            response.into_body().collect().await.unwrap().to_bytes().to_vec()
        })
        .await
        .unwrap()
    })
}

fn ours_get(path: &str) -> Vec<u8> {
    let r = storwatch::sources::docker::http::get(Path::new(DOCKER_SOCKET), path, Duration::from_secs(5))
        .unwrap();
    assert!((200..300).contains(&r.status));
    r.body
}

/// `v` with every array's elements in one order.
fn sorted(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Array(a) => {
            let mut a: Vec<Value> = a.into_iter().map(sorted).collect();
            a.sort_by_cached_key(|e| e.to_string());
            Value::Array(a)
        }
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, sorted(v))).collect()),
        other => other,
    }
}

/// This thread's CPU time (the runtime above runs on it: `block_on` on a current-thread runtime).
fn thread_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The Docker client: ours (`src/sources/docker/http.rs`) against hyper's client, on this
/// machine's engine: the same bodies for the collector's requests, then the client's own CPU per
/// request (the engine's work is not in it), 200 of each, alternating. Wall time would be mostly
/// the engine's, so this prints CPU instead of timing with divan.
#[divan::bench(sample_count = 1, sample_size = 1)]
fn docker_client() {
    if !Path::new(DOCKER_SOCKET).exists() {
        println!("docker_client: no engine at {DOCKER_SOCKET}; not compared");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for path in ["/version", "/volumes", "/containers/json?all=1"] {
        let (a, b) = (ours_get(path), hyper_get(&rt, path));
        let (a, b): (serde_json::Value, serde_json::Value) =
            (serde_json::from_slice(&a).unwrap(), serde_json::from_slice(&b).unwrap());
        // The engine lists volumes in no fixed order.
        assert_eq!(sorted(a), sorted(b), "{path}: the two clients read different answers");
    }
    let path = "/containers/json?all=1";
    let (mut ours, mut theirs) = (Duration::ZERO, Duration::ZERO);
    let n = 200;
    for _ in 0..n {
        let t = thread_cpu();
        black_box(ours_get(path));
        ours += thread_cpu() - t;
        let t = thread_cpu();
        black_box(hyper_get(&rt, path));
        theirs += thread_cpu() - t;
    }
    println!(
        "docker_client: GET {path} ({} bytes), client CPU per request: ours {:.1} µs, hyper {:.1} µs ({n} each)",
        ours_get(path).len(),
        ours.as_secs_f64() * 1e6 / n as f64,
        theirs.as_secs_f64() * 1e6 / n as f64
    );
}
