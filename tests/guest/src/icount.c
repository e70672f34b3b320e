// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * icount: instructions retired on the whole machine while one command runs, split by exception level (the I/O
 * profile of docs/perf-io.md).
 *
 *   icount <program> [args...]
 *
 * Opens a group of three CPU-wide PERF_COUNT_HW_INSTRUCTIONS counters on every online CPU (pid -1, so interrupts, softirqs,
 * kworkers and the idle loop are counted, not only the command's own task): all levels (exclude_hv = 0: EL0 +
 * EL1 + EL2 when the kernel runs at EL1 under a hypervisor), without EL2 (exclude_hv = 1), and EL0 only; a
 * counter that was multiplexed (not counting the whole time) fails the run rather than give a partial count. Runs
 * <program> (an absolute path, empty environment) in a child (its output goes to stdout as usual), waits for it,
 * then prints one line:
 *
 *   @icount_io status=<child exit status> all=<n> el2=<all - noel2> el1=<noel2 - el0> el0=<n>
 *
 * QEMU's PMU counts instructions only under -icount (shift fixed); elsewhere perf_event_open fails (exit 3).
 * Boot with -smp 1 and nothing else running so the counts are the command's cost. Exit status 2 for bad usage, 3
 * if no counter can be opened, 4 if the command cannot be run or the counters read.
 *
 * Built by xtask with the cross compiler, freestanding (no libc): raw Linux syscalls only, from
 * tests/guest/include/freestanding.h.
 */
#include "../include/freestanding.h"

/* include/uapi/asm-generic/unistd.h (arm64): what freestanding.h does not define. */
#define SYS_close 57
#define SYS_read 63
#define SYS_clone 220
#define SYS_execve 221
#define SYS_wait4 260
#define SYS_perf_event_open 241
#define SIGCHLD 17

/* include/uapi/linux/perf_event.h */
#define PERF_TYPE_HARDWARE 0
#define PERF_COUNT_HW_INSTRUCTIONS 1
#define PERF_ATTR_SIZE_VER0 64
#define ATTR_DISABLED (1ULL << 0)
#define ATTR_EXCLUDE_KERNEL (1ULL << 5)
#define ATTR_EXCLUDE_HV (1ULL << 6)
#define READ_TIMES 3 /* PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING */
#define PERF_EVENT_IOC_ENABLE 0x2400
#define PERF_EVENT_IOC_DISABLE 0x2401

#define MAX_CPUS 8
#define KINDS 3 /* all levels, without EL2, EL0 only */

/* The first PERF_ATTR_SIZE_VER0 bytes of struct perf_event_attr. */
struct perf_attr {
	u32 type;
	u32 size;
	u64 config;
	u64 sample_period;
	u64 sample_type;
	u64 read_format;
	u64 flags; /* the bitfield: disabled, inherit, ..., exclude_user, exclude_kernel, exclude_hv, ... */
	u32 wakeup_events;
	u32 bp_type;
	u64 config1;
};

/* Formats @v in decimal after @s; returns the new end. */
static char *fmt_dec(char *s, u64 v)
{
	char tmp[21];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*s++ = tmp[--n];
	return s;
}

static char *put_str(char *s, const char *t)
{
	while (*t)
		*s++ = *t++;
	return s;
}

/*
 * Sums counter @kind over the opened CPUs. Clears @ok on a read failure or if a counter was not on the PMU the
 * whole time it was enabled (multiplexed: its count would cover only part of the run).
 */
static u64 sum(long fds[MAX_CPUS][KINDS], int ncpu, int kind, int *ok)
{
	u64 total = 0;
	int c;

	for (c = 0; c < ncpu; c++) {
		u64 v[3] = { 0 }; /* value, time enabled, time running */

		if (syscall6(SYS_read, fds[c][kind], (long)v, sizeof(v), 0, 0, 0) != (long)sizeof(v) || v[2] != v[1])
			*ok = 0;
		total += v[0];
	}
	return total;
}

__attribute__((used)) void start_c(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	char *envp[] = { 0 };
	long fds[MAX_CPUS][KINDS];
	int ncpu = 0, c, k, status = 0, ok = 1;
	long pid;
	u64 all, noel2, el0;
	char line[160], *e;

	if (argc < 2) {
		put("usage: icount <program> [args...]\n");
		quit(2);
	}
	/* Online CPUs are 0..n-1 on the virt machine; stop at the first that cannot be opened. */
	for (c = 0; c < MAX_CPUS; c++) {
		for (k = 0; k < KINDS; k++) {
			struct perf_attr a = { 0 };

			a.type = PERF_TYPE_HARDWARE;
			a.size = PERF_ATTR_SIZE_VER0;
			a.config = PERF_COUNT_HW_INSTRUCTIONS;
			a.read_format = READ_TIMES;
			/* One group per CPU (leader: all levels), so the three are always on the PMU together. */
			a.flags = (k == 0 ? ATTR_DISABLED : 0) | (k >= 1 ? ATTR_EXCLUDE_HV : 0) |
				  (k == 2 ? ATTR_EXCLUDE_KERNEL : 0);
			fds[c][k] = syscall6(SYS_perf_event_open, (long)&a, -1, c, k ? fds[c][0] : -1, 0, 0);
			if (fds[c][k] < 0)
				break;
		}
		if (k < KINDS) {
			while (k--)
				syscall6(SYS_close, fds[c][k], 0, 0, 0, 0, 0);
			break;
		}
		ncpu++;
	}
	if (!ncpu) {
		put("icount: no instruction counter (QEMU counts instructions only under -icount)\n");
		quit(3);
	}
	for (c = 0; c < ncpu; c++)
		syscall6(SYS_ioctl, fds[c][0], PERF_EVENT_IOC_ENABLE, 0, 0, 0, 0);
	pid = syscall6(SYS_clone, SIGCHLD, 0, 0, 0, 0, 0);
	if (pid == 0) {
		syscall6(SYS_execve, (long)argv[1], (long)(argv + 1), (long)envp, 0, 0, 0);
		put("icount: cannot run the command\n");
		quit(4);
	}
	if (pid < 0 || syscall6(SYS_wait4, pid, (long)&status, 0, 0, 0, 0) != pid) {
		put("icount: cannot run the command\n");
		quit(4);
	}
	for (c = 0; c < ncpu; c++)
		syscall6(SYS_ioctl, fds[c][0], PERF_EVENT_IOC_DISABLE, 0, 0, 0, 0);
	all = sum(fds, ncpu, 0, &ok);
	noel2 = sum(fds, ncpu, 1, &ok);
	el0 = sum(fds, ncpu, 2, &ok);
	if (!ok || noel2 > all || el0 > noel2) {
		put("icount: cannot read the counters\n");
		quit(4);
	}
	e = put_str(line, "@icount_io status=");
	e = fmt_dec(e, (u64)((status >> 8) & 0xff));
	e = put_str(e, " all=");
	e = fmt_dec(e, all);
	e = put_str(e, " el2=");
	e = fmt_dec(e, all - noel2);
	e = put_str(e, " el1=");
	e = fmt_dec(e, noel2 - el0);
	e = put_str(e, " el0=");
	e = fmt_dec(e, el0);
	e = put_str(e, "\n");
	*e = 0;
	put(line);
	quit(0);
}
