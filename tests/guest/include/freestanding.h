/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * What every freestanding guest program (the C files in tests/guest/src/ and tests/guest/shim/) shares: raw arm64
 * Linux syscalls, printing to stdout, exiting, hex parsing and formatting, and the _start entry point.
 *
 * xtask builds each C file under tests/guest/ (outside modules/) into a static program with -nostdlib
 * -ffreestanding, so there is no libc: include this header with a relative path and define
 *
 *   __attribute__((used)) void start_c(long *sp)
 *
 * which _start calls with the initial stack (sp[0] = argc, sp + 1 = argv); start_c must end with quit().
 * This header is not a program: xtask only builds *.c files.
 */
#ifndef WARDEN_FREESTANDING_H
#define WARDEN_FREESTANDING_H

/* unsigned long long, as the __u64 fields of tests/guest/modules/warden_hvc/warden_hvc.h. */
typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned short u16;

/* include/uapi/asm-generic/unistd.h (arm64). */
#define SYS_ioctl 29
#define SYS_openat 56
#define SYS_write 64
#define SYS_pread64 67
#define SYS_pwrite64 68
#define SYS_exit 93
#define SYS_nanosleep 101
#define SYS_mmap 222

#define AT_FDCWD (-100)
#define O_RDWR 2
#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_SHARED 1
#define MAP_PRIVATE 2
#define MAP_ANONYMOUS 0x20
#define MAP_LOCKED 0x2000
#define PAGE_SIZE 4096UL

/* One Linux syscall: number in x8, arguments in x0..x5, result (or -errno) in x0. */
static inline long syscall6(long nr, long a0, long a1, long a2, long a3, long a4, long a5)
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

/* Opens @path read-write; returns the fd or -errno. */
static inline long open_rdwr(const char *path)
{
	return syscall6(SYS_openat, AT_FDCWD, (long)path, O_RDWR, 0, 0, 0);
}

/* Whether a syscall result that is an address (mmap) is in fact -errno. */
static inline int is_err(long r)
{
	return r < 0 && r > -4096;
}

/* strlen. */
static inline unsigned long len(const char *s)
{
	unsigned long n = 0;

	while (s[n])
		n++;
	return n;
}

/* Writes @s to stdout. */
static inline void put(const char *s)
{
	syscall6(SYS_write, 1, (long)s, (long)len(s), 0, 0, 0);
}

/* Exits the process with @status. */
static inline __attribute__((noreturn)) void quit(int status)
{
	for (;;)
		syscall6(SYS_exit, status, 0, 0, 0, 0, 0);
}

/* Parses hex (always hex) with an optional 0x prefix, at most 16 digits; returns 0 on bad input. */
static inline int parse_hex(const char *s, u64 *out)
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

/* Formats @v as "0x" and 16 lowercase hex digits into @buf (19 bytes with the NUL). */
static inline void fmt_hex(char *buf, u64 v)
{
	int i;

	buf[0] = '0';
	buf[1] = 'x';
	for (i = 0; i < 16; i++)
		buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 0xf];
	buf[18] = 0;
}

/* Writes @v to stdout as "0x" and 16 hex digits. */
static inline void put_hex16(u64 v)
{
	char buf[19];

	fmt_hex(buf, v);
	put(buf);
}

/* Writes @v to stdout in decimal. */
static inline void put_dec(u64 v)
{
	char buf[21];
	int i = 20;

	buf[i] = 0;
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(buf + i);
}

/* Whether strings @a and @b are equal. */
static inline int streq(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

/* Opens /dev/warden_probe (tests/guest/modules/warden_probe: physical memory by mmap); on failure prints
 * "@name: cannot open /dev/warden_probe (is warden_probe.ko loaded?)" and exits with status 3. */
static inline long probe_open(const char *name)
{
	long fd = open_rdwr("/dev/warden_probe");

	if (fd < 0) {
		put(name);
		put(": cannot open /dev/warden_probe (is warden_probe.ko loaded?)\n");
		quit(3);
	}
	return fd;
}

/* Maps @bytes bytes of physical memory at @pa (page-aligned) with @prot through the probe device @fd
 * (probe_open); on failure prints "@name: @what" and exits with status 3. */
static inline long probe_map(const char *name, long fd, u64 pa, unsigned long bytes, long prot, const char *what)
{
	long map = syscall6(SYS_mmap, 0, (long)bytes, prot, MAP_SHARED, fd, (long)pa);

	if (is_err(map)) {
		put(name);
		put(": ");
		put(what);
		put("\n");
		quit(3);
	}
	return map;
}

/* Defined by the program: the C entry point, see the top of this file. */
void start_c(long *sp);

__asm__(".global _start\n"
	"_start:\n"
	"	mov x0, sp\n"
	"	bl start_c\n");

#endif
