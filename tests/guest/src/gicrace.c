// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * gicrace: a hostile host racing two CPUs on one GICv3 redistributor's RD_base frame, through /dev/warden_probe
 * (tests/guest/modules/warden_probe). For tests/qemu/adv_gic_race.sh.
 *
 *   gicrace <rd-base> <register offset: 70 or 78> <good> <bad> <max-attempts>
 *
 * The redistributor must have LPIs disabled and the other table base already programmed. A child process on
 * CPU1 writes the register (GICR_PROPBASER or GICR_PENDBASER) = good, then bad, then good, ... as fast as it
 * can, while the parent on CPU0 sets
 * GICR_CTLR.EnableLPIs until it reads back 1 (each attempt that catches the bad table is refused by the hyp)
 * or max-attempts have been made. The race is the host's win if the hyp checked the good table but the
 * redistributor ends up with the bad one: the bad write landing between the hyp's check and its GICR_CTLR
 * write. Afterwards it prints
 *
 *   gicrace: attempts N enabled E flips F base 0x<the real register>
 *
 * and exits 0 (E = 1 with the good table, or E = 0), 1 if LPIs are enabled with another table address
 * (the hole), 2 for bad usage, 3 if /dev/warden_probe cannot be used.
 *
 * Built by xtask with the cross compiler, freestanding (no libc).
 */
#include "../include/freestanding.h"

#define SYS_sched_setaffinity 122
#define SYS_clone 220
#define SYS_wait4 260
#define SIGCHLD 17

#define GICR_CTLR 0x00
#define BASE_PA 0x000ffffffffff000ULL

static void pin_to(long cpu)
{
	unsigned long mask = 1UL << cpu;

	syscall6(SYS_sched_setaffinity, 0, sizeof(mask), (long)&mask, 0, 0, 0);
}

__attribute__((used)) void start_c(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	u64 rd, reg, good, bad, max, attempts = 0, enabled = 0, pend;
	volatile u64 *shared;
	volatile unsigned char *frame;
	long map, child;

	if (argc != 6 || !parse_hex(argv[1], &rd) || (rd & 0xffff) || !parse_hex(argv[2], &reg) ||
	    (reg != 0x70 && reg != 0x78) || !parse_hex(argv[3], &good) || !parse_hex(argv[4], &bad) ||
	    !parse_hex(argv[5], &max)) {
		put("usage: gicrace <rd-base> <70|78> <good> <bad> <max-attempts> (hex)\n");
		quit(2);
	}
	map = probe_map("gicrace", probe_open("gicrace"), rd, PAGE_SIZE, PROT_READ | PROT_WRITE,
			"mmap of the RD_base frame failed");
	frame = (volatile unsigned char *)map;
	map = syscall6(SYS_mmap, 0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (is_err(map)) {
		put("gicrace: mmap of shared memory failed\n");
		quit(3);
	}
	/* shared[0]: the child is flipping; shared[1]: stop; shared[2]: flips done. */
	shared = (volatile u64 *)map;
	*(volatile u64 *)(frame + reg) = good;
	child = syscall6(SYS_clone, SIGCHLD, 0, 0, 0, 0, 0);
	if (child == 0) {
		u64 flips = 0;

		pin_to(1);
		shared[0] = 1;
		while (!shared[1]) {
			*(volatile u64 *)(frame + reg) = good;
			*(volatile u64 *)(frame + reg) = bad;
			flips++;
		}
		*(volatile u64 *)(frame + reg) = good;
		shared[2] = flips;
		quit(0);
	}
	if (child < 0) {
		put("gicrace: clone failed\n");
		quit(3);
	}
	pin_to(0);
	while (!shared[0])
		;
	while (attempts < max && !enabled) {
		*(volatile unsigned int *)(frame + GICR_CTLR) = 1;
		attempts++;
		enabled = *(volatile unsigned int *)(frame + GICR_CTLR) & 1;
	}
	shared[1] = 1;
	syscall6(SYS_wait4, child, 0, 0, 0, 0, 0);
	pend = *(volatile u64 *)(frame + reg);
	put("gicrace: attempts ");
	put_dec(attempts);
	put(" enabled ");
	put_dec(enabled);
	put(" flips ");
	put_dec(shared[2]);
	put(" base ");
	put_hex16(pend);
	put("\n");
	if (enabled && (pend & BASE_PA) != (good & BASE_PA))
		quit(1);
	quit(0);
}
