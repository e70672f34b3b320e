/* SPDX-License-Identifier: (GPL-2.0 OR MIT) */
/*
 * The /dev/warden_hvc interface (tests/guest/modules/warden_hvc), shared by the module and tests/guest/src/hvc.c.
 * Test machines only: it lets root issue any SMCCC call and donate any of its pages.
 */
#ifndef WARDEN_HVC_H
#define WARDEN_HVC_H

/* One SMCCC 1.1 call through the kernel's conduit (SMC on QEMU virt): in fid, x[0..5] = x1..x6; out ret = x0..x3. */
struct warden_hvc_call {
	unsigned long long fid;
	unsigned long long x[6];
	unsigned long long ret[4];
};

/*
 * Pages: ALLOC takes count (1..1024) and fill, returns pa: count physically contiguous pages, every 64-bit word
 * set to fill. FREE takes pa (the start of an allocation). NONZERO takes pa and count (pages inside one
 * allocation, host-owned again), returns in fill the number of 64-bit words that are not zero.
 */
struct warden_hvc_pages {
	unsigned long long pa;
	unsigned long long count;
	unsigned long long fill;
};

#ifndef _IOWR /* freestanding programs: the generic Linux ioctl encoding (dir 30, size 16, type 8, nr 0) */
#define _IOC(dir, type, nr, size) (((dir) << 30) | ((unsigned int)(size) << 16) | ((type) << 8) | (nr))
#define _IOWR(type, nr, t) _IOC(3U, (type), (nr), sizeof(t))
#define _IOW(type, nr, t) _IOC(1U, (type), (nr), sizeof(t))
#endif

#define WARDEN_HVC_MAGIC 'W'
#define WARDEN_HVC_CALL _IOWR(WARDEN_HVC_MAGIC, 0x40, struct warden_hvc_call)
#define WARDEN_HVC_ALLOC _IOWR(WARDEN_HVC_MAGIC, 0x41, struct warden_hvc_pages)
#define WARDEN_HVC_FREE _IOW(WARDEN_HVC_MAGIC, 0x42, struct warden_hvc_pages)
#define WARDEN_HVC_NONZERO _IOWR(WARDEN_HVC_MAGIC, 0x43, struct warden_hvc_pages)

#define WARDEN_HVC_MAX_PAGES 1024

#endif
