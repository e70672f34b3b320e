// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * gicodd: one access of an odd kind to a physical address through /dev/warden_probe
 * (tests/guest/modules/warden_probe), each with a fixed instruction, for tests/qemu/adv_gic_odd.sh: the
 * accesses a hostile host can make to the GIC frames the hyp emulates besides aligned 32/64-bit loads and
 * stores.
 *
 *   gicodd <phys-addr-hex> <op> [value-hex]
 *
 *   ldrb, ldrh, ldrx     8-, 16-, 64-bit load; prints "gicodd: value 0x<value>"
 *   strb, strh, strx     8-, 16-, 64-bit store of value; prints "gicodd: done"
 *   ldp, stp             load/store pair of 64-bit registers (ESR.ISV = 0); stp stores value twice
 *   strpost              32-bit store with post-index writeback (ESR.ISV = 0)
 *
 * Exit status 2 for bad usage, 3 if the device cannot be opened or mapped. An access the hypervisor refuses
 * (external abort injected) kills the process with SIGBUS (shell status 135) before it prints.
 *
 * Built by xtask with the cross compiler, freestanding (no libc).
 */
#include "../include/freestanding.h"

__attribute__((used)) void start_c(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	u64 pa, value = 0, out = 0, out2 = 0;
	const char *op;
	long map;
	unsigned long p;
	int load = 1;

	if (argc < 3 || argc > 4 || !parse_hex(argv[1], &pa) || (argc == 4 && !parse_hex(argv[3], &value))) {
		put("usage: gicodd <physical address in hex> <ldrb|ldrh|ldrx|strb|strh|strx|ldp|stp|strpost> [value]\n");
		quit(2);
	}
	op = argv[2];
	map = probe_map("gicodd", probe_open("gicodd"), pa & ~(PAGE_SIZE - 1), PAGE_SIZE, PROT_READ | PROT_WRITE,
			"mmap failed");
	p = (unsigned long)map + (pa & (PAGE_SIZE - 1));
	if (streq(op, "ldrb")) {
		__asm__ volatile("ldrb %w0, [%1]" : "=r"(out) : "r"(p) : "memory");
	} else if (streq(op, "ldrh")) {
		__asm__ volatile("ldrh %w0, [%1]" : "=r"(out) : "r"(p) : "memory");
	} else if (streq(op, "ldrx")) {
		__asm__ volatile("ldr %0, [%1]" : "=r"(out) : "r"(p) : "memory");
	} else if (streq(op, "ldp")) {
		__asm__ volatile("ldp %0, %1, [%2]" : "=r"(out), "=r"(out2) : "r"(p) : "memory");
		out ^= out2 & 0;
	} else {
		load = 0;
		if (streq(op, "strb"))
			__asm__ volatile("strb %w0, [%1]" : : "r"(value), "r"(p) : "memory");
		else if (streq(op, "strh"))
			__asm__ volatile("strh %w0, [%1]" : : "r"(value), "r"(p) : "memory");
		else if (streq(op, "strx"))
			__asm__ volatile("str %0, [%1]" : : "r"(value), "r"(p) : "memory");
		else if (streq(op, "stp"))
			__asm__ volatile("stp %0, %0, [%1]" : : "r"(value), "r"(p) : "memory");
		else if (streq(op, "strpost"))
			__asm__ volatile("str %w1, [%0], #4" : "+r"(p) : "r"(value) : "memory");
		else {
			put("gicodd: unknown op\n");
			quit(2);
		}
		__asm__ volatile("dsb sy" ::: "memory");
	}
	if (load) {
		put("gicodd: value ");
		put_hex16(out);
		put("\n");
	} else {
		put("gicodd: done\n");
	}
	quit(0);
}
