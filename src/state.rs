//! The latest published output of every collector, and what a scrape encodes from it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::checks::{self, CheckResult};
use crate::collectors::{CollectError, ErrorKind};
use crate::metrics::{self, Family, Format};

/// One collector's latest run.
#[derive(Debug, Default)]
struct Slot {
    runs: u64,
    success: bool,
    duration: Duration,
    last_success: Option<SystemTime>,
    errors: BTreeMap<ErrorKind, u64>,
    published: Arc<Published>,
}

/// What a successful run left for scrapes to encode.
#[derive(Debug, Default)]
struct Published {
    families: Vec<Family>,
    checks: Vec<CheckResult>,
    /// `families` encoded once per run and format, on the first scrape that asks for it.
    text: OnceLock<String>,
    openmetrics: OnceLock<String>,
}

impl Published {
    fn encoded(&self, format: Format) -> &str {
        let cell = match format {
            Format::Text => &self.text,
            Format::OpenMetrics => &self.openmetrics,
        };
        cell.get_or_init(|| {
            let mut out = String::new();
            metrics::encode_into(&mut out, format, &self.families);
            out
        })
    }
}

/// Shared between the collector threads (writers) and the HTTP server (reader).
#[derive(Debug)]
pub struct State {
    build_info: Family,
    /// The enabled checks, so each shows in the failing summary even with nothing to judge yet.
    checks: Vec<&'static str>,
    slots: Mutex<BTreeMap<&'static str, Slot>>,
}

impl State {
    pub fn new(collectors: &[&'static str], checks: Vec<&'static str>) -> State {
        let mut build_info =
            Family::info("storwatch_build_info", "The storwatch version and the revision it was built from.");
        build_info
            .push([("version", env!("CARGO_PKG_VERSION")), ("revision", env!("STORWATCH_REVISION"))], 1.0);
        let slots = collectors.iter().map(|&c| (c, Slot::default())).collect();
        State { build_info, checks, slots: Mutex::new(slots) }
    }

    fn slots(&self) -> MutexGuard<'_, BTreeMap<&'static str, Slot>> {
        // A writer that panicked mid-update leaves plain data behind; keep serving it.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes one run: its output on success, and its errors either way.
    pub fn publish(
        &self,
        collector: &'static str,
        duration: Duration,
        result: Result<(Vec<Family>, Vec<CheckResult>), ()>,
        errors: &[CollectError],
    ) {
        let mut slots = self.slots();
        let slot = slots.entry(collector).or_default();
        slot.runs += 1;
        slot.duration = duration;
        slot.success = result.is_ok();
        for e in errors {
            *slot.errors.entry(e.kind).or_default() += 1;
        }
        match result {
            Ok((families, checks)) => {
                slot.last_success = Some(SystemTime::now());
                slot.published = Arc::new(Published { families, checks, ..Published::default() });
            }
            // A failed source has no current samples: stale values would mislead.
            Err(()) => slot.published = Arc::default(),
        }
    }

    /// Ready once every enabled collector has run at least once.
    pub fn ready(&self) -> bool {
        self.slots().values().all(|s| s.runs > 0)
    }

    /// Encodes the latest snapshot; nothing is sampled here.
    pub fn encode(&self, format: Format) -> String {
        let mut own = vec![self.build_info.clone()];
        let published: Vec<Arc<Published>> = {
            let slots = self.slots();
            own.extend(self_families(&slots));
            slots.values().map(|s| s.published.clone()).collect()
        };
        let check_families = checks::families(&self.checks, published.iter().flat_map(|p| &p.checks));
        let collected: Vec<&str> = published.iter().map(|p| p.encoded(format)).collect();
        let mut out = String::with_capacity(collected.iter().map(|c| c.len()).sum::<usize>() + 16 * 1024);
        metrics::encode_into(&mut out, format, &own);
        collected.iter().for_each(|c| out.push_str(c));
        metrics::encode_into(&mut out, format, &check_families);
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
        out
    }
}

fn self_families(slots: &BTreeMap<&'static str, Slot>) -> Vec<Family> {
    let mut success = Family::gauge(
        "storwatch_collector_success",
        "1 when the collector's last run read its source, 0 when it failed.",
    );
    let mut duration =
        Family::gauge("storwatch_collector_duration_seconds", "How long the collector's last run took.");
    let mut last = Family::gauge(
        "storwatch_collector_last_success_timestamp_seconds",
        "Unix time of the collector's last successful run.",
    );
    let mut errors = Family::counter(
        "storwatch_collector_errors_total",
        "Errors met by the collector, by kind (io, parse, permission, internal), partial failures included.",
    );
    for (name, s) in slots.iter().filter(|(_, s)| s.runs > 0) {
        success.push([("collector", name)], if s.success { 1.0 } else { 0.0 });
        duration.push([("collector", name)], s.duration.as_secs_f64());
        if let Some(t) = s.last_success {
            last.push([("collector", name)], t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64());
        }
        for kind in [ErrorKind::Io, ErrorKind::Parse, ErrorKind::Permission, ErrorKind::Internal] {
            let n = s.errors.get(&kind).copied().unwrap_or(0);
            errors.push([("collector", name), ("kind", kind.as_str())], n as f64);
        }
    }
    vec![success, duration, last, errors]
}
