// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * poke: write one 32-bit word at a physical address through /dev/warden_probe (tests/guest/modules/warden_probe),
 * the write-side twin of peek. For adversarial tests: a host process writing the SMMU's registers or the
 * hypervisor's carve-out (stream table, queues).
 *
 *   poke <phys-addr-hex> <value-hex>    prints "poke: writing 0x<value> at 0x<pa>", writes, prints "poke: done"
 *
 * Exit status 2 for bad usage, 3 if the device cannot be opened or mapped. If the write is refused (the
 * hypervisor injects an external abort), the process dies with SIGBUS (shell status 135) before "done".
 *
 * Built by xtask with the cross compiler, freestanding (no libc): raw Linux syscalls only, from
 * tests/guest/include/freestanding.h.
 */
#include "../include/freestanding.h"

__attribute__((used)) void start_c(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	u64 pa, value;
	long map;

	if (argc != 3 || !parse_hex(argv[1], &pa) || (pa & 3) || !parse_hex(argv[2], &value) || value >> 32) {
		put("usage: poke <4-byte-aligned physical address in hex> <32-bit value in hex>\n");
		quit(2);
	}
	map = probe_map("poke", probe_open("poke"), pa & ~(PAGE_SIZE - 1), PAGE_SIZE, PROT_READ | PROT_WRITE,
			"mmap failed");
	put("poke: writing ");
	put_hex16(value);
	put(" at ");
	put_hex16(pa);
	put("\n");
	*(volatile unsigned int *)(map + (pa & (PAGE_SIZE - 1))) = (unsigned int)value;
	__asm__ volatile("dsb sy" ::: "memory");
	put("poke: done\n");
	quit(0);
}
