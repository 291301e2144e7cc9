//! The metric families: one module per source, each a plain function of the model, built when
//! that source's sample arrives (a scrape only encodes them). Families that join sources (a
//! drive's throttling signal) read the other sources' parts as they stand then.
//!
//! One style for all: a table of columns ([`Col`]: name, help, kind, and the value of a row) over
//! the rows of a source (devices, controllers, interfaces), one family per column and one sample
//! per row that has a value ([`table`]); info families list their rows' labels ([`info`]). Both
//! read the model as they go: nothing is copied out of it to build a family.

mod biolatency;
mod diskstats;
mod docker;
mod fabric;
mod host;
mod hwmon;
mod kmsg;
mod nvme;
mod queue;
mod sata;

use std::borrow::Borrow;
use std::time::Duration;

use crate::metrics::{Family, Kind};
use crate::model::Model;

/// What the families need besides the model.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a drive's throttling holds `storwatch_device_thermal_throttling` at 1: the thermal
    /// check's window, so the signal and the check agree.
    pub thermal_window: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { thermal_window: Duration::from_secs(15 * 60) }
    }
}

/// The families of `source` from the model; none while the source is not current.
pub fn build(model: &Model, source: &str, o: &Options) -> Vec<Family> {
    match source {
        "diskstats" => model.disks().map(diskstats::families),
        "biolatency" => model.latency().map(|l| biolatency::families(&l.sample)),
        "kmsg" => model.kernel().map(kmsg::families),
        "queue" => model.queue().map(queue::families),
        "host" => model.host().map(host::families),
        "fabric" => model.fabric().map(fabric::families),
        "nvme" => model.nvme().map(nvme::families),
        "sata" => model.sata().map(sata::families),
        "hwmon" => model.hwmon().map(|h| hwmon::families(model, h, o)),
        "docker" => model.docker().map(docker::families),
        _ => None,
    }
    .unwrap_or_default()
}

/// One family of a table: its name, help and kind, and the value of a row (None: no sample).
pub struct Col<R: ?Sized> {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub value: fn(&R) -> Option<f64>,
}

pub const fn counter<R: ?Sized>(
    name: &'static str,
    help: &'static str,
    value: fn(&R) -> Option<f64>,
) -> Col<R> {
    Col { name, help, kind: Kind::Counter, value }
}

pub const fn gauge<R: ?Sized>(
    name: &'static str,
    help: &'static str,
    value: fn(&R) -> Option<f64>,
) -> Col<R> {
    Col { name, help, kind: Kind::Gauge, value }
}

/// One family per column, in the columns' order; in each, one sample per row that has a value,
/// in the rows' order. `rows` gives the rows afresh for each column (an iterator over the model,
/// so nothing is collected in between): each its labels in output order, and the value it is read
/// from (owned or borrowed).
pub fn table<'r, R, L, B, I>(cols: &[Col<R>], rows: impl Fn() -> I) -> Vec<Family>
where
    R: ?Sized,
    L: AsRef<[(&'static str, &'r str)]>,
    B: Borrow<R>,
    I: Iterator<Item = (L, B)>,
{
    cols.iter()
        .map(|c| {
            let mut f = Family::new(c.name, c.kind, c.help);
            for (labels, row) in rows() {
                if let Some(v) = (c.value)(row.borrow()) {
                    f.push_labels(labels.as_ref(), v);
                }
            }
            f
        })
        .collect()
}

/// An info family: one sample of value 1 per row of labels.
pub fn info<'a>(
    name: &'static str,
    help: &'static str,
    rows: impl IntoIterator<Item = Vec<(&'static str, &'a str)>>,
) -> Family {
    let mut f = Family::info(name, help);
    for labels in rows {
        f.push_labels(&labels, 1.0);
    }
    f
}

/// 1.0 for true, 0.0 for false.
pub fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Format, encode};

    #[test]
    fn tables_and_info() {
        let cols: [Col<(u32, Option<u32>)>; 2] = [
            counter("x_a_total", "A.", |r| Some(f64::from(r.0))),
            gauge("x_b", "B, when known.", |r| r.1.map(f64::from)),
        ];
        let rows = [("sda", (7, None)), ("sdb", (8, Some(2)))];
        let mut families = table(&cols, || rows.iter().map(|(dev, r)| ([("device", *dev)], r)));
        families.push(info("x_info", "Facts.", [vec![("device", "sda"), ("model", "M")]]));
        assert_eq!(
            encode(Format::Text, &families),
            "# HELP x_a_total A.\n# TYPE x_a_total counter\nx_a_total{device=\"sda\"} 7\nx_a_total{device=\"sdb\"} 8\n\
             # HELP x_b B, when known.\n# TYPE x_b gauge\nx_b{device=\"sdb\"} 2\n\
             # HELP x_info Facts.\n# TYPE x_info gauge\nx_info{device=\"sda\",model=\"M\"} 1\n"
        );
        assert_eq!((flag(true), flag(false)), (1.0, 0.0));
    }
}
