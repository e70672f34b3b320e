// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * fwcfg_dma: QEMU fw_cfg's DMA interface driven from a process, through /dev/warden_probe
 * (tests/guest/modules/warden_probe), as a hostile host would use it (QEMU docs/specs/fw_cfg.rst).
 *
 *   fwcfg_dma <fw_cfg-base-hex> host           DMA-reads the fw_cfg signature ("QEMU") into a page of this
 *                                              process: prints "fwcfg_dma: host buffer 0x<pa> now holds QEMU",
 *                                              exits 0 (the negative control: the DMA path is real)
 *   fwcfg_dma <fw_cfg-base-hex> <target-pa>    the attack: SELECT the signature, READ 4 bytes to <target-pa>
 *
 * The descriptor (FWCfgDmaAccess: be32 control, be32 length, be64 address) lives in a locked page of this
 * process whose physical address comes from /proc/self/pagemap. The program prints
 * "fwcfg_dma: writing the DMA address register" right before its first access to the fw_cfg page: if the
 * hypervisor withholds fw_cfg, that write is an external abort and the process dies of SIGBUS (shell status
 * 135) with nothing sent to the device.
 *
 * Exit status 2 for bad usage, 3 if /dev/warden_probe or pagemap cannot be used, 4 if the device reported an
 * error or did not complete, 5 if the control's buffer does not hold the signature afterwards.
 *
 * Built by xtask with the cross compiler, freestanding (no libc): raw Linux syscalls only.
 */
#include "../include/freestanding.h"

#define O_RDONLY 0
/* fw_cfg MMIO layout (QEMU docs/specs/fw_cfg.rst, "MMIO" interface). */
#define FW_CFG_DMA_ADDR_HI 0x10
#define FW_CFG_DMA_ADDR_LO 0x14
/* FWCfgDmaAccess.control bits. */
#define FW_CFG_DMA_CTL_ERROR 0x01
#define FW_CFG_DMA_CTL_READ 0x02
#define FW_CFG_DMA_CTL_SELECT 0x08
/* Item 0: the signature, "QEMU". */
#define FW_CFG_SIGNATURE 0x0000
#define SIGNATURE_LEN 4
/* /proc/self/pagemap: bit 63 present, bits 54:0 the PFN. */
#define PAGEMAP_PRESENT (1ULL << 63)
#define PAGEMAP_PFN_MASK ((1ULL << 55) - 1)
#define POLL_LIMIT 1000000

struct fw_cfg_dma_access {
	u32 control;
	u32 length;
	u64 address;
};

static u32 be32(u32 v)
{
	return __builtin_bswap32(v);
}

/* A fresh, locked, zeroed page of this process, and its physical address in *pa. */
static volatile unsigned char *locked_page(u64 *pa)
{
	long map, fd, n;
	u64 entry;

	map = syscall6(SYS_mmap, 0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED,
		       -1, 0);
	if (is_err(map)) {
		put("fwcfg_dma: mmap of a buffer failed\n");
		quit(3);
	}
	((volatile unsigned char *)map)[0] = 0;
	fd = syscall6(SYS_openat, AT_FDCWD, (long)"/proc/self/pagemap", O_RDONLY, 0, 0, 0);
	if (fd < 0) {
		put("fwcfg_dma: cannot open /proc/self/pagemap\n");
		quit(3);
	}
	n = syscall6(SYS_pread64, fd, (long)&entry, 8, (long)(map / PAGE_SIZE * 8), 0, 0);
	if (n != 8 || !(entry & PAGEMAP_PRESENT) || !(entry & PAGEMAP_PFN_MASK)) {
		put("fwcfg_dma: no physical address in pagemap (not root?)\n");
		quit(3);
	}
	*pa = (entry & PAGEMAP_PFN_MASK) * PAGE_SIZE;
	return (volatile unsigned char *)map;
}

__attribute__((used)) void start_c(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	volatile struct fw_cfg_dma_access *desc;
	volatile unsigned char *buf = 0;
	volatile u32 *regs;
	u64 base, target, desc_pa;
	long map, i;
	int control = 0;

	if (argc != 3 || !parse_hex(argv[1], &base) || (base & (PAGE_SIZE - 1))) {
		put("usage: fwcfg_dma <page-aligned fw_cfg base in hex> host|<target physical address in hex>\n");
		quit(2);
	}
	if (argv[2][0] == 'h' && argv[2][1] == 'o' && argv[2][2] == 's' && argv[2][3] == 't' && !argv[2][4]) {
		control = 1;
		buf = locked_page(&target);
	} else if (!parse_hex(argv[2], &target)) {
		put("fwcfg_dma: bad target address\n");
		quit(2);
	}
	desc = (volatile struct fw_cfg_dma_access *)locked_page(&desc_pa);
	desc->control = be32((FW_CFG_SIGNATURE << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ);
	desc->length = be32(SIGNATURE_LEN);
	desc->address = ((u64)be32((u32)target) << 32) | be32((u32)(target >> 32));

	map = probe_map("fwcfg_dma", probe_open("fwcfg_dma"), base, PAGE_SIZE, PROT_READ | PROT_WRITE,
			"mmap of the fw_cfg page failed");
	regs = (volatile u32 *)map;
	put("fwcfg_dma: descriptor at ");
	put_hex16(desc_pa);
	put(", DMA target ");
	put_hex16(target);
	put("\nfwcfg_dma: writing the DMA address register\n");
	/* The big-endian 64-bit register: high half first, the write of the low half starts the transfer. */
	regs[FW_CFG_DMA_ADDR_HI / 4] = be32((u32)(desc_pa >> 32));
	regs[FW_CFG_DMA_ADDR_LO / 4] = be32((u32)desc_pa);
	for (i = 0; i < POLL_LIMIT && (be32(desc->control) & ~FW_CFG_DMA_CTL_ERROR); i++)
		;
	if (be32(desc->control) != 0) {
		put("fwcfg_dma: the device reported an error or did not complete: control ");
		put_hex16(be32(desc->control));
		put("\n");
		quit(4);
	}
	put("fwcfg_dma: DMA complete\n");
	if (control) {
		if (buf[0] != 'Q' || buf[1] != 'E' || buf[2] != 'M' || buf[3] != 'U') {
			put("fwcfg_dma: host buffer does not hold the signature\n");
			quit(5);
		}
		put("fwcfg_dma: host buffer ");
		put_hex16(target);
		put(" now holds QEMU\n");
	}
	quit(0);
}
