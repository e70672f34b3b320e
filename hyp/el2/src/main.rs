//! The Warden EL2 image.
//!
//! QEMU enters [`entry`] at EL2 with the MMU off and x0 = the DTB. The assembly sets up a stack, the vectors
//! and a boot identity map, clears `.bss` and calls [`warden_main`], which:
//! 1. starts the boot heap and the console, reads the DTB with `warden-dt`, sizes and places the hyp's
//!    memory (`warden_core::sizing`; a machine too small gets a `warden:` line and a power-off);
//! 2. builds the EL2 stage-1 ([`mmu`]), adds the sized heap, builds the host stage-2 (`warden_core::host_s2`);
//! 3. takes the SMMU ([`smmu`]): abort first, then every DT StreamID in the host-identity domain;
//! 4. writes the rewritten DTB for the host at `layout::HOST_DTB_PA` and checks the Linux `Image` at
//!    `layout::HOST_KERNEL_PA`;
//! 5. sets up EL2 for the host ([`sysregs`]) and ERETs to Linux at EL1h with x0 = the host DTB.
//!
//! From then on the hypervisor runs only on exceptions ([`traps`]): PSCI relay (secondary CPUs come in
//! through [`warden_secondary_main`]), host stage-2 faults, and the Warden hypercalls.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

mod console;
mod entry;
mod firmware;
mod gic;
mod host_mem;
mod integrity;
mod mmio;
mod mmu;
mod percpu;
mod smmu;
mod sysregs;
mod traps;
mod vectors;

use aarch64_cpu::registers::{MPIDR_EL1, Readable};
use alloc::vec::Vec;
use buddy_system_allocator::LockedHeap;
use spin::Once;
use warden_core::host_s2::{
    self, HostS2Layout, HostStage2, IdentityIovaBits, PoolTables, RamLeaves,
};
use warden_core::{layout, sizing};
use warden_dt::PhysRange;

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Where the boot map (see [`entry`]) maps normal memory: the DTB must lie there to be read.
const BOOT_MAP_RAM: PhysRange = PhysRange::from_bounds(1 << 30, 4 << 30);
/// Offset of `image_size` in an arm64 Linux `Image` header.
const IMAGE_SIZE_OFFSET: u64 = 0x10;
/// Offset of the magic in an arm64 Linux `Image` header.
const IMAGE_MAGIC_OFFSET: u64 = 0x38;
/// The arm64 `Image` magic, "ARM\x64" little-endian.
const IMAGE_MAGIC: u32 = 0x644d_5241;
/// The largest boot DTB the hypervisor reads.
const DTB_MAX_SIZE: usize = 2 << 20;

/// Kernel command-line word that makes the hypervisor take a deliberate data abort at EL2 during boot, to
/// exercise the unexpected-exception path (register dump, then power-off). Feature `test-hooks` only.
#[cfg(feature = "test-hooks")]
const EL2_FAULT_TEST: &str = "warden.test=el2-fault";
/// An address no EL2 stage-1 map covers (just below the top of the 48-bit VA space).
#[cfg(feature = "test-hooks")]
const UNMAPPED_VA: u64 = 0xffff_ffff_f000;

/// Reads [`UNMAPPED_VA`]: the vectors dump the registers and power the machine off.
#[cfg(feature = "test-hooks")]
fn el2_fault_test() -> ! {
    log!("{EL2_FAULT_TEST}: reading unmapped address {UNMAPPED_VA:#x} at EL2");
    // SAFETY: Deliberately faulting: the read never completes, the exception handler never returns.
    let v = unsafe { core::ptr::read_volatile(UNMAPPED_VA as *const u64) };
    panic!("read of an unmapped address returned {v:#x}");
}

/// Whether the hyp heap has at least `bytes` free (a conservative check before work that allocates).
pub fn heap_has_room(bytes: usize) -> bool {
    let heap = HEAP.lock();
    heap.stats_total_bytes()
        .saturating_sub(heap.stats_alloc_actual())
        >= bytes
}

/// Whether `pa` is host RAM the host owns now (for the PSCI `CPU_ON` entry-point check).
pub fn host_is_ram(pa: u64) -> bool {
    host_mem::is_host_ram(pa)
}

/// The boot CPU's Rust entry, called by the assembly with the MMU (boot map) on.
#[unsafe(no_mangle)]
extern "C" fn warden_main(dtb_pa: u64) -> ! {
    let started = counter_us();
    log!(
        "Warden hypervisor {} starting at EL2 (DTB at {dtb_pa:#x})",
        env!("CARGO_PKG_VERSION")
    );
    // SAFETY: The heap range is inside the carve-out, mapped read/write by the boot map and the final map,
    // used for nothing else, and handed to the allocator once.
    unsafe {
        HEAP.lock()
            .init(layout::HYP_HEAP_PA as usize, layout::HYP_HEAP_SIZE as usize);
    }

    let dtb = boot_dtb(dtb_pa);
    let platform = match warden_dt::parse(dtb) {
        Ok(p) => p,
        Err(e) => panic!("cannot parse the boot DTB: {e}"),
    };
    if let Some(uart) = &platform.uart {
        console::set_base(uart.reg.base);
    }
    let smmus: Vec<PhysRange> = platform.smmus.iter().map(|s| s.reg).collect();
    log!(
        "{} MiB RAM, {} CPUs, {} SMMU(s), {} PCI host(s), UART at {:#x}",
        platform.memory_size() >> 20,
        platform.cpus.len(),
        smmus.len(),
        platform.pci_hosts.len(),
        console::base()
    );

    // The hyp's memory, sized from the machine and placed where nothing the loader put in RAM lies.
    let loaded = [
        PhysRange {
            base: dtb_pa,
            size: dtb.len() as u64,
        },
        PhysRange {
            base: layout::HOST_KERNEL_PA,
            size: kernel_image_size(),
        },
    ];
    // How the host stage-2 maps RAM: blocks on hardware, pages on QEMU virt, or as `warden.host_s2=` says.
    let leaves = RamLeaves::choose(&platform.compatible, platform.chosen.bootargs.as_deref());
    log!("host stage-2: {leaves}");
    // The host-identity domain's input size: as the machine needs, or wider as `warden.identity_iova_bits=` says.
    let identity_bits = IdentityIovaBits::choose(platform.chosen.bootargs.as_deref());
    log!("host-identity input size: {identity_bits}");
    let plan = match sizing::plan(&platform, leaves.leaves, identity_bits.bits, &loaded) {
        Ok(p) => p,
        Err(e) => not_enough_memory(&platform, e),
    };
    let m = plan.memory;
    log!(
        "hyp memory: {} KiB = {} KiB fixed at {:#x} + {} KiB sized from the machine at {:#x} (SMMU {} KiB, \
         page ownership {} KiB, host-identity tables {} KiB, domain pool {} KiB, heap {} KiB with {} KiB for the ITS emulation \
         and {} KiB for the host stage-2's level-3 tables), {}.{:02} % of RAM",
        m.total() >> 10,
        m.fixed >> 10,
        layout::HYP_CARVEOUT_PA,
        m.sized() >> 10,
        plan.region.base,
        m.smmu >> 10,
        m.ownership >> 10,
        m.identity_tables >> 10,
        m.domain_pool >> 10,
        m.heap() >> 10,
        m.its >> 10,
        m.host_s2_tables >> 10,
        m.basis_points_of(platform.memory_size()) / 100,
        m.basis_points_of(platform.memory_size()) % 100
    );

    // EL2 stage-1.
    let mut devices = smmus.clone();
    devices.push(PhysRange {
        base: console::base(),
        size: 0x1000,
    });
    devices.extend(gic::el2_frames(&platform));
    mmu::init(&mmu::El2MapSpec {
        ram: &platform.memory,
        devices: &devices,
    });
    log!("EL2 stage-1 MMU on");
    let heap = plan.heap();
    // SAFETY: The heap part of the sized region is RAM the host stage-2, the DT for the host and the SMMU all
    // exclude (it is in `plan.hyp_ranges()`), mapped read/write by the stage-1 just built, and used by nothing
    // else.
    unsafe {
        HEAP.lock()
            .add_to_heap(heap.base as usize, heap.end() as usize);
    }
    #[cfg(feature = "test-hooks")]
    if platform
        .chosen
        .bootargs
        .as_deref()
        .is_some_and(|a| a.split(' ').any(|w| w == EL2_FAULT_TEST))
    {
        el2_fault_test();
    }

    // The GIC frames the hyp emulates (only with an SMMU: the emulation pins through its ownership map).
    let gic_layout = if platform.smmus.is_empty() {
        warden_core::gic::GicLayout::default()
    } else {
        gic::probe(&platform)
    };

    // Host stage-2: RAM minus the hyp's memory (fixed carve-out and sized part); as MMIO only the classified
    // devices (deny by default), minus the GIC frames the hyp emulates.
    let hyp = plan.hyp_ranges();
    let devices = warden_core::devices::classify(&platform, &hyp);
    for d in devices.withheld() {
        log!("{d}");
    }
    let mut s2_layout = HostS2Layout::from_devices(&devices, leaves.leaves);
    let gic_frames = gic_layout.trapped_frames();
    s2_layout.excluded.extend(gic_frames.iter().copied());
    // Its tables come from the heap (both parts) while it is built, from the host's domain pool once the
    // SMMU bring-up has made it (`host_mem::use_pool`).
    let heap_ranges = [
        PhysRange {
            base: layout::HYP_HEAP_PA,
            size: layout::HYP_HEAP_SIZE,
        },
        heap,
    ];
    let mut s2 = match HostStage2::build_with(&s2_layout.spec(), PoolTables::new(&heap_ranges)) {
        Ok(s2) => s2,
        Err(e) => panic!("cannot build the host stage-2: {e}"),
    };
    let Some(vtcr) = host_s2::vtcr(sysregs::parange()) else {
        panic!("the CPU has fewer than 48 physical address bits")
    };
    // SAFETY: VTCR_EL2 is programmed with `vtcr` before HCR_EL2.VM is set (enable_host_stage2 below), the
    // table lives in `host_mem` forever, and it maps all host RAM and MMIO.
    unsafe { s2.activate() };
    let root = s2.root_pa();
    host_mem::install(s2);
    log!(
        "host stage-2 built (root {root:#x}); hyp carve-out, {} SMMU frame(s), {} GIC frame(s) and {} withheld \
         device(s) unmapped",
        smmus.len(),
        gic_frames.len(),
        devices.withheld().count()
    );

    // The SMMU: aborting from the first register write, then every StreamID of the DT in host-identity.
    if platform.smmus.is_empty() {
        log!("no SMMU in the device tree: DMA is not confined");
    } else {
        match smmu::bring_up(&platform, &plan) {
            Ok(w) => {
                w.set_trap_log(&traps::HOST_TRAPS);
                host_mem::use_pool(w.page_pool());
                gic::install(&platform, &gic_layout, w.ownership());
                w.set_gic_stats(gic::refused, gic::pinned_pages);
                integrity::install(w, platform.chosen.bootargs.as_deref());
            }
            Err(e) => panic!("cannot take the SMMU: {e}"),
        }
    }

    // The device tree for the host.
    let edits = warden_dt::HostDtEdits {
        reserved_no_map: plan.reserved().iter().map(|r| (r.base, r.size)).collect(),
        smmu_compatible: warden_abi::DT_COMPATIBLE,
        disable: devices.withheld().map(|d| d.node.path.as_str()).collect(),
    };
    let host_dtb = match warden_dt::rewrite_for_host(dtb, &edits) {
        Ok(d) => d,
        Err(e) => panic!("cannot rewrite the DTB for the host: {e}"),
    };
    if host_dtb.len() as u64 > layout::HOST_DTB_MAX_SIZE {
        panic!(
            "host DTB is {} bytes, more than the {} byte slot",
            host_dtb.len(),
            layout::HOST_DTB_MAX_SIZE
        );
    }
    // SAFETY: HOST_DTB_PA..+HOST_DTB_MAX_SIZE is host RAM reserved for this by the boot protocol, mapped
    // read/write in the EL2 stage-1, not overlapping the boot DTB slice (QEMU puts that at RAM + 128 MiB)
    // nor anything Rust owns.
    unsafe {
        core::ptr::copy_nonoverlapping(
            host_dtb.as_ptr(),
            layout::HOST_DTB_PA as *mut u8,
            host_dtb.len(),
        );
    }
    mmu::clean_dcache_to_poc(layout::HOST_DTB_PA, host_dtb.len() as u64);
    log!(
        "host DTB written at {:#x} ({} bytes)",
        layout::HOST_DTB_PA,
        host_dtb.len()
    );

    // The Linux Image.
    // SAFETY: HOST_KERNEL_PA is host RAM, mapped in the EL2 stage-1; an aligned 4-byte read.
    let magic = unsafe {
        core::ptr::read_volatile((layout::HOST_KERNEL_PA + IMAGE_MAGIC_OFFSET) as *const u32)
    };
    if magic != IMAGE_MAGIC {
        panic!(
            "no arm64 Linux Image at {:#x} (magic {magic:#x}); load one with -device loader,file=Image,addr={:#x},force-raw=on",
            layout::HOST_KERNEL_PA,
            layout::HOST_KERNEL_PA
        );
    }

    percpu::init(platform.cpus.iter().map(|c| c.mpidr.0));
    let me = percpu::index_of(MPIDR_EL1.get()).unwrap_or(0);
    percpu::set_current_index(me);
    sysregs::init_el2_for_host();
    sysregs::enable_host_stage2(vtcr, root);
    VTCR.call_once(|| vtcr);
    let now = counter_us();
    log!(
        "entering Linux at {:#x} (EL1h, x0 = {:#x}); hyp boot {} us, {} us after reset by the counter",
        layout::HOST_KERNEL_PA,
        layout::HOST_DTB_PA,
        now.saturating_sub(started),
        now
    );
    // SAFETY: EL2 is set up for the host (system registers, stage-2), the Image is at HOST_KERNEL_PA and the
    // DTB at HOST_DTB_PA, cleaned to the point of coherency.
    unsafe { vectors::enter_el1(layout::HOST_KERNEL_PA, layout::HOST_DTB_PA) }
}

/// The physical counter (`CNTPCT_EL0`, zero at reset on QEMU virt) in microseconds: for the boot log's
/// phase times only (under `-icount` it counts instructions).
fn counter_us() -> u64 {
    use aarch64_cpu::registers::{CNTFRQ_EL0, CNTPCT_EL0};
    let freq = CNTFRQ_EL0.get().max(1);
    // u128: ticks × 10^6 overflows u64 after ~5 hours at 1 GHz.
    (u128::from(CNTPCT_EL0.get()) * 1_000_000 / u128::from(freq)) as u64
}

/// `VTCR_EL2`, as computed by the boot CPU, for the secondaries.
static VTCR: Once<u64> = Once::new();

/// A secondary CPU's Rust entry (from [`entry`], boot map on, x0 = its logical index).
#[unsafe(no_mangle)]
extern "C" fn warden_secondary_main(cpu: usize) -> ! {
    percpu::set_current_index(cpu);
    mmu::switch_secondary();
    let (Some(root), Some(&vtcr)) = (host_mem::root_pa(), VTCR.get()) else {
        panic!("CPU {cpu} started before the host stage-2 exists");
    };
    sysregs::init_el2_for_host();
    sysregs::enable_host_stage2(vtcr, root);
    let (entry, context) = percpu::boot_args(cpu);
    log!("CPU {cpu} up, entering the host at {entry:#x}");
    // SAFETY: EL2 is set up for the host on this CPU; `entry` is host RAM (checked when CPU_ON was relayed).
    unsafe { vectors::enter_el1(entry, context) }
}

/// The `image_size` of the Linux `Image` at `layout::HOST_KERNEL_PA` (0 if there is none: the boot stops
/// later with a clear message), at least one 2 MiB block.
fn kernel_image_size() -> u64 {
    // SAFETY: HOST_KERNEL_PA is RAM in the boot map; aligned 8-byte reads of the Image header.
    let size = unsafe {
        core::ptr::read_volatile((layout::HOST_KERNEL_PA + IMAGE_SIZE_OFFSET) as *const u64)
    };
    size.clamp(warden_abi::PGSIZE_2M, 1 << 30)
}

/// Stops the boot cleanly when the machine cannot hold the hyp's memory: what was needed, what was found,
/// then power-off.
fn not_enough_memory(platform: &warden_dt::Platform, e: sizing::SizingError) -> ! {
    log!(
        "not enough memory for the hypervisor: {e} (RAM: {} MiB in {} range(s)); powering off",
        platform.memory_size() >> 20,
        platform.memory.len()
    );
    firmware::system_off()
}

/// The boot DTB as a slice, after checking it lies in the boot map's RAM.
fn boot_dtb(pa: u64) -> &'static [u8] {
    if !BOOT_MAP_RAM.contains(pa) || !BOOT_MAP_RAM.contains(pa + warden_dt::MIN_HEADER_SIZE as u64)
    {
        panic!("DTB at {pa:#x} is outside the boot map");
    }
    // SAFETY: The header lies in RAM mapped by the boot map; QEMU wrote it and nothing else writes there.
    let header =
        unsafe { core::slice::from_raw_parts(pa as *const u8, warden_dt::MIN_HEADER_SIZE) };
    let size = match warden_dt::dtb_total_size(header) {
        Ok(s) if s <= DTB_MAX_SIZE && BOOT_MAP_RAM.contains(pa + s as u64 - 1) => s,
        Ok(s) => panic!("DTB at {pa:#x} has an unusable size {s:#x}"),
        Err(e) => panic!("no DTB at {pa:#x}: {e}"),
    };
    // SAFETY: As above, for the whole blob; it stays untouched for the hypervisor's lifetime (host RAM the
    // host is never told about as a DTB, and only read here during boot).
    unsafe { core::slice::from_raw_parts(pa as *const u8, size) }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    match info.location() {
        Some(l) => console::log_line_forced(format_args!(
            "PANIC: {} (CPU {}, {}:{})",
            info.message(),
            percpu::current_index_or_max(),
            l.file(),
            l.line()
        )),
        None => console::log_line_forced(format_args!("PANIC: {}", info.message())),
    }
    firmware::system_off()
}
