// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * vfio_edu: DMA through VFIO (type1 IOMMU backend, on top of whatever IOMMU driver the kernel has: warden.ko
 * under the hypervisor, arm-smmu-v3 natively) with QEMU's edu device.
 *
 *   vfio_edu <pci-address> <iommu-group-number> [<scatter-pages>]
 *
 * 1. Opens the VFIO container and group, sets the type1v2 IOMMU, gets the device, enables bus mastering.
 * 2. Maps buffer A at IOVA 0x10000 (device reads it) and buffer B at IOVA 0x20000 (device writes it) with
 *    VFIO_IOMMU_MAP_DMA; edu copies A -> its buffer -> B; checks B == A (4 KiB, a pseudo-random pattern).
 * 3. Unmaps B with VFIO_IOMMU_UNMAP_DMA, refills B with a marker, has edu write 4 bytes to IOVA 0x20000
 *    again: the write must fault (the script checks the IOMMU driver reported it) and B must be unchanged.
 *
 * 4. Enables edu's MSI through VFIO_DEVICE_SET_IRQS (an eventfd as the trigger), has edu raise an interrupt
 *    and waits (up to 3 s) for the eventfd: the MSI went from the device through the IOMMU and the GIC ITS.
 *
 * 5. With <scatter-pages> N: maps N separate 4 KiB pages at IOVAs 2 MiB apart from 1 GiB up (one page table per
 *    page: enough to drain the hypervisor's page-table pool and make the IOMMU driver donate memory), checks
 *    edu reads the last one, and unmaps them all.
 *
 * Prints one line per step; exit 0 on success, 1 when a check fails, 2 on bad usage, 3 when a VFIO call fails.
 * Built freestanding (no libc): raw Linux syscalls only, from tests/guest/include/freestanding.h.
 */
#include "../include/freestanding.h"

#define BUF_SIZE 4096UL

/* include/uapi/linux/vfio.h: every VFIO ioctl is _IO(';', 100 + n). */
#define VFIO_IO(n) ((';' << 8) | (100 + (n)))
#define VFIO_GET_API_VERSION VFIO_IO(0)
#define VFIO_CHECK_EXTENSION VFIO_IO(1)
#define VFIO_SET_IOMMU VFIO_IO(2)
#define VFIO_GROUP_GET_STATUS VFIO_IO(3)
#define VFIO_GROUP_SET_CONTAINER VFIO_IO(4)
#define VFIO_GROUP_GET_DEVICE_FD VFIO_IO(6)
#define VFIO_DEVICE_GET_REGION_INFO VFIO_IO(8)
#define VFIO_DEVICE_SET_IRQS VFIO_IO(10)
#define VFIO_IOMMU_MAP_DMA VFIO_IO(13)
#define VFIO_IOMMU_UNMAP_DMA VFIO_IO(14)
#define VFIO_API_VERSION 0
#define VFIO_TYPE1v2_IOMMU 3
#define VFIO_GROUP_FLAGS_VIABLE 1
#define VFIO_DMA_MAP_FLAG_READ 1
#define VFIO_DMA_MAP_FLAG_WRITE 2
#define VFIO_PCI_MSI_IRQ_INDEX 1
#define VFIO_IRQ_SET_DATA_EVENTFD (1 << 2)
#define VFIO_IRQ_SET_ACTION_TRIGGER (1 << 5)
#define SYS_eventfd2 19
#define SYS_read 63
#define EFD_NONBLOCK 0x800
/* edu's interrupt raise and acknowledge registers (4-byte). */
#define EDU_IRQ_RAISE 0x60
#define EDU_IRQ_ACK 0x64
#define VFIO_PCI_BAR0_REGION_INDEX 0
#define VFIO_PCI_CONFIG_REGION_INDEX 7

struct vfio_group_status {
	u32 argsz;
	u32 flags;
};

struct vfio_region_info {
	u32 argsz;
	u32 flags;
	u32 index;
	u32 cap_offset;
	u64 size;
	u64 offset;
};

struct vfio_dma_map {
	u32 argsz;
	u32 flags;
	u64 vaddr;
	u64 iova;
	u64 size;
};

struct vfio_dma_unmap {
	u32 argsz;
	u32 flags;
	u64 iova;
	u64 size;
};

/* QEMU edu: BAR0 registers and its internal buffer's device address. */
#define EDU_IDENT 0x00
#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_COUNT 0x90
#define EDU_DMA_CMD 0x98
#define EDU_CMD_START 1
#define EDU_CMD_TO_RAM 2
#define EDU_BUFFER 0x40000UL
#define IOVA_A 0x10000UL
#define IOVA_B 0x20000UL

static __attribute__((noreturn)) void die(const char *what, long err, int status)
{
	put("vfio_edu: FAIL: ");
	put(what);
	put(" (");
	put_hex16((u64)err);
	put(")\n");
	quit(status);
}

static void sleep_ms(long ms)
{
	long ts[2] = { 0, ms * 1000000L };

	syscall6(SYS_nanosleep, (long)ts, 0, 0, 0, 0, 0);
}

static long xioctl(long fd, long req, void *arg, const char *what)
{
	long r = syscall6(SYS_ioctl, fd, req, (long)arg, 0, 0, 0);

	if (r < 0)
		die(what, r, 3);
	return r;
}

static long bar0_off, cfg_off;

/* One BAR0 access of @size bytes at @reg through the VFIO device: @buf is written there (@write) or read. */
static void bar_io(long dev, u64 reg, void *buf, long size, int write)
{
	long r = syscall6(write ? SYS_pwrite64 : SYS_pread64, dev, (long)buf, size, bar0_off + (long)reg, 0, 0);

	if (r != size)
		die(write ? "BAR0 write" : "BAR0 read", r, 3);
}

static void bar_write64(long dev, u64 reg, u64 val)
{
	bar_io(dev, reg, &val, 8, 1);
}

static u64 bar_read64(long dev, u64 reg)
{
	u64 val = 0;

	bar_io(dev, reg, &val, 8, 0);
	return val;
}

/* Registers below 0x80 answer 4-byte accesses only. */
static u32 bar_read32(long dev, u64 reg)
{
	u32 val = 0;

	bar_io(dev, reg, &val, 4, 0);
	return val;
}

static void bar_write32(long dev, u64 reg, u32 val)
{
	bar_io(dev, reg, &val, 4, 1);
}

/* edu's MSI, delivered to an eventfd through VFIO; waits up to 3 s. */
static void edu_msi(long dev)
{
	struct {
		u32 argsz, flags, index, start, count;
		int fd;
	} set;
	struct {
		long s, ns;
	} ms = { 0, 1000000 };
	long efd = syscall6(SYS_eventfd2, 0, EFD_NONBLOCK, 0, 0, 0, 0);
	u64 n;
	int i;

	if (efd < 0)
		die("eventfd2", efd, 3);
	set.argsz = sizeof(set);
	set.flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
	set.index = VFIO_PCI_MSI_IRQ_INDEX;
	set.start = 0;
	set.count = 1;
	set.fd = (int)efd;
	xioctl(dev, VFIO_DEVICE_SET_IRQS, &set, "VFIO_DEVICE_SET_IRQS (MSI)");
	bar_write32(dev, EDU_IRQ_RAISE, 1);
	for (i = 0; i < 3000; i++) {
		if (syscall6(SYS_read, efd, (long)&n, 8, 0, 0, 0) == 8)
			break;
		syscall6(SYS_nanosleep, (long)&ms, 0, 0, 0, 0, 0);
	}
	bar_write32(dev, EDU_IRQ_ACK, 1);
	if (i == 3000) {
		put("vfio_edu: FAIL: edu raised an interrupt, no MSI reached the eventfd in 3 s\n");
		quit(1);
	}
	put("vfio_edu: edu raised an interrupt: its MSI reached the eventfd\n");
}

/* One edu DMA of @count bytes; waits (up to 3 s) until the device reports it done. */
static void edu_dma(long dev, u64 src, u64 dst, u64 count, int to_ram)
{
	int i;

	bar_write64(dev, EDU_DMA_SRC, src);
	bar_write64(dev, EDU_DMA_DST, dst);
	bar_write64(dev, EDU_DMA_COUNT, count);
	bar_write64(dev, EDU_DMA_CMD, EDU_CMD_START | (to_ram ? EDU_CMD_TO_RAM : 0));
	for (i = 0; i < 300; i++) {
		if (!(bar_read64(dev, EDU_DMA_CMD) & EDU_CMD_START))
			return;
		sleep_ms(10);
	}
	die("edu DMA did not complete", 0, 1);
}

static void region(long dev, u32 index, long *off, const char *what)
{
	struct vfio_region_info info;

	info.argsz = sizeof(info);
	info.flags = 0;
	info.index = index;
	info.cap_offset = 0;
	info.size = 0;
	info.offset = 0;
	xioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &info, what);
	*off = (long)info.offset;
}

static unsigned char *buffer_of(unsigned long size)
{
	long p = syscall6(SYS_mmap, 0, (long)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0);

	if (is_err(p))
		die("mmap of a buffer", p, 3);
	return (unsigned char *)p;
}

static unsigned char *buffer(void)
{
	return buffer_of(BUF_SIZE);
}

static u64 parse_dec(const char *s)
{
	u64 v = 0;

	for (; *s >= '0' && *s <= '9'; s++)
		v = v * 10 + (u64)(*s - '0');
	return v;
}

static void dma_map(long container, unsigned char *buf, u64 iova, u32 flags)
{
	struct vfio_dma_map m;

	m.argsz = sizeof(m);
	m.flags = flags;
	m.vaddr = (u64)buf;
	m.iova = iova;
	m.size = BUF_SIZE;
	xioctl(container, VFIO_IOMMU_MAP_DMA, &m, "VFIO_IOMMU_MAP_DMA");
}

__attribute__((used)) void start_c(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	char path[64] = "/dev/vfio/";
	struct vfio_group_status status;
	struct vfio_dma_unmap unmap;
	long container, group, dev, r;
	unsigned char *a, *b;
	u64 seed = 0x9e3779b97f4a7c15UL;
	u16 cmd;
	unsigned long i, n;

	if ((argc != 3 && argc != 4) || len(argv[2]) > 20) {
		put("usage: vfio_edu <pci-address> <iommu-group-number> [<scatter-pages>]\n");
		quit(2);
	}
	for (i = 0, n = len(path); argv[2][i]; i++)
		path[n + i] = argv[2][i];
	path[n + i] = 0;

	container = open_rdwr("/dev/vfio/vfio");
	if (container < 0)
		die("open /dev/vfio/vfio", container, 3);
	if (xioctl(container, VFIO_GET_API_VERSION, 0, "VFIO_GET_API_VERSION") != VFIO_API_VERSION)
		die("unknown VFIO API version", 0, 3);
	if (!syscall6(SYS_ioctl, container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU, 0, 0, 0))
		die("no type1v2 IOMMU backend (modprobe vfio_iommu_type1?)", 0, 3);
	group = open_rdwr(path);
	if (group < 0)
		die("open the group", group, 3);
	status.argsz = sizeof(status);
	status.flags = 0;
	xioctl(group, VFIO_GROUP_GET_STATUS, &status, "VFIO_GROUP_GET_STATUS");
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
		die("group not viable (every device in it must be bound to vfio-pci)", status.flags, 3);
	xioctl(group, VFIO_GROUP_SET_CONTAINER, &container, "VFIO_GROUP_SET_CONTAINER");
	r = syscall6(SYS_ioctl, container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU, 0, 0, 0);
	if (r < 0)
		die("VFIO_SET_IOMMU", r, 3);
	dev = syscall6(SYS_ioctl, group, VFIO_GROUP_GET_DEVICE_FD, (long)argv[1], 0, 0, 0);
	if (dev < 0)
		die("VFIO_GROUP_GET_DEVICE_FD", dev, 3);
	region(dev, VFIO_PCI_BAR0_REGION_INDEX, &bar0_off, "BAR0 region info");
	region(dev, VFIO_PCI_CONFIG_REGION_INDEX, &cfg_off, "config region info");
	if (bar_read32(dev, EDU_IDENT) != 0x010000edU)
		die("BAR0 is not an edu device", (long)bar_read32(dev, EDU_IDENT), 1);
	cmd = 0;
	syscall6(SYS_pread64, dev, (long)&cmd, 2, cfg_off + 4, 0, 0);
	cmd |= 0x6; /* memory space, bus master */
	if (syscall6(SYS_pwrite64, dev, (long)&cmd, 2, cfg_off + 4, 0, 0) != 2)
		die("enabling bus mastering", 0, 3);
	put("vfio_edu: device open, type1v2 container set\n");

	a = buffer();
	b = buffer();
	for (i = 0; i < BUF_SIZE; i++) {
		seed = seed * 6364136223846793005UL + 1442695040888963407UL;
		a[i] = (unsigned char)(seed >> 56);
		b[i] = 0;
	}
	dma_map(container, a, IOVA_A, VFIO_DMA_MAP_FLAG_READ);
	dma_map(container, b, IOVA_B, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
	edu_dma(dev, IOVA_A, EDU_BUFFER, BUF_SIZE, 0);
	edu_dma(dev, EDU_BUFFER, IOVA_B, BUF_SIZE, 1);
	for (i = 0; i < BUF_SIZE; i++) {
		if (a[i] != b[i]) {
			put("vfio_edu: FAIL: buffer B differs from A at byte ");
			put_hex16(i);
			put("\n");
			quit(1);
		}
	}
	put("vfio_edu: 4 KiB RAM -> edu -> RAM through IOVAs 0x10000 / 0x20000: data intact\n");

	unmap.argsz = sizeof(unmap);
	unmap.flags = 0;
	unmap.iova = IOVA_B;
	unmap.size = BUF_SIZE;
	xioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap, "VFIO_IOMMU_UNMAP_DMA");
	if (unmap.size != BUF_SIZE)
		die("VFIO_IOMMU_UNMAP_DMA unmapped a different size", (long)unmap.size, 1);
	for (i = 0; i < BUF_SIZE; i++)
		b[i] = 0x5a;
	/* 4 bytes: QEMU performs larger edu DMAs as 4-byte accesses, each faulting on its own. */
	edu_dma(dev, EDU_BUFFER, IOVA_B, 4, 1);
	for (i = 0; i < BUF_SIZE; i++) {
		if (b[i] != 0x5a) {
			put("vfio_edu: FAIL: the device still wrote buffer B after the unmap, at byte ");
			put_hex16(i);
			put("\n");
			quit(1);
		}
	}
	put("vfio_edu: after VFIO_IOMMU_UNMAP_DMA the device no longer reaches IOVA 0x20000 (buffer unchanged)\n");
	edu_msi(dev);
	if (argc == 4) {
		u64 pages = parse_dec(argv[3]), iova = 0x40000000UL, stride = 0x200000UL;
		unsigned char *s = buffer_of(pages * BUF_SIZE);
		u32 word = 0;

		if (!pages || pages > 65536)
			die("scatter-pages must be 1..65536", (long)pages, 2);
		for (i = 0; i < pages; i++) {
			s[i * BUF_SIZE] = (unsigned char)(i + 1);
			dma_map(container, s + i * BUF_SIZE, iova + i * stride, VFIO_DMA_MAP_FLAG_READ);
		}
		edu_dma(dev, iova + (pages - 1) * stride, EDU_BUFFER, 4, 0);
		dma_map(container, b, IOVA_B, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
		edu_dma(dev, EDU_BUFFER, IOVA_B, 4, 1);
		word = b[0];
		if (word != (unsigned char)pages)
			die("edu did not read the last scattered page", (long)word, 1);
		unmap.argsz = sizeof(unmap);
		unmap.flags = 0;
		unmap.iova = iova;
		unmap.size = pages * stride;
		xioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap, "VFIO_IOMMU_UNMAP_DMA (scattered)");
		put("vfio_edu: ");
		put_hex16(pages);
		put(" scattered pages mapped 2 MiB apart, the last one read by edu, all unmapped\n");
	}
	quit(0);
}
