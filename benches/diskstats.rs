//! What one diskstats pass costs on a host with many disks: a synthetic `/proc/diskstats` of 1,000
//! whole devices (20-field lines, all kept by the default exclude regex), measured as
//!
//! - `parse_bytes`: `sources::diskstats::parse` of the file's bytes;
//! - `collect`: one diskstats sample on a temp procfs holding the file (read, parse, filter),
//!   published into a state: the model's window rates, the families and the latency check,
//!   after a warm-up run so the window exists;
//! - `encode_text` / `encode_openmetrics`: `State::encode` of a state holding that run's output,
//!   i.e. what one scrape of `/metrics` costs apart from HTTP.
//!
//! Run: `cargo bench --bench diskstats`
//!
//! Device counts are the `args` of each bench; add 10_000 to `DEVICES` for the larger case.

use std::fmt::Write;
use std::time::Duration;

use divan::{Bencher, black_box};
use storwatch::checks;
use storwatch::families;
use storwatch::metrics::Format;
use storwatch::paths::Paths;
use storwatch::sources::diskstats::{Diskstats, parse};
use storwatch::sources::{DeviceFilter, Source};
use storwatch::state::State;

const DEVICES: &[usize] = &[1_000];

fn main() {
    divan::main();
}

/// `sda`, ..., `sdz`, `sdaa`, ..., `sdzz`, `sdaaa`, ...: the kernel's sd naming (bijective base 26).
fn sd_name(mut i: usize) -> String {
    let mut letters = Vec::new();
    loop {
        letters.push(b'a' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    letters.reverse();
    format!("sd{}", String::from_utf8(letters).unwrap())
}

/// A `/proc/diskstats` of `devices` whole disks, 20 fields a line, numbers varying per device.
fn synthetic_diskstats(devices: usize) -> String {
    let mut out = String::with_capacity(devices * 140);
    for i in 0..devices {
        let k = i as u64 + 1;
        let (major, minor) = (8 + i / 16, (i % 16) * 16);
        // reads: completed merged sectors ms; writes: the same; in flight; io ms; weighted io ms;
        // discards: completed merged sectors ms; flushes: completed ms.
        let fields: [u64; 17] = [
            25_354_637 + k * 17,
            34_367_663 + k * 3,
            1_003_346_126 + k * 1_031,
            18_492_372 + k * 7,
            28_444_756 + k * 19,
            11_134_226 + k * 5,
            505_697_032 + k * 977,
            63_877_960 + k * 11,
            k % 3,
            9_653_880 + k,
            82_621_804 + k * 13,
            k * 2,
            0,
            k * 512,
            k % 97,
            1_555 + k,
            1_944 + k * 2,
        ];
        let _ = write!(out, "{major:4} {minor:7} {}", sd_name(i));
        for f in fields {
            let _ = write!(out, " {f}");
        }
        out.push('\n');
    }
    out
}

/// A procfs holding the synthetic file and an empty sysfs, kept alive with the source and a
/// state it publishes into.
struct Setup {
    _procfs: tempfile::TempDir,
    _sysfs: tempfile::TempDir,
    source: Diskstats,
    state: State,
}

impl Setup {
    /// One run as the agent makes it: a sample, published into the state.
    fn run(&mut self) {
        let c = self.source.sample().unwrap();
        assert!(c.errors.is_empty(), "{:?}", c.errors.first());
        self.state.publish("diskstats", Duration::from_millis(1), Ok(c));
    }
}

fn setup(devices: usize) -> Setup {
    let procfs = tempfile::tempdir().unwrap();
    let sysfs = tempfile::tempdir().unwrap();
    std::fs::write(procfs.path().join("diskstats"), synthetic_diskstats(devices)).unwrap();
    let paths =
        Paths { procfs: procfs.path().to_owned(), sysfs: sysfs.path().to_owned(), ..Paths::default() };
    let source = Diskstats::new(paths, DeviceFilter::default(), Duration::from_secs(5));
    let state = State::new(&["diskstats"], checks::Config::default(), families::Options::default());
    let mut s = Setup { _procfs: procfs, _sysfs: sysfs, source, state };
    // Warm-up: the first run has no window; the second (and each measured one) has.
    s.run();
    std::thread::sleep(Duration::from_millis(2));
    s.run();
    let text = s.state.encode(Format::Text);
    let judged = text.matches("storwatch_check_ok{check=\"storage_latency\"").count();
    assert_eq!(judged, devices, "every device should have its window");
    s
}

/// A state with one collected run of `devices` disks published, as the agent's scrapes see it.
fn published_state(devices: usize) -> State {
    setup(devices).state
}

#[divan::bench(args = DEVICES)]
fn parse_bytes(bencher: Bencher, devices: usize) {
    let text = synthetic_diskstats(devices);
    let (stats, errors) = parse(text.as_bytes());
    assert_eq!((stats.len(), errors.len()), (devices, 0));
    bencher.counter(divan::counter::BytesCount::new(text.len())).bench(|| parse(black_box(text.as_bytes())));
}

#[divan::bench(args = DEVICES)]
fn collect(bencher: Bencher, devices: usize) {
    let mut s = setup(devices);
    bencher.bench_local(|| s.run());
}

#[divan::bench(args = DEVICES)]
fn encode_text(bencher: Bencher, devices: usize) {
    let state = published_state(devices);
    bencher.bench(|| state.encode(black_box(Format::Text)));
}

#[divan::bench(args = DEVICES)]
fn encode_openmetrics(bencher: Bencher, devices: usize) {
    let state = published_state(devices);
    bencher.bench(|| state.encode(black_box(Format::OpenMetrics)));
}
