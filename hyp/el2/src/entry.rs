//! Entry points: the arm64 Image header, the boot CPU's entry, the secondary CPUs' entry (the address the
//! hypervisor gives PSCI `CPU_ON`), and the boot stage-1 page table that lets Rust run with the MMU and
//! caches on from its first instruction.
//!
//! With the MMU off every data access is Device-nGnRnE and must be aligned; compiled Rust does not promise
//! that (formatting, `memcpy`), so the assembly enables a small identity map before calling into Rust:
//! the first 4 GiB of physical address space, `[0, 1 GiB)` as device memory (the `virt` machine's devices)
//! and `[1 GiB, 4 GiB)` as normal write-back memory (RAM: the image, stacks, heap and the DTB QEMU put at
//! RAM base + 128 MiB). [`crate::mmu`] replaces it with the real map once the device tree is read. Both use
//! the same `TCR_EL2` (48-bit VA, 4 KiB granule, root at level 0), so the switch only changes `TTBR0_EL2`.

use core::arch::global_asm;
use warden_abi::{PAGE_SIZE, PGSIZE_1G, TABLE_ENTRIES};
use warden_core::layout;

/// A translation table: one page-aligned page of descriptors.
#[repr(C, align(4096))]
pub struct Table(pub [u64; TABLE_ENTRIES]);

static_assertions::const_assert_eq!(core::mem::align_of::<Table>() as u64, PAGE_SIZE);
static_assertions::const_assert_eq!(core::mem::size_of::<Table>() as u64, PAGE_SIZE);

/// Block/page descriptor bit 0: valid.
const DESC_VALID: u64 = 1;
/// `AttrIndx` field shift (bits 4:2).
const DESC_ATTR_SHIFT: u64 = 2;
/// `AP[1]`, RES1 in the single-privilege EL2 regime.
const DESC_AP1_RES1: u64 = 1 << 6;
/// Inner shareable (`SH` = 0b11, bits 9:8).
const DESC_SH_INNER: u64 = 3 << 8;
/// Access flag.
const DESC_AF: u64 = 1 << 10;
/// Execute-never (EL2 stage 1).
const DESC_XN: u64 = 1 << 54;
/// `MAIR_EL2` index of Device-nGnRE.
pub const MAIR_IDX_DEVICE: u64 = 0;
/// `MAIR_EL2` index of normal write-back memory.
pub const MAIR_IDX_NORMAL: u64 = 1;
/// `MAIR_EL2`: attribute 0 Device-nGnRE (0x04), attribute 1 normal inner/outer write-back
/// read/write-allocate (0xff).
pub const MAIR_EL2_VALUE: u64 = 0x04 | (0xff << 8);
/// `TCR_EL2`: `T0SZ` = 16 (48-bit VA), `IRGN0`/`ORGN0` write-back write-allocate, `SH0` inner, `TG0` 4 KiB,
/// `PS` = 48 bits (bits 18:16 = 5; a CPU with fewer bits behaves as if its own size were programmed),
/// RES1 bits 31 and 23.
pub const TCR_EL2_VALUE: u64 =
    16 | (1 << 8) | (1 << 10) | (3 << 12) | (5 << 16) | (1 << 23) | (1 << 31);
/// `SCTLR_EL2` with the MMU, data and instruction caches and SP alignment checks on: RES1 bits
/// (29, 28, 23, 22, 18, 16, 11, 5, 4) | `I` | `SA` | `C` | `M`. Little-endian, `WXN` off.
pub const SCTLR_EL2_MMU_ON: u64 = 0x30c5_0830 | (1 << 12) | (1 << 3) | (1 << 2) | 1;

const fn device_block(pa: u64) -> u64 {
    pa | DESC_VALID | (MAIR_IDX_DEVICE << DESC_ATTR_SHIFT) | DESC_AP1_RES1 | DESC_AF | DESC_XN
}

const fn normal_block(pa: u64) -> u64 {
    pa | DESC_VALID | (MAIR_IDX_NORMAL << DESC_ATTR_SHIFT) | DESC_AP1_RES1 | DESC_SH_INNER | DESC_AF
}

const fn boot_l1() -> Table {
    let mut t = [0u64; TABLE_ENTRIES];
    t[0] = device_block(0);
    t[1] = normal_block(PGSIZE_1G);
    t[2] = normal_block(2 * PGSIZE_1G);
    t[3] = normal_block(3 * PGSIZE_1G);
    Table(t)
}

/// Level-1 table of the boot map (four 1 GiB blocks).
#[unsafe(no_mangle)]
static mut BOOT_PT_L1: Table = boot_l1();
/// Level-0 root of the boot map; entry 0 is pointed at [`BOOT_PT_L1`] by the entry assembly (a pointer
/// cannot be turned into an integer in a constant).
#[unsafe(no_mangle)]
static mut BOOT_PT_L0: Table = Table([0; TABLE_ENTRIES]);

// `mov_imm`: load a 64-bit constant with movz/movk (the assembler has no `ldr =` literal pools here).
global_asm!(
    r#"
    .macro mov_imm reg, val
    movz    \reg, #((\val) & 0xffff)
    movk    \reg, #(((\val) >> 16) & 0xffff), lsl #16
    movk    \reg, #(((\val) >> 32) & 0xffff), lsl #32
    movk    \reg, #(((\val) >> 48) & 0xffff), lsl #48
    .endm
    "#
);

global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    /* arm64 Image header (Documentation/arch/arm64/booting.rst) */
    b       primary_entry               /* code0 */
    .long   0                           /* code1 */
    .quad   {text_offset}               /* text_offset */
    .quad   __image_size                /* image_size (with bss) */
    .quad   0xa                         /* flags: little-endian, 4 KiB pages, anywhere */
    .quad   0                           /* res2 */
    .quad   0                           /* res3 */
    .quad   0                           /* res4 */
    .ascii  "ARM\x64"                   /* magic */
    .long   0                           /* res5 */

primary_entry:
    mov     x19, x0                     /* DTB */
    mov_imm x1, {stack0_top}
    mov     sp, x1
    adr     x1, warden_vectors
    msr     vbar_el2, x1
    isb
    /* clear .bss (aligned to 16 bytes at both ends by the linker script) */
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    stp     xzr, xzr, [x1], #16
    b       1b
2:  bl      enable_boot_mmu
    mov     x0, x19
    bl      warden_main
3:  wfe
    b       3b

    /* Secondary CPUs: PSCI CPU_ON entry at EL2, MMU off, x0 = logical CPU index. */
    .global warden_secondary_entry
warden_secondary_entry:
    cmp     x0, #{max_cpus}
    b.hs    3b
    mov     x19, x0
    mov_imm x1, {stacks}
    mov_imm x2, {stack_size}
    madd    x1, x0, x2, x1
    add     x1, x1, x2
    mov     sp, x1
    adr     x1, warden_vectors
    msr     vbar_el2, x1
    isb
    bl      enable_boot_mmu
    mov     x0, x19
    bl      warden_secondary_main
    b       3b

    /* Turn on the boot identity map. Clobbers x0-x2. */
enable_boot_mmu:
    adrp    x0, BOOT_PT_L1
    orr     x0, x0, #3                  /* table descriptor */
    adrp    x1, BOOT_PT_L0
    str     x0, [x1]
    dc      civac, x1                   /* the walker may read through the cache */
    dsb     sy
    mov_imm x0, {mair}
    msr     mair_el2, x0
    mov_imm x0, {tcr}
    msr     tcr_el2, x0
    msr     ttbr0_el2, x1
    isb
    tlbi    alle2
    dsb     nsh
    isb
    mov_imm x0, {sctlr}
    msr     sctlr_el2, x0
    isb
    ret
    "#,
    text_offset = const warden_abi::PGSIZE_2M,
    stack0_top = const layout::HYP_STACKS_PA + layout::HYP_STACK_SIZE,
    stacks = const layout::HYP_STACKS_PA,
    stack_size = const layout::HYP_STACK_SIZE,
    max_cpus = const layout::HYP_MAX_CPUS,
    mair = const MAIR_EL2_VALUE,
    tcr = const TCR_EL2_VALUE,
    sctlr = const SCTLR_EL2_MMU_ON,
);

unsafe extern "C" {
    /// The secondary CPUs' EL2 entry point (defined in the assembly above).
    pub fn warden_secondary_entry();
}

/// Physical address of the secondary entry point (identity map: its address).
pub fn secondary_entry_pa() -> u64 {
    warden_secondary_entry as *const () as u64
}
