// SPDX-License-Identifier: GPL-2.0
/*
 * warden_bench: a DMA API map/unmap microbenchmark with the semantics of Linux's dma_map_benchmark (which the
 * guest kernel is built without). Everything happens at insmod; one line per result goes to the kernel log:
 *
 *   insmod warden_bench.ko [dev=0000:00:03.0] [threads=1] [size=4096] [sg=0] [duration_ms=1000]
 *   -> "warden_bench: result op=map threads=1 size=4096 sg=0 calls=N mean_ns=.. p50_ns=.. p99_ns=.. ops_per_s=.."
 *      and the same for op=unmap; then rmmod warden_bench.
 *
 * With devs=A,B,..: thread i maps through device i % (number listed) instead (each a PCI device bound to a
 * driver, so, under the shim, each in its own DMA domain): CPUs mapping in different domains.
 *
 * dev: a PCI device bound to a driver (default: the first NVMe controller). Each of `threads` kernel threads
 * owns its buffers and loops, for `duration_ms`, dma_map_single + dma_unmap_single of one `size`-byte buffer
 * (DMA_BIDIRECTIONAL), or with sg=1 dma_map_sg + dma_unmap_sg of a 16-entry scatterlist whose entries are 16
 * separate `size`-byte buffers. Each call is timed with ktime_get_ns(); means are over every call, p50/p99 over a
 * per-thread reservoir sample of up to WB_SAMPLES calls. ops_per_s counts map+unmap pairs of all threads.
 *
 * Instruction counts (for a QEMU run with -icount shift=0, whose PMU counts INST_RETIRED exactly):
 *
 *   insmod warden_bench.ko icount_calls=N [size=..] [sg=..] [threads=1] [dev=..|devs=..]
 *   -> "warden_bench: icount op=map size=4096 sg=0 calls=N instr=.. instr_nohv=.. ns=.. thread=0 threads=1
 *      repeats=3 instr_all=.. instr_nohv_all=.. ns_all=.." and the same for op=unmap
 *
 * With threads=1, in insmod's own context: N maps (of the same buffer, or N 16-entry scatterlists over the same
 * 16 buffers) and then their N unmaps, each phase bracketed by reads of two task-bound PERF_COUNT_HW_INSTRUCTIONS
 * counters: one with exclude_hv = 0 (instr: EL1 and, under a hypervisor at EL2, EL2 too), one with exclude_hv = 1
 * (instr_nohv: EL1 only). The cost of the reads themselves is measured by an empty phase and subtracted. The
 * phases repeat WB_IC_REPEAT times; each count is the minimum over the repeats (so an interrupt that landed in
 * one repeat does not count). ns: the same phases' ktime_get_ns() difference, likewise; under -icount shift=0
 * virtual time advances 1 ns per instruction of any exception level, so it is an independent check of instr.
 * instr_all, instr_nohv_all, ns_all: the same over all `repeats` repeats together (interrupts and waits included).
 * The module fails to load if the counters cannot be created or were not counting all the time (multiplexed).
 *
 * With threads=T (and devs=.. as above), T kernel threads, thread i bound to CPU i % (online CPUs), run the
 * same phases with their own task-bound counters, all at once: a spin barrier before every phase's first read
 * and after its last call, so every phase spans all threads' calls of that phase. Each thread prints its lines
 * with "thread=i threads=T" appended. Under QEMU (-icount runs the vCPUs round-robin) the PMU's instruction
 * count is the machine-wide icount, not the vCPU's own: with T > 1, instr and ns are every vCPU's instructions
 * over the phase (T threads' N calls each: per call, divide by T * N; lock and command-queue waits included),
 * and the exclude_hv split is not the thread's own EL2 part (it follows the counting vCPU's exception level).
 * What is exact is the span of all threads' calls of a phase, from the first thread's start to the last one's
 * end (each thread's ktime after the barriers), minimum over the repeats, less the empty phase's: printed as
 *   "warden_bench: icount-all op=map size=4096 sg=0 calls=T*N threads=T ns=.." and the same for op=unmap
 * (under -icount shift=0, every vCPU's EL1 and EL2 instructions over those T * N calls, waits included).
 *
 * The floor every per-call cost sits on, a null hypercall (under the Warden hypervisor only):
 *
 *   insmod warden_bench.ko null=1 [threads=1] [duration_ms=..]   or   insmod warden_bench.ko null=1 icount_calls=N
 *   -> "warden_bench: result op=null threads=1 size=0 sg=0 calls=N mean_ns=.." / "warden_bench: icount op=null ..."
 *
 * The call is Warden's VERSION (the cheapest call of the ABI: it reads no memory and takes no lock), issued
 * through arm_smccc_1_1_invoke as the shim issues every call: the round trip is the trap to EL2, the SMCCC
 * decode, the dispatch and the return. No device is used. The module first checks the vendor-hyp Call UID and
 * refuses to load (-ENODEV) when the hypervisor is not Warden (natively there is no hypercall to time).
 */
#define pr_fmt(fmt) "warden_bench: " fmt

#include <linux/arm-smccc.h>
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/perf_event.h>
#include <linux/random.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/timekeeping.h>
#include <linux/vmalloc.h>

#include "warden_abi.h"

#define WB_MAX_THREADS 8
#define WB_SG_NENTS 16
#define WB_SAMPLES 32768
#define WB_MAX_SIZE (2UL << 20)
#define WB_IC_MAX_CALLS 1024
#define WB_IC_REPEAT 3

static char *dev;
module_param(dev, charp, 0444);
MODULE_PARM_DESC(dev, "PCI device (e.g. 0000:00:03.0) bound to a driver; default: the first NVMe controller");
static char *devs[WB_MAX_THREADS];
static int ndevs;
module_param_array(devs, charp, &ndevs, 0444);
MODULE_PARM_DESC(devs, "PCI devices bound to drivers; thread i maps through devs[i % count] (overrides dev)");
static int threads = 1;
module_param(threads, int, 0444);
MODULE_PARM_DESC(threads, "number of threads (1..8)");
static unsigned long size = 4096;
module_param(size, ulong, 0444);
MODULE_PARM_DESC(size, "buffer size in bytes (4096..2097152, a multiple of 4096)");
static int sg;
module_param(sg, int, 0444);
MODULE_PARM_DESC(sg, "1: dma_map_sg of 16 entries of `size` bytes each instead of dma_map_single");
static int duration_ms = 1000;
module_param(duration_ms, int, 0444);
MODULE_PARM_DESC(duration_ms, "how long each thread loops (10..60000 ms)");
static int icount_calls;
module_param(icount_calls, int, 0444);
MODULE_PARM_DESC(icount_calls, "1..1024: count instructions per map and unmap over this many calls instead of timing");
static int null;
module_param(null, int, 0444);
MODULE_PARM_DESC(null, "1: time a null hypercall (Warden's VERSION) instead of map/unmap (size, sg, dev unused)");

/* One operation's timings in one thread. */
struct wb_op {
	u64 calls;
	u64 total_ns;
	u32 *samples;	/* reservoir of up to WB_SAMPLES call times */
	u32 nsamples;
};

struct wb_thread {
	int index;
	struct device *dev;
	void *bufs[WB_SG_NENTS];
	unsigned int order;
	u64 deadline;
	int err;
	struct wb_op map, unmap;
	struct completion done;
};

/*
 * icount_calls with threads > 1: how many barriers the threads have reached (all together), how many threads
 * there are, and whether one failed (then nobody waits for it).
 */
static atomic_t wb_ic_arrived = ATOMIC_INIT(0);
static atomic_t wb_ic_failed = ATOMIC_INIT(0);
static int wb_ic_threads = 1;
/* Each thread's ktime after its start barrier and after its end barrier, per repeat and phase (threads > 1). */
static u64 wb_ic_start[WB_MAX_THREADS][WB_IC_REPEAT][3], wb_ic_end[WB_MAX_THREADS][WB_IC_REPEAT][3];

static int wb_icount(struct device *d, void **bufs, int t, int nt);

static void wb_record(struct wb_op *op, u64 ns)
{
	u32 v = ns > U32_MAX ? U32_MAX : (u32)ns;

	op->calls++;
	op->total_ns += ns;
	if (op->nsamples < WB_SAMPLES) {
		op->samples[op->nsamples++] = v;
	} else {
		/* Reservoir sampling: every call has the same chance to be in the sample. */
		u64 j = get_random_u64() % op->calls;

		if (j < WB_SAMPLES)
			op->samples[j] = v;
	}
}

static int wb_loop_single(struct wb_thread *t)
{
	while (ktime_get_ns() < t->deadline) {
		u64 t0, t1, t2;
		dma_addr_t a;

		t0 = ktime_get_ns();
		a = dma_map_single(t->dev, t->bufs[0], size, DMA_BIDIRECTIONAL);
		t1 = ktime_get_ns();
		if (dma_mapping_error(t->dev, a))
			return -ENOMEM;
		dma_unmap_single(t->dev, a, size, DMA_BIDIRECTIONAL);
		t2 = ktime_get_ns();
		wb_record(&t->map, t1 - t0);
		wb_record(&t->unmap, t2 - t1);
		cond_resched();
	}
	return 0;
}

static int wb_loop_sg(struct wb_thread *t)
{
	struct scatterlist sgl[WB_SG_NENTS];
	int i;

	sg_init_table(sgl, WB_SG_NENTS);
	for (i = 0; i < WB_SG_NENTS; i++)
		sg_set_buf(&sgl[i], t->bufs[i], size);
	while (ktime_get_ns() < t->deadline) {
		u64 t0, t1, t2;
		int n;

		t0 = ktime_get_ns();
		n = dma_map_sg(t->dev, sgl, WB_SG_NENTS, DMA_BIDIRECTIONAL);
		t1 = ktime_get_ns();
		if (n <= 0)
			return -ENOMEM;
		dma_unmap_sg(t->dev, sgl, WB_SG_NENTS, DMA_BIDIRECTIONAL);
		t2 = ktime_get_ns();
		wb_record(&t->map, t1 - t0);
		wb_record(&t->unmap, t2 - t1);
		cond_resched();
	}
	return 0;
}

/* One null hypercall: Warden's VERSION, which only returns constants. */
static void wb_null_call(void)
{
	struct arm_smccc_res res;

	arm_smccc_1_1_invoke(WARDEN_FID_VERSION, &res);
}

/* The null=1 loop: each call's time goes to t->map (reported as op=null). */
static int wb_loop_null(struct wb_thread *t)
{
	while (ktime_get_ns() < t->deadline) {
		u64 t0, t1;

		t0 = ktime_get_ns();
		wb_null_call();
		t1 = ktime_get_ns();
		wb_record(&t->map, t1 - t0);
		cond_resched();
	}
	return 0;
}

static int wb_thread_fn(void *arg)
{
	struct wb_thread *t = arg;

	if (icount_calls)
		t->err = wb_icount(t->dev, t->bufs, t->index, wb_ic_threads);
	else if (null)
		t->err = wb_loop_null(t);
	else
		t->err = sg ? wb_loop_sg(t) : wb_loop_single(t);
	complete(&t->done);
	return 0;
}

static int wb_cmp_u32(const void *a, const void *b)
{
	u32 x = *(const u32 *)a, y = *(const u32 *)b;

	return x < y ? -1 : x > y;
}

/* Merges the threads' samples of one operation (@name "unmap": t->unmap, else t->map), prints the result line. */
static void wb_report(const char *name, struct wb_thread *ts, int n, u64 elapsed_ns)
{
	u64 calls = 0, total = 0, pairs_per_s;
	u32 *all, count = 0, p50 = 0, p99 = 0;
	int i;

	for (i = 0; i < n; i++) {
		struct wb_op *op = strcmp(name, "unmap") ? &ts[i].map : &ts[i].unmap;

		calls += op->calls;
		total += op->total_ns;
	}
	all = vmalloc(array_size(n, WB_SAMPLES * sizeof(u32)));
	if (all) {
		for (i = 0; i < n; i++) {
			struct wb_op *op = strcmp(name, "unmap") ? &ts[i].map : &ts[i].unmap;

			memcpy(all + count, op->samples, op->nsamples * sizeof(u32));
			count += op->nsamples;
		}
		sort(all, count, sizeof(u32), wb_cmp_u32, NULL);
		if (count) {
			p50 = all[(count - 1) / 2];
			p99 = all[div_u64((u64)(count - 1) * 99, 100)];
		}
		vfree(all);
	}
	pairs_per_s = elapsed_ns ? div64_u64(calls * NSEC_PER_SEC, elapsed_ns) : 0;
	pr_info("result op=%s threads=%d size=%lu sg=%d calls=%llu mean_ns=%llu p50_ns=%u p99_ns=%u ops_per_s=%llu\n",
		name, n, null ? 0 : size, null ? 0 : sg, calls, calls ? div64_u64(total, calls) : 0, p50, p99, pairs_per_s);
}

/* A task-bound instruction counter on the current task, counting EL1 and (unless @exclude_hv) EL2. */
static struct perf_event *wb_counter(bool exclude_hv)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_HARDWARE,
		.config = PERF_COUNT_HW_INSTRUCTIONS,
		.size = sizeof(attr),
		.pinned = 1,
		.exclude_user = 1,
		.exclude_hv = exclude_hv,
	};

	return perf_event_create_kernel_counter(&attr, -1, current, NULL, NULL);
}

/* Both counters' values; false if either was not counting the whole time. */
static bool wb_read(struct perf_event *ev[2], u64 v[2])
{
	int i;

	for (i = 0; i < 2; i++) {
		u64 enabled, running;

		v[i] = perf_event_read_value(ev[i], &enabled, &running);
		if (enabled != running)
			return false;
	}
	return true;
}

/*
 * One phase of @n maps (@map true) or unmaps; @addrs holds the dma_map_single addresses, @sgls the n 16-entry
 * scatterlists. n = 0 is the empty phase. Returns 0, or -ENOMEM if a map failed (what was mapped is unmapped).
 */
static int wb_ic_phase(struct device *d, void **bufs, bool map, int n, dma_addr_t *addrs, struct scatterlist *sgls)
{
	int i;

	if (null) {
		/* Both non-empty phases are n null calls; only the first is reported. */
		for (i = 0; i < n; i++)
			wb_null_call();
		return 0;
	}
	for (i = 0; i < n; i++) {
		struct scatterlist *sgl = sgls + i * WB_SG_NENTS;

		if (map && sg) {
			if (dma_map_sg(d, sgl, WB_SG_NENTS, DMA_BIDIRECTIONAL) <= 0)
				goto undo;
		} else if (map) {
			addrs[i] = dma_map_single(d, bufs[0], size, DMA_BIDIRECTIONAL);
			if (dma_mapping_error(d, addrs[i]))
				goto undo;
		} else if (sg) {
			dma_unmap_sg(d, sgl, WB_SG_NENTS, DMA_BIDIRECTIONAL);
		} else {
			dma_unmap_single(d, addrs[i], size, DMA_BIDIRECTIONAL);
		}
	}
	return 0;
undo:
	while (--i >= 0) {
		if (sg)
			dma_unmap_sg(d, sgls + i * WB_SG_NENTS, WB_SG_NENTS, DMA_BIDIRECTIONAL);
		else
			dma_unmap_single(d, addrs[i], size, DMA_BIDIRECTIONAL);
	}
	return -ENOMEM;
}

/* Waits until every icount thread has reached its @n-th barrier (from 1), or one failed (no-op with one thread). */
static void wb_ic_barrier(int n)
{
	atomic_inc(&wb_ic_arrived);
	while (atomic_read(&wb_ic_arrived) < n * wb_ic_threads && !atomic_read(&wb_ic_failed))
		cpu_relax();
}

/* The icount_calls mode (see the top of this file), in thread @t of @nt. */
static int wb_icount(struct device *d, void **bufs, int t, int nt)
{
	struct perf_event *ev[2] = { NULL, NULL };
	struct scatterlist *sgls = NULL;
	dma_addr_t *addrs;
	u64 best[3][3], sum[3][3] = { { 0 } }, a[3], b[3];
	int i, j, k, phase, err = 0, barriers = 0;
	bool mapped = false;

	addrs = kcalloc(icount_calls, sizeof(*addrs), GFP_KERNEL);
	if (sg)
		sgls = kcalloc(array_size(icount_calls, WB_SG_NENTS), sizeof(*sgls), GFP_KERNEL);
	if (!addrs || (sg && !sgls)) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; sg && i < icount_calls; i++) {
		sg_init_table(sgls + i * WB_SG_NENTS, WB_SG_NENTS);
		for (j = 0; j < WB_SG_NENTS; j++)
			sg_set_buf(sgls + i * WB_SG_NENTS + j, bufs[j], size);
	}
	for (i = 0; i < 2; i++) {
		ev[i] = wb_counter(i == 1);
		if (IS_ERR(ev[i])) {
			err = PTR_ERR(ev[i]);
			ev[i] = NULL;
			pr_err("no instruction counter (exclude_hv=%d): %d\n", i, err);
			goto out;
		}
	}
	/* best[phase][counter] (minimum), sum[..] (over all repeats): phase 0 empty, 1 map, 2 unmap; counter 2 is ktime. */
	memset(best, 0xff, sizeof(best));
	for (k = 0; k < WB_IC_REPEAT && !err; k++) {
		for (phase = 0; phase < 3 && !err; phase++) {
			bool ok;

			wb_ic_barrier(++barriers);
			ok = wb_read(ev, a);

			a[2] = ktime_get_ns();

			err = wb_ic_phase(d, bufs, phase == 1, phase ? icount_calls : 0, addrs, sgls);
			if (err) {
				pr_err("a map failed\n");
				break;
			}
			mapped = phase == 1;
			wb_ic_barrier(++barriers);
			b[2] = ktime_get_ns();
			ok = wb_read(ev, b) && ok;
			if (!ok) {
				pr_err("the instruction counters were not counting all the time (multiplexed)\n");
				err = -EBUSY;
				break;
			}
			wb_ic_start[t][k][phase] = a[2];
			wb_ic_end[t][k][phase] = b[2];
			for (i = 0; i < 3; i++) {
				best[phase][i] = min(best[phase][i], b[i] - a[i]);
				sum[phase][i] += b[i] - a[i];
			}
		}
	}
	if (mapped)
		wb_ic_phase(d, bufs, false, icount_calls, addrs, sgls);
	for (phase = 1; phase < (null ? 2 : 3) && !err; phase++)
		pr_info("icount op=%s size=%lu sg=%d calls=%d instr=%llu instr_nohv=%llu ns=%llu thread=%d threads=%d "
			"repeats=%d instr_all=%llu instr_nohv_all=%llu ns_all=%llu\n",
			null ? "null" : phase == 1 ? "map" : "unmap", null ? 0 : size, null ? 0 : sg, icount_calls, best[phase][0] - best[0][0],
			best[phase][1] - best[0][1], best[phase][2] - best[0][2], t, nt, WB_IC_REPEAT,
			sum[phase][0] - sum[0][0], sum[phase][1] - sum[0][1], sum[phase][2] - sum[0][2]);
out:
	if (err)
		atomic_set(&wb_ic_failed, 1);
	for (i = 0; i < 2; i++)
		if (ev[i])
			perf_event_release_kernel(ev[i]);
	kfree(sgls);
	kfree(addrs);
	return err;
}

/*
 * threads > 1: the phases' span over all threads (the last thread's end minus the first thread's start, the
 * minimum over the repeats, less the empty phase's), in machine-wide -icount time: under shift=0 every
 * instruction of every vCPU, so the EL1 + EL2 instructions of all threads' calls, their waits included.
 */
static void wb_ic_report_all(int nt)
{
	u64 best[3];
	int t, k, phase;

	for (phase = 0; phase < 3; phase++) {
		best[phase] = U64_MAX;
		for (k = 0; k < WB_IC_REPEAT; k++) {
			u64 first = U64_MAX, last = 0;

			for (t = 0; t < nt; t++) {
				first = min(first, wb_ic_start[t][k][phase]);
				last = max(last, wb_ic_end[t][k][phase]);
			}
			best[phase] = min(best[phase], last - first);
		}
	}
	for (phase = 1; phase < (null ? 2 : 3); phase++)
		pr_info("icount-all op=%s size=%lu sg=%d calls=%d threads=%d ns=%llu\n",
			null ? "null" : phase == 1 ? "map" : "unmap", null ? 0 : size, null ? 0 : sg,
			icount_calls * nt, nt, best[phase] - best[0]);
}

static struct device *wb_find_device(void)
{
	struct pci_dev *pdev = NULL;

	if (dev && *dev) {
		struct device *d = bus_find_device_by_name(&pci_bus_type, NULL, dev);

		return d;
	}
	/* The first NVMe controller (class 01:08:02). */
	pdev = pci_get_class(PCI_CLASS_STORAGE_EXPRESS, NULL);
	return pdev ? &pdev->dev : NULL;
}

/* Whether the hypervisor answering SMCCC vendor-hyp calls is Warden (its Call UID, docs/abi.md). */
static bool wb_under_warden(void)
{
	struct arm_smccc_res res;

	if (arm_smccc_1_1_get_conduit() == SMCCC_CONDUIT_NONE)
		return false;
	arm_smccc_1_1_invoke(WARDEN_SMCCC_VENDOR_HYP_CALL_UID, &res);
	return (u32)res.a0 == WARDEN_UUID_W0 && (u32)res.a1 == WARDEN_UUID_W1 && (u32)res.a2 == WARDEN_UUID_W2 &&
	       (u32)res.a3 == WARDEN_UUID_W3;
}

static int __init warden_bench_init(void)
{
	struct wb_thread *ts;
	struct device *d = NULL, *tdevs[WB_MAX_THREADS] = { NULL };
	unsigned int order, nbufs = null ? 0 : sg ? WB_SG_NENTS : 1;
	u64 start, end;
	int i, j, nt, err = 0;

	if (threads < 1 || threads > WB_MAX_THREADS || size < PAGE_SIZE || size > WB_MAX_SIZE ||
	    size % PAGE_SIZE || duration_ms < 10 || duration_ms > 60000 || icount_calls < 0 ||
	    icount_calls > WB_IC_MAX_CALLS) {
		pr_err("bad parameters (threads 1..%d, size 4096..2097152 in pages, duration_ms 10..60000, "
		       "icount_calls 0..%d)\n", WB_MAX_THREADS, WB_IC_MAX_CALLS);
		return -EINVAL;
	}
	if (null && !wb_under_warden()) {
		pr_err("null=1: not running under the Warden hypervisor (no vendor-hyp call to time)\n");
		return -ENODEV;
	}
	if (!null)
		d = wb_find_device();
	if (!null && !d) {
		pr_err("no such PCI device (%s)\n", dev && *dev ? dev : "first NVMe controller");
		return -ENODEV;
	}
	if (!null && !d->driver) {
		pr_err("%s has no driver bound: its DMA is not set up\n", dev_name(d));
		put_device(d);
		return -ENODEV;
	}
	/*
	 * A scatterlist's segments are separate pages in real I/O. Buffers from consecutive alloc_pages() calls are
	 * often physically adjacent, and iommu_map_sg() merges adjacent segments into one mapping, so the number of
	 * map operations per dma_map_sg would depend on the allocator's luck: each sg segment gets a block of twice
	 * its size and uses the first half, so no two segments are ever adjacent.
	 */
	order = get_order(size) + (sg ? 1 : 0);
	nt = threads;
	ts = kcalloc(nt, sizeof(*ts), GFP_KERNEL);
	if (!ts) {
		put_device(d);
		return -ENOMEM;
	}
	for (i = 0; i < ndevs && !null && !err; i++) {
		tdevs[i] = bus_find_device_by_name(&pci_bus_type, NULL, devs[i]);
		if (!tdevs[i] || !tdevs[i]->driver) {
			pr_err("devs: %s is no PCI device with a driver bound\n", devs[i]);
			err = -ENODEV;
		}
	}
	for (i = 0; i < nt && !err; i++) {
		ts[i].index = i;
		ts[i].dev = ndevs && !null ? tdevs[i % ndevs] : d;
		ts[i].order = order;
		init_completion(&ts[i].done);
		ts[i].map.samples = vmalloc(WB_SAMPLES * sizeof(u32));
		ts[i].unmap.samples = vmalloc(WB_SAMPLES * sizeof(u32));
		if (!ts[i].map.samples || !ts[i].unmap.samples)
			err = -ENOMEM;
		for (j = 0; j < nbufs && !err; j++) {
			struct page *p = alloc_pages(GFP_KERNEL, order);

			if (!p)
				err = -ENOMEM;
			else
				ts[i].bufs[j] = page_address(p);
		}
	}
	if (err) {
		if (err == -ENOMEM)
			pr_err("out of memory for %d threads of %lu-byte buffers\n", nt, size);
		goto out;
	}
	if (null)
		pr_info("null hypercall (VERSION), %d threads, %d ms or %d calls\n", nt, duration_ms, icount_calls);
	if (icount_calls && !null)
		pr_info("device %s (driver %s), size %lu, sg %d, instructions over %d calls, %d threads, %d devices\n",
			dev_name(d), d->driver->name, size, sg, icount_calls, nt, ndevs ? ndevs : 1);
	if (icount_calls && nt == 1) {
		err = wb_icount(ts[0].dev, ts[0].bufs, 0, 1);
		goto out;
	}
	wb_ic_threads = nt;
	if (!null && !icount_calls)
		pr_info("device %s (driver %s), %d threads, size %lu, sg %d, %d ms, %d devices\n", dev_name(d),
			d->driver->name, nt, size, sg, duration_ms, ndevs ? ndevs : 1);
	start = ktime_get_ns();
	for (i = 0; i < nt; i++) {
		struct task_struct *task;

		ts[i].deadline = start + (u64)duration_ms * NSEC_PER_MSEC;
		task = kthread_create(wb_thread_fn, &ts[i], "warden_bench/%d", i);
		if (IS_ERR(task)) {
			ts[i].err = PTR_ERR(task);
			atomic_set(&wb_ic_failed, 1);
			complete(&ts[i].done);
			continue;
		}
		/* icount threads each on their own CPU (as far as there are CPUs), so that they run at once. */
		if (icount_calls)
			kthread_bind(task, i % num_online_cpus());
		wake_up_process(task);
	}
	for (i = 0; i < nt; i++) {
		wait_for_completion(&ts[i].done);
		if (ts[i].err && !err)
			err = ts[i].err;
	}
	end = ktime_get_ns();
	if (err) {
		pr_err("a thread failed: %d (mapping error or no thread)\n", err);
		goto out;
	}
	/* icount threads printed their own lines; then the span of all threads' calls. */
	if (icount_calls) {
		wb_ic_report_all(nt);
	} else if (null) {
		wb_report("null", ts, nt, end - start);
	} else if (!icount_calls) {
		wb_report("map", ts, nt, end - start);
		wb_report("unmap", ts, nt, end - start);
	}
out:
	for (i = 0; i < nt; i++) {
		for (j = 0; j < nbufs; j++)
			if (ts[i].bufs[j])
				free_pages((unsigned long)ts[i].bufs[j], order);
		vfree(ts[i].map.samples);
		vfree(ts[i].unmap.samples);
	}
	kfree(ts);
	for (i = 0; i < ndevs; i++)
		if (tdevs[i])
			put_device(tdevs[i]);
	put_device(d);
	return err;
}

static void __exit warden_bench_exit(void)
{
}

module_init(warden_bench_init);
module_exit(warden_bench_exit);
MODULE_DESCRIPTION("Warden benchmark: dma_map_single/dma_map_sg map and unmap cost per call");
MODULE_LICENSE("GPL");
