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
 * Built by xtask with the cross compiler, freestanding (no libc): raw Linux syscalls only.
 */
typedef unsigned long u64;

#define SYS_openat 56
#define SYS_write 64
#define SYS_exit 93
#define SYS_mmap 222
#define AT_FDCWD (-100)
#define O_RDWR 2
#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_SHARED 1
#define PAGE_SIZE 4096UL

static long syscall6(long nr, long a0, long a1, long a2, long a3, long a4, long a5)
{
	register long x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = a0;
	register long x1 __asm__("x1") = a1;
	register long x2 __asm__("x2") = a2;
	register long x3 __asm__("x3") = a3;
	register long x4 __asm__("x4") = a4;
	register long x5 __asm__("x5") = a5;

	__asm__ volatile("svc #0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory");
	return x0;
}

static unsigned long len(const char *s)
{
	unsigned long n = 0;

	while (s[n])
		n++;
	return n;
}

static void put(const char *s)
{
	syscall6(SYS_write, 1, (long)s, (long)len(s), 0, 0, 0);
}

static __attribute__((noreturn)) void quit(int status)
{
	for (;;)
		syscall6(SYS_exit, status, 0, 0, 0, 0, 0);
}

/* Parses hex with an optional 0x prefix; returns 0 on bad input. */
static int parse_hex(const char *s, u64 *out)
{
	u64 v = 0;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	if (!*s || len(s) > 16)
		return 0;
	for (; *s; s++) {
		int d;

		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (*s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			return 0;
		v = v << 4 | (u64)d;
	}
	*out = v;
	return 1;
}

static void hex(char *buf, u64 v)
{
	int i;

	buf[0] = '0';
	buf[1] = 'x';
	for (i = 0; i < 16; i++)
		buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 0xf];
	buf[18] = 0;
}

__attribute__((used)) void start_c(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	char buf[19];
	u64 pa, value;
	long fd, map;

	if (argc != 3 || !parse_hex(argv[1], &pa) || (pa & 3) || !parse_hex(argv[2], &value) || value >> 32) {
		put("usage: poke <4-byte-aligned physical address in hex> <32-bit value in hex>\n");
		quit(2);
	}
	fd = syscall6(SYS_openat, AT_FDCWD, (long)"/dev/warden_probe", O_RDWR, 0, 0, 0);
	if (fd < 0) {
		put("poke: cannot open /dev/warden_probe (is warden_probe.ko loaded?)\n");
		quit(3);
	}
	map = syscall6(SYS_mmap, 0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		       (long)(pa & ~(PAGE_SIZE - 1)));
	if (map < 0 && map > -4096) {
		put("poke: mmap failed\n");
		quit(3);
	}
	put("poke: writing ");
	hex(buf, value);
	put(buf);
	put(" at ");
	hex(buf, pa);
	put(buf);
	put("\n");
	*(volatile unsigned int *)(map + (pa & (PAGE_SIZE - 1))) = (unsigned int)value;
	__asm__ volatile("dsb sy" ::: "memory");
	put("poke: done\n");
	quit(0);
}

__asm__(".global _start\n"
	"_start:\n"
	"	mov x0, sp\n"
	"	bl start_c\n");
