// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Block I/O latency histograms per device and operation, for storwatch's biolatency collector
// (src/collectors/biolatency.rs). Rebuild the committed object with scripts/build-bpf.sh.
//
// Three BTF-enabled raw tracepoints (tp_btf, Linux 5.11+ argument layout, which is what 6.1 and
// 6.18 both have: `btf_trace_block_rq_issue(void *, struct request *)`, and `..._complete(void *,
// struct request *, blk_status_t, unsigned int)`):
//   block_rq_insert   the request enters the I/O scheduler / dispatch list: its clock starts;
//   block_rq_issue    the driver is given the request: its clock starts unless insert started it;
//   block_rq_complete its latency (insert or issue to completion, queueing included, as the
//                     diskstats await) goes into the histogram of its disk and operation.
// Requests are keyed by their address. Field offsets are CO-RE relocations against the running
// kernel's BTF (the loader applies them), so one object serves every kernel with BTF.

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

// Only the fields read here; preserve_access_index makes every access a CO-RE relocation, so the
// kernel's real layout decides the offsets.
struct gendisk {
	int major;
	int first_minor;
} __attribute__((preserve_access_index));

struct request_queue {
	struct gendisk *disk;
} __attribute__((preserve_access_index));

struct request {
	struct request_queue *q;
	unsigned int cmd_flags;
} __attribute__((preserve_access_index));

// The histogram layout the collector reads (keep in step with src/collectors/biolatency.rs).
#define SLOTS 29     // slot i < 28: latency <= 2^i µs (1 µs .. 134.2 s); slot 28: above that
#define MAX_SLOT 27
#define OVERFLOW 28
// The array is a power of two long so that a mask bounds the index: 6.1's verifier does not carry
// a compare on one register over to its copy, which clang may index with. Slots 29..31 stay 0.
#define SLOT_ARRAY 32

enum op { OP_READ = 0, OP_WRITE = 1, OP_DISCARD = 2, OP_FLUSH = 3 };

struct hist_key {
	__u32 dev;   // major << 20 | first_minor (the kernel's dev_t)
	__u32 op;    // enum op
};

struct hist {
	__u64 slots[SLOT_ARRAY];
	__u64 sum_ns;
};

struct start {
	__u64 ts;
	__u32 issued;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct start);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct hist_key);
	__type(value, struct hist);
} hists SEC(".maps");

// [0]: requests not timed because `starts` was full.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} untracked SEC(".maps");

static __always_inline __u32 log2_u32(__u32 v)
{
	__u32 r, shift;

	r = (v > 0xFFFF) << 4;
	v >>= r;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (v >> 1);
	return r;
}

// floor(log2(v)) for v >= 1.
static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 hi = v >> 32;

	return hi ? log2_u32(hi) + 32 : log2_u32(v);
}

// The smallest i with latency <= 2^i µs, or OVERFLOW.
static __always_inline __u32 slot_of(__u64 ns)
{
	__u64 us = (ns + 999) / 1000;
	__u32 i;

	if (us <= 1)
		return 0;
	i = log2_u64(us - 1) + 1;
	return i > MAX_SLOT ? OVERFLOW : i;
}

// As the kernel's op_stat_group() plus flushes: discards, flushes, then odd ops are writes.
static __always_inline __u32 op_of(unsigned int cmd_flags)
{
	unsigned int op = cmd_flags & 0xff; // REQ_OP_MASK

	if (op == 3) // REQ_OP_DISCARD
		return OP_DISCARD;
	if (op == 2) // REQ_OP_FLUSH
		return OP_FLUSH;
	return (op & 1) ? OP_WRITE : OP_READ;
}

static __always_inline void start_clock(struct request *rq, __u32 issued)
{
	__u64 key = (__u64)rq;
	struct start s = { .ts = bpf_ktime_get_ns(), .issued = issued };

	if (bpf_map_update_elem(&starts, &key, &s, BPF_ANY)) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&untracked, &zero);

		if (n)
			__sync_fetch_and_add(n, 1);
	}
}

SEC("tp_btf/block_rq_insert")
int BPF_PROG(block_rq_insert, struct request *rq)
{
	start_clock(rq, 0);
	return 0;
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(block_rq_issue, struct request *rq)
{
	__u64 key = (__u64)rq;
	struct start *s = bpf_map_lookup_elem(&starts, &key);

	// Inserted and not yet issued: the clock runs from the insert. Anything else (no entry, or
	// one left from an earlier life of this request) starts now.
	if (s && !s->issued) {
		s->issued = 1;
		return 0;
	}
	start_clock(rq, 1);
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(block_rq_complete, struct request *rq, int error, unsigned int nr_bytes)
{
	__u64 key = (__u64)rq;
	struct start *s = bpf_map_lookup_elem(&starts, &key);
	struct hist_key hk = {};
	struct hist *h;
	struct gendisk *disk;
	__u64 delta, idx;

	if (!s)
		return 0; // started before the programs were attached, or a later partial completion
	delta = bpf_ktime_get_ns() - s->ts;
	bpf_map_delete_elem(&starts, &key);

	disk = rq->q->disk;
	if (!disk)
		return 0;
	hk.dev = ((__u32)disk->major << 20) | (__u32)disk->first_minor;
	hk.op = op_of(rq->cmd_flags);

	h = bpf_map_lookup_elem(&hists, &hk);
	if (!h) {
		struct hist zero = {};

		bpf_map_update_elem(&hists, &hk, &zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, &hk);
		if (!h)
			return 0;
	}
	idx = slot_of(delta);
	// In asm so that clang, which knows idx <= 28, cannot drop the mask the verifier needs.
	asm volatile("%[idx] &= 31" : [idx] "+r"(idx));
	__sync_fetch_and_add(&h->slots[idx], 1);
	__sync_fetch_and_add(&h->sum_ns, delta);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
