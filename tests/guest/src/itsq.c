// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * itsq: a hostile host appending commands to Linux's own GICv3 ITS command queue, through /dev/warden_probe
 * (tests/guest/modules/warden_probe). For the adversarial GIC tests (tests/qemu/adv_gic_its.sh).
 *
 *   itsq <its-base> cmd D0 D1 D2 D3 [D0 D1 D2 D3 ...]
 *       reads the host view of GITS_CBASER and GITS_CWRITER, writes the commands (4 doublewords each) at
 *       CWRITER in the queue, advances GITS_CWRITER past them and waits for GITS_CREADR to get there.
 *   itsq <its-base> race ROUNDS G0 G1 G2 G3 B0 B1 B2 B3
 *       ROUNDS times: writes command G at CWRITER and publishes it, while a child process (on the other CPU
 *       if it can) rewrites the same slot with command B from the moment of the CWRITER write on.
 *
 * Afterwards both modes pad the queue with SYNCs (to processor 0) until CWRITER is back where it started,
 * in batches the ITS consumes, so that Linux's own next command lands where Linux expects it.
 * Prints "itsq: done" and exits 0; 4 if GITS_CREADR does not follow (the ITS is stuck), 2 for bad usage, 3
 * if /dev/warden_probe cannot be used, 5 if the ITS uses physical-address targets (not supported here).
 *
 * Built by xtask with the cross compiler, freestanding (no libc).
 */
#include "../include/freestanding.h"

#define SYS_sched_setaffinity 122
#define SYS_clone 220
#define SYS_wait4 260
#define SIGCHLD 17
#define MAP_SHARED_ANON (MAP_SHARED | MAP_ANONYMOUS)

#define GITS_TYPER 0x08
#define GITS_CBASER 0x80
#define GITS_CWRITER 0x88
#define GITS_CREADR 0x90
#define TYPER_PTA (1UL << 19)
#define QUEUE_OFFSET_MASK 0xfffe0UL
#define CMD_SIZE 32UL
#define OP_SYNC 0x05UL
#define BATCH 256UL

static volatile u64 *its;
static volatile u64 *queue;
static u64 qlen;

static u64 reg(u64 off)
{
	return its[off / 8];
}

static void set_reg(u64 off, u64 v)
{
	__asm__ volatile("dsb st" ::: "memory");
	its[off / 8] = v;
}

static void put_cmd(u64 off, const u64 *c)
{
	int i;

	for (i = 0; i < 4; i++)
		queue[off / 8 + i] = c[i];
}

/* Waits until GITS_CREADR equals @target; exits 4 after ~2 s. */
static void wait_creadr(u64 target)
{
	long i;
	struct {
		long s, ns;
	} ts = { 0, 100000 };

	for (i = 0; i < 20000; i++) {
		if ((reg(GITS_CREADR) & QUEUE_OFFSET_MASK) == target)
			return;
		syscall6(SYS_nanosleep, (long)&ts, 0, 0, 0, 0, 0);
	}
	put("itsq: GITS_CREADR stuck at ");
	put_hex16(reg(GITS_CREADR));
	put(", GITS_CWRITER ");
	put_hex16(reg(GITS_CWRITER));
	put("\n");
	quit(4);
}

/* Writes @n commands at CWRITER, publishes them, waits for the ITS. */
static void submit(const u64 *cmds, u64 n)
{
	u64 w = reg(GITS_CWRITER) & QUEUE_OFFSET_MASK;
	u64 i;

	for (i = 0; i < n; i++) {
		put_cmd(w, cmds + 4 * i);
		w = (w + CMD_SIZE) % qlen;
	}
	set_reg(GITS_CWRITER, w);
	wait_creadr(w);
}

static void pin_to(long cpu)
{
	u64 mask = 1UL << cpu;

	syscall6(SYS_sched_setaffinity, 0, sizeof(mask), (long)&mask, 0, 0, 0);
}

static u64 arg(char **argv, long i)
{
	u64 v;

	if (!parse_hex(argv[i], &v)) {
		put("itsq: bad number\n");
		quit(2);
	}
	return v;
}

__attribute__((used)) void start_c(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	u64 base, start, submitted = 0, cbaser, pad;
	static u64 sync_cmds[4 * BATCH];
	long fd, map, i;

	if (argc < 4 || !parse_hex(argv[1], &base)) {
		put("usage: itsq <its-base> cmd D0 D1 D2 D3 ... | race ROUNDS G0..G3 B0..B3\n");
		quit(2);
	}
	fd = probe_open("itsq");
	map = probe_map("itsq", fd, base, 0x10000, PROT_READ | PROT_WRITE, "cannot map the ITS");
	its = (volatile u64 *)map;
	if (reg(GITS_TYPER) & TYPER_PTA) {
		put("itsq: GITS_TYPER.PTA set: not supported\n");
		quit(5);
	}
	cbaser = reg(GITS_CBASER);
	qlen = ((cbaser & 0xff) + 1) * PAGE_SIZE;
	map = probe_map("itsq", fd, cbaser & 0xffffffffff000UL, qlen, PROT_READ | PROT_WRITE,
			"cannot map the command queue");
	queue = (volatile u64 *)map;
	start = reg(GITS_CWRITER) & QUEUE_OFFSET_MASK;
	put("itsq: GITS_CBASER ");
	put_hex16(cbaser);
	put(" GITS_CWRITER ");
	put_hex16(start);
	put("\n");

	if (argv[2][0] == 'c') {
		u64 n = (u64)(argc - 3) / 4;
		static u64 cmds[4 * 64];

		if ((argc - 3) % 4 || n > 64) {
			put("itsq: commands are 4 doublewords, at most 64\n");
			quit(2);
		}
		for (i = 0; i < (long)(4 * n); i++)
			cmds[i] = arg(argv, 3 + i);
		submit(cmds, n);
		submitted = n;
	} else if (argv[2][0] == 'r' && argc == 12) {
		u64 rounds = arg(argv, 3), good[4], bad[4], r;
		volatile u64 *flag;

		for (i = 0; i < 4; i++) {
			good[i] = arg(argv, 4 + i);
			bad[i] = arg(argv, 8 + i);
		}
		map = syscall6(SYS_mmap, 0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED_ANON, -1, 0);
		if (is_err(map))
			quit(3);
		flag = (volatile u64 *)map;
		for (r = 0; r < rounds; r++) {
			u64 w = reg(GITS_CWRITER) & QUEUE_OFFSET_MASK;
			long child;

			*flag = 0;
			put_cmd(w, good);
			child = syscall6(SYS_clone, SIGCHLD, 0, 0, 0, 0, 0);
			if (child == 0) {
				long spins;

				pin_to(1);
				for (spins = 0; !*flag && spins < 100000000; spins++)
					;
				while (*flag == 1)
					put_cmd(w, bad);
				quit(0);
			}
			pin_to(0);
			/* Let the child start spinning. */
			for (i = 0; i < 1000000; i++)
				__asm__ volatile("" ::: "memory");
			*flag = 1;
			set_reg(GITS_CWRITER, (w + CMD_SIZE) % qlen);
			wait_creadr((w + CMD_SIZE) % qlen);
			*flag = 2;
			syscall6(SYS_wait4, child, 0, 0, 0, 0, 0);
			submitted++;
		}
		put("itsq: ");
		put_hex16(rounds);
		put(" race rounds\n");
	} else {
		put("itsq: unknown mode\n");
		quit(2);
	}

	/* Back to where Linux left CWRITER: a whole number of laps. */
	for (i = 0; i < (long)BATCH; i++) {
		sync_cmds[4 * i] = OP_SYNC;
		sync_cmds[4 * i + 1] = 0;
		sync_cmds[4 * i + 2] = 0;
		sync_cmds[4 * i + 3] = 0;
	}
	pad = (qlen / CMD_SIZE - submitted % (qlen / CMD_SIZE)) % (qlen / CMD_SIZE);
	while (pad) {
		u64 n = pad < BATCH ? pad : BATCH;

		submit(sync_cmds, n);
		pad -= n;
	}
	if ((reg(GITS_CWRITER) & QUEUE_OFFSET_MASK) != start) {
		put("itsq: GITS_CWRITER did not come back\n");
		quit(4);
	}
	put("itsq: done\n");
	quit(0);
}
