// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * dio: timed O_DIRECT block I/O on a disk, sequential or at random aligned offsets (the I/O workloads of
 * `cargo xtask bench`, tests/bench/guest.sh).
 *
 *   dio <device> <read|write> <seq|rand> <block-size> <count> <max-ms> [span-bytes]
 *
 * Issues up to <count> pread64/pwrite64 calls of <block-size> bytes (a multiple of 4096) on <device> opened with
 * O_DIRECT, one at a time, from one page-aligned buffer. seq: block i at offset i * block-size (wrapping at the
 * span); rand: each offset a xorshift64 draw (fixed seed, so every run issues the same offsets) over the
 * span's whole blocks. The span is the first [span-bytes] of the device (default and upper bound: its size).
 * Stops early once <max-ms> have passed (checked every 8 calls), so a slow configuration cannot stall the run.
 * Time is CLOCK_MONOTONIC around the whole loop. Prints one line:
 *
 *   @dio ops=<calls done> bytes=<bytes moved> ns=<elapsed ns>
 *
 * Exit status 2 for bad usage, 3 if the device cannot be opened, sized or the buffer mapped, 4 on an I/O error or
 * short transfer.
 *
 * Built by xtask with the cross compiler, freestanding (no libc): raw Linux syscalls only, from
 * tests/guest/include/freestanding.h.
 */
#include "../include/freestanding.h"

/* include/uapi/asm-generic/unistd.h (arm64) and fcntl.h: what freestanding.h does not define. */
#define SYS_lseek 62
#define SYS_clock_gettime 113
#define O_DIRECT 0200000 /* arm64's value (x86's is 040000) */
#define SEEK_END 2
#define CLOCK_MONOTONIC 1

struct timespec_ {
	long tv_sec;
	long tv_nsec;
};

static u64 now_ns(void)
{
	struct timespec_ ts;

	syscall6(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&ts, 0, 0, 0, 0);
	return (u64)ts.tv_sec * 1000000000ULL + (u64)ts.tv_nsec;
}

/* Parses a decimal number; returns 0 on bad input. */
static int parse_dec(const char *s, u64 *out)
{
	u64 v = 0;

	if (!*s || len(s) > 19)
		return 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return 0;
		v = v * 10 + (u64)(*s - '0');
	}
	*out = v;
	return 1;
}

__attribute__((used)) void start_c(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	u64 bs, count, max_ms, span = 0, blocks, ops, deadline, t0, t1, x = 0x9e3779b97f4a7c15ULL;
	long fd, size, buf;
	int write, rand;

	if (argc < 7 || argc > 8 || !(streq(argv[2], "read") || streq(argv[2], "write")) ||
	    !(streq(argv[3], "seq") || streq(argv[3], "rand")) || !parse_dec(argv[4], &bs) || !bs ||
	    bs % PAGE_SIZE || bs > (64UL << 20) || !parse_dec(argv[5], &count) || !parse_dec(argv[6], &max_ms) ||
	    (argc == 8 && !parse_dec(argv[7], &span))) {
		put("usage: dio <device> <read|write> <seq|rand> <block-size, multiple of 4096> <count> <max-ms> "
		    "[span-bytes]\n");
		quit(2);
	}
	write = streq(argv[2], "write");
	rand = streq(argv[3], "rand");
	fd = syscall6(SYS_openat, AT_FDCWD, (long)argv[1], O_RDWR | O_DIRECT, 0, 0, 0);
	if (fd < 0) {
		put("dio: cannot open the device with O_DIRECT\n");
		quit(3);
	}
	size = syscall6(SYS_lseek, fd, 0, SEEK_END, 0, 0, 0);
	if (size <= 0) {
		put("dio: cannot size the device\n");
		quit(3);
	}
	if (!span || span > (u64)size)
		span = (u64)size;
	blocks = span / bs;
	if (!blocks) {
		put("dio: the span holds no whole block\n");
		quit(2);
	}
	buf = syscall6(SYS_mmap, 0, (long)bs, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (is_err(buf)) {
		put("dio: mmap failed\n");
		quit(3);
	}
	/* Touch every page (and give writes a recognisable pattern) before timing. */
	for (u64 i = 0; i < bs; i += 8)
		*(volatile u64 *)(buf + i) = 0x64696f2d64696f2dULL ^ i;
	t0 = now_ns();
	deadline = t0 + max_ms * 1000000ULL;
	for (ops = 0; ops < count; ops++) {
		u64 blk;
		long r;

		if (rand) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			blk = x % blocks;
		} else {
			blk = ops % blocks;
		}
		r = syscall6(write ? SYS_pwrite64 : SYS_pread64, fd, buf, (long)bs, (long)(blk * bs), 0, 0);
		if (r != (long)bs) {
			put("dio: I/O error or short transfer at block ");
			put_dec(blk);
			put("\n");
			quit(4);
		}
		if ((ops & 7) == 7 && now_ns() >= deadline) {
			ops++;
			break;
		}
	}
	t1 = now_ns();
	put("@dio ops=");
	put_dec(ops);
	put(" bytes=");
	put_dec(ops * bs);
	put(" ns=");
	put_dec(t1 - t0);
	put("\n");
	quit(0);
}
