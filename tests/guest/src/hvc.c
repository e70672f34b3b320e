// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * hvc: raw SMCCC calls and donatable pages from a shell, through /dev/warden_hvc (tests/guest/modules/warden_hvc).
 *
 *   hvc <fid> [x1 .. x6]        one call; prints "x0=<x0 as signed decimal> x1=0x... x2=0x... x3=0x..."
 *   hvc alloc <count> [fill]    count (1..1024) contiguous host pages, every 64-bit word = fill (default 0);
 *                               prints "pa=0x..."; they stay allocated until "hvc free" or rmmod warden_hvc
 *   hvc free <pa>               reclaims (if donated) and frees the allocation starting at pa
 *   hvc nonzero <pa> <count>    prints "nonzero=<n>": 64-bit words that are not 0 in count pages from pa
 *                               (pages of an allocation the host owns: never a donated page)
 *
 * Numbers are hex with 0x or decimal. The output is meant for `eval "$(hvc ...)"` in scripts. Exit status 0
 * when the ioctl worked (whatever x0 says), 2 for bad usage, 3 when the device or the ioctl fails.
 * Built freestanding (no libc): raw Linux syscalls only, from tests/guest/include/freestanding.h.
 */
#include "../include/freestanding.h"
#include "../modules/warden_hvc/warden_hvc.h"

/* Parses hex (0x prefix) or decimal; returns 0 on bad input or overflow. */
static int parse(const char *s, u64 *out)
{
	u64 v = 0;
	int base = 10, n = 0;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	for (; *s; s++, n++) {
		int d;

		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			return 0;
		if (v > (~0ULL - (u64)d) / (u64)base)
			return 0;
		v = v * (u64)base + (u64)d;
	}
	if (n == 0)
		return 0;
	*out = v;
	return 1;
}

static void put_hex(u64 v)
{
	char buf[19];
	int i, start = 17;

	for (i = 0; i < 16; i++) {
		buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 0xf];
		if (buf[2 + i] != '0' && start == 17)
			start = 2 + i;
	}
	buf[start - 2] = '0';
	buf[start - 1] = 'x';
	buf[18] = 0;
	put(buf + start - 2);
}

/* Writes @v to stdout in signed decimal. */
static void put_sdec(long v)
{
	if (v < 0)
		put("-");
	put_dec(v < 0 ? -(u64)v : (u64)v);
}

static __attribute__((noreturn)) void usage(void)
{
	put("usage: hvc <fid> [x1 .. x6] | hvc alloc <count> [fill] | hvc free <pa> | hvc nonzero <pa> <count>\n");
	quit(2);
}

static long dev_ioctl(unsigned long cmd, void *arg)
{
	long fd = open_rdwr("/dev/warden_hvc");
	long r;

	if (fd < 0) {
		put("hvc: cannot open /dev/warden_hvc (is warden_hvc.ko loaded?)\n");
		quit(3);
	}
	r = syscall6(SYS_ioctl, fd, (long)cmd, (long)arg, 0, 0, 0);
	if (r < 0) {
		put("hvc: ioctl failed: errno ");
		put_sdec(-r);
		put("\n");
		quit(3);
	}
	return r;
}

__attribute__((used)) void start_c(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	long i;

	if (argc < 2)
		usage();
	if (streq(argv[1], "alloc") || streq(argv[1], "free") || streq(argv[1], "nonzero")) {
		struct warden_hvc_pages p = { 0, 0, 0 };

		if (streq(argv[1], "alloc")) {
			if (argc < 3 || argc > 4 || !parse(argv[2], &p.count) || (argc == 4 && !parse(argv[3], &p.fill)))
				usage();
			dev_ioctl(WARDEN_HVC_ALLOC, &p);
			put("pa=");
			put_hex(p.pa);
		} else if (streq(argv[1], "free")) {
			if (argc != 3 || !parse(argv[2], &p.pa))
				usage();
			dev_ioctl(WARDEN_HVC_FREE, &p);
			put("freed=");
			put_hex(p.pa);
		} else {
			if (argc != 4 || !parse(argv[2], &p.pa) || !parse(argv[3], &p.count))
				usage();
			dev_ioctl(WARDEN_HVC_NONZERO, &p);
			put("nonzero=");
			put_sdec((long)p.fill);
		}
		put("\n");
		quit(0);
	} else {
		struct warden_hvc_call c;

		if (argc > 8 || !parse(argv[1], &c.fid))
			usage();
		for (i = 0; i < 6; i++) {
			c.x[i] = 0;
			if (i + 2 < argc && !parse(argv[i + 2], &c.x[i]))
				usage();
		}
		dev_ioctl(WARDEN_HVC_CALL, &c);
		for (i = 0; i < 4; i++) {
			put(i ? " x" : "x");
			put_sdec(i);
			put("=");
			if (i == 0)
				put_sdec((long)c.ret[0]);
			else
				put_hex(c.ret[i]);
		}
		put("\n");
		quit(0);
	}
}
