//! Kernel log classification throughput: raw /dev/kmsg records parsed and classified on one core.
//! The corpus is every line of tests/data/kmsg-corpus.tsv and of the real corpus
//! tests/data/kmsg-real.tsv (failures, their detail lines and alarming-looking benign lines), the
//! near misses, and ordinary boot and runtime lines (which is what most of a real log is), 4
//! ordinary lines to 1 storage line. Target: at least 1,000,000 records per second.
//!
//! Run: `cargo bench --bench kmsg`

use divan::counter::ItemsCount;
use storwatch::sources::kmsg::{classify, record};

const ORDINARY: &[&str] = &[
    "Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)",
    "systemd[1]: Started systemd-journald.service - Journal Service.",
    "e1000e 0000:00:1f.6 eno1: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx",
    "audit: type=1400 audit(1700000000.123:42): apparmor=\"STATUS\" operation=\"profile_load\" profile=\"unconfined\" name=\"docker-default\" pid=1234 comm=\"apparmor_parser\"",
    "br-1a2b3c4d5e6f: port 1(veth1234567) entered forwarding state",
    "EXT4-fs (nvme0n1p2): mounted filesystem 3f2e1d0c-aaaa-bbbb-cccc-1234567890ab r/w with ordered data mode. Quota mode: none.",
    "nvme nvme0: 16/0/0 default/read/poll queues",
    "ata1: SATA link up 6.0 Gbps (SStatus 133 SControl 300)",
    "sd 0:0:0:0: [sda] 3907029168 512-byte logical blocks: (2.00 TB/1.82 TiB)",
    "overlayfs: idmapped layers are currently not supported",
    "TCP: request_sock_TCP: Possible SYN flooding on port 8080. Sending cookies.",
    "kauditd_printk_skb: 12 callbacks suppressed",
];

fn records() -> Vec<Vec<u8>> {
    let corpus = include_str!("../tests/data/kmsg-corpus.tsv");
    let real = include_str!("../tests/data/kmsg-real.tsv");
    let near = include_str!("../tests/data/kmsg-near-misses.txt");
    let rows = |text: &'static str, fields: usize| {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(move |l| l.splitn(fields, '\t').last().unwrap())
    };
    let errors: Vec<&str> = rows(corpus, 3).chain(rows(real, 5)).collect();
    let ordinary: Vec<&str> =
        near.lines().filter(|l| !l.starts_with('#')).chain(ORDINARY.iter().copied()).collect();
    let mut out = Vec::new();
    let mut seq = 0u64;
    for (i, e) in errors.iter().enumerate() {
        for j in 0..4 {
            let line = ordinary[(i * 4 + j) % ordinary.len()];
            out.push(format!("6,{seq},{},-;{line}\n", seq * 1000).into_bytes());
            seq += 1;
        }
        out.push(format!("3,{seq},{},-;{e}\n SUBSYSTEM=block\n DEVICE=b8:0\n", seq * 1000).into_bytes());
        seq += 1;
    }
    out
}

#[divan::bench]
fn parse_and_classify(bencher: divan::Bencher) {
    let records = records();
    let storage =
        records.iter().filter(|r| classify::classify(&record::parse(r).unwrap().message).is_some()).count();
    assert!(
        storage * 6 > records.len(),
        "about every fifth record is a storage line: {storage} of {}",
        records.len()
    );
    bencher.counter(ItemsCount::new(records.len())).bench(|| {
        let mut hits = 0usize;
        for r in &records {
            let rec = record::parse(divan::black_box(r)).unwrap();
            hits += usize::from(classify::classify(&rec.message).is_some());
        }
        hits
    });
}

#[divan::bench]
fn classify_only(bencher: divan::Bencher) {
    let records = records();
    let messages: Vec<String> = records.iter().map(|r| record::parse(r).unwrap().message).collect();
    bencher
        .counter(ItemsCount::new(messages.len()))
        .bench(|| messages.iter().filter(|m| classify::classify(divan::black_box(m)).is_some()).count());
}

fn main() {
    divan::main();
}
