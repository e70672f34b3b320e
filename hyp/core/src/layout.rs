//! The physical memory layout shared by the hypervisor image and `cargo xtask` (the boot protocol).
//!
//! QEMU's `virt` machine puts RAM at [`RAM_BASE`] and loads the hypervisor image (it carries an arm64 Image
//! header with `text_offset` = 2 MiB) at [`HYP_LOAD_PA`]. The hypervisor owns the carve-out
//! `[HYP_CARVEOUT_PA, HYP_CARVEOUT_PA + HYP_CARVEOUT_SIZE)` (its image, stacks and boot heap) and a second
//! region it sizes from the machine and places at boot ([`crate::sizing`]: stream table, SMMU queues, page
//! ownership, page tables). The host never gets a stage-2 mapping for either. Just above the carve-out the hypervisor
//! writes the rewritten device tree for the host ([`HOST_DTB_PA`], host-visible RAM that Linux reserves as its
//! FDT), and xtask loads the uncompressed Linux `Image` at [`HOST_KERNEL_PA`] with QEMU's generic loader.
//!
//! Every region below is aligned to a 2 MiB level-2 block ([`PGSIZE_2M`]), so that the EL2 stage-1 and the
//! host stage-2 map each region with blocks.

use warden_abi::PGSIZE_2M;

/// Base of RAM on QEMU's `virt` machine.
pub const RAM_BASE: u64 = 0x4000_0000;
/// Where QEMU loads the hypervisor image (RAM base + the image header's `text_offset`).
pub const HYP_LOAD_PA: u64 = RAM_BASE + PGSIZE_2M;
/// Start of the memory the hypervisor keeps for itself.
pub const HYP_CARVEOUT_PA: u64 = RAM_BASE;
/// Size of the fixed part of the hypervisor carve-out (12 MiB: stacks, canary pages, image, boot heap). The
/// rest of the hyp's memory is sized from the machine at boot and placed elsewhere in RAM
/// ([`crate::sizing`]).
pub const HYP_CARVEOUT_SIZE: u64 = 6 * PGSIZE_2M;
/// Where the hypervisor writes the device tree it hands to the host (host RAM, just above the carve-out).
pub const HOST_DTB_PA: u64 = HYP_CARVEOUT_PA + HYP_CARVEOUT_SIZE;
/// The largest device tree the hypervisor hands to the host.
pub const HOST_DTB_MAX_SIZE: u64 = PGSIZE_2M;
/// Where xtask loads the host's uncompressed arm64 Linux `Image` (2 MiB aligned, as the boot protocol asks).
pub const HOST_KERNEL_PA: u64 = HOST_DTB_PA + HOST_DTB_MAX_SIZE;

static_assertions::const_assert_eq!(HOST_KERNEL_PA % PGSIZE_2M, 0);
static_assertions::const_assert!(HYP_LOAD_PA >= HYP_CARVEOUT_PA);
static_assertions::const_assert!(HYP_LOAD_PA < HYP_CARVEOUT_PA + HYP_CARVEOUT_SIZE);

/// Maximum number of CPUs the hypervisor brings up (one EL2 stack each).
pub const HYP_MAX_CPUS: usize = 8;
/// Size of each CPU's EL2 stack.
pub const HYP_STACK_SIZE: u64 = 0x1_0000;
/// Base of the per-CPU EL2 stacks, at the bottom of the carve-out (below the image): CPU `n`'s stack is
/// `[HYP_STACKS_PA + n * HYP_STACK_SIZE, HYP_STACKS_PA + (n + 1) * HYP_STACK_SIZE)`.
pub const HYP_STACKS_PA: u64 = HYP_CARVEOUT_PA;
/// The most the hypervisor image (text, data, bss) may occupy from [`HYP_LOAD_PA`] (the linker script checks).
pub const HYP_IMAGE_MAX_SIZE: u64 = 3 * PGSIZE_2M;
/// Start of the hypervisor's boot heap (the device tree, the EL2 stage-1): the rest of the fixed carve-out
/// after the image. At boot the sized part of the carve-out ([`crate::sizing`]) is added to the heap.
pub const HYP_HEAP_PA: u64 = HYP_LOAD_PA + HYP_IMAGE_MAX_SIZE;
/// Size of the boot heap.
pub const HYP_HEAP_SIZE: u64 = HYP_CARVEOUT_PA + HYP_CARVEOUT_SIZE - HYP_HEAP_PA;
/// Canary pages: the hypervisor fills them at boot with [`canary_word`] and never writes them again, and
/// `STAT HYP_INTEGRITY` hashes them (with the image's text and read-only data), so a test can aim DMA at them
/// and check afterwards that nothing changed. They sit in the otherwise unused part of the carve-out between
/// the EL2 stacks and the image.
pub const HYP_CANARY_PA: u64 = HYP_CARVEOUT_PA + 0x10_0000;
/// Size of the canary pages (four 4 KiB pages).
pub const HYP_CANARY_SIZE: u64 = 0x4000;
/// The 64-bit word the hypervisor writes at canary address `pa` ("WARDCANY" mixed with the address, so a
/// copy of one canary word to another place is detected too).
pub const fn canary_word(pa: u64) -> u64 {
    0x5741_5244_4341_4e59 ^ pa.rotate_left(17)
}

/// Where the PL011 is on QEMU's `virt` machine: used only for the very first messages, before the device
/// tree is read.
pub const EARLY_UART_PA: u64 = 0x0900_0000;

static_assertions::const_assert!(
    HYP_STACKS_PA + HYP_MAX_CPUS as u64 * HYP_STACK_SIZE <= HYP_LOAD_PA
);
static_assertions::const_assert!(
    HYP_CANARY_PA >= HYP_STACKS_PA + HYP_MAX_CPUS as u64 * HYP_STACK_SIZE
);
static_assertions::const_assert!(HYP_CANARY_PA + HYP_CANARY_SIZE <= HYP_LOAD_PA);
static_assertions::const_assert_eq!(HYP_CANARY_PA % 0x1000, 0);
static_assertions::const_assert_eq!(HYP_HEAP_PA % PGSIZE_2M, 0);
static_assertions::const_assert!(HYP_HEAP_SIZE >= 4 << 20);
