// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * peek: read one 64-bit word at a physical address through /dev/warden_probe (tests/guest/modules/warden_probe).
 *
 *   peek <phys-addr-hex>       prints "peek: reading 0x<pa>", reads, prints "peek: value 0x<value>", exits 0
 *   peek <phys-addr-hex> 32    the same with a 32-bit read (4-byte aligned), for 32-bit device registers
 *
 * Exit status 2 for bad usage, 3 if the device cannot be opened or mapped. If the access itself is refused (the
 * hypervisor injects an external abort), the process dies with SIGBUS (shell status 135).
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
	int word = argc == 3 && argv[2][0] == '3' && argv[2][1] == '2' && !argv[2][2];

	if ((argc != 2 && !word) || !parse_hex(argv[1], &pa) || (pa & (word ? 3 : 7))) {
		put("usage: peek <8-byte-aligned physical address in hex> [32]\n");
		quit(2);
	}
	map = probe_map("peek", probe_open("peek"), pa & ~(PAGE_SIZE - 1), PAGE_SIZE, PROT_READ, "mmap failed");
	put("peek: reading ");
	put_hex16(pa);
	put("\n");
	if (word)
		value = *(volatile u32 *)(map + (pa & (PAGE_SIZE - 1)));
	else
		value = *(volatile u64 *)(map + (pa & (PAGE_SIZE - 1)));
	put("peek: value ");
	put_hex16(value);
	put("\n");
	quit(0);
}
