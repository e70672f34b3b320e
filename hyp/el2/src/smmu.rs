//! The SMMU at EL2: real register access and DMA memory for warden-smmu's driver, and the boot-time bring-up
//! that hands the SMMU to the hypercall dispatcher (`warden_core::smmu_backend::bring_up`).
//!
//! - [`SmmuRegs`]: the register frame through single `ldr`/`str` instructions (no Rust references to device
//!   memory, no `read_volatile`), ordered as Linux's `writel`/`readl`: `dsb st` before each store (queue
//!   entries and STEs written to memory are visible to the SMMU before the `CMDQ_PROD` write that publishes
//!   them), `dsb ld` after each load (event records are read after the `EVTQ_PROD` load that announced them).
//! - [`CarveoutDma`]: a bump allocator over the SMMU's part of the hyp's sized memory (`warden_core::sizing`:
//!   never freed, never mapped for the host or any device), VA == PA, volatile 64-bit accesses. The SMMU is coherent
//!   (`IDR0.COHACC`, checked by the driver), so no cache maintenance.
//! - [`bring_up`]: `GBPA.ABORT` first, probe (the features line is logged), enable with every StreamID aborting,
//!   the host-identity domain for every StreamID the DT's `iommu-map`s name; the result lives in a `static`.

use core::arch::asm;
use spin::Once;
use warden_core::dispatch::{self, IDENTITY_SPARE_TABLES, Warden};
use warden_core::sizing::{self, Plan};
use warden_core::smmu_backend::{self, BootConfig, BootError, SmmuBackend};
use warden_dt::{PhysRange, Platform};
use warden_smmu::{CmdqConsReader, DmaMemory, DmaWriter, RegisterAccess};

use crate::host_mem::El2HostStage2;
use crate::log;

/// Allocatable DMA domains.
const MAX_DOMAINS: u16 = 1024;
/// Pages the host may have donated at once.
const MAX_DONATED_PAGES: usize = 4096;
/// Capacity of the dispatcher's fault ring.
const EVENT_RING: usize = 256;

/// The SMMUv3 register frame (pages 0 and 1), at its physical address (= EL2 virtual address).
pub struct SmmuRegs {
    base: u64,
}

impl SmmuRegs {
    /// Register access to the SMMU frame at `base`.
    ///
    /// # Safety
    ///
    /// `[base, base + warden_smmu::regs::FRAME_SIZE)` must be the SMMU's register frame, mapped as device
    /// memory in the EL2 stage-1 on every CPU that uses the value, and used by nothing else (one driver).
    pub unsafe fn new(base: u64) -> Self {
        Self { base }
    }

    fn addr(&self, offset: usize, width: usize) -> u64 {
        assert!(
            offset.is_multiple_of(width) && offset + width <= warden_smmu::regs::FRAME_SIZE,
            "SMMU register offset {offset:#x} outside the frame"
        );
        self.base + offset as u64
    }
}

/// `SMMU_CMDQ_CONS` of the frame [`SmmuRegs`] owns, read by any CPU waiting for its `CMD_SYNC`.
pub struct SmmuCmdqCons {
    addr: u64,
}

impl CmdqConsReader for SmmuCmdqCons {
    fn read_cmdq_cons(&self) -> u32 {
        let value: u32;
        // SAFETY: `addr` is the aligned `CMDQ_CONS` register of the frame promised to `SmmuRegs::new`, mapped as
        // device memory on every CPU; reading it has no side effects (IHI 0070 §6.3.27), so concurrent reads
        // with the driver's owner are harmless. `dsb ld` orders later memory reads after this load.
        unsafe {
            asm!("ldr {v:w}, [{a}]", "dsb ld", v = out(reg) value, a = in(reg) self.addr,
                 options(nostack, preserves_flags));
        }
        value
    }
}

impl RegisterAccess for SmmuRegs {
    type Cons = SmmuCmdqCons;

    fn cmdq_cons_reader(&self) -> SmmuCmdqCons {
        SmmuCmdqCons {
            addr: self.addr(warden_smmu::regs::CMDQ_CONS, 4),
        }
    }

    fn read32(&mut self, offset: usize) -> u32 {
        let addr = self.addr(offset, 4);
        let value: u32;
        // SAFETY: `addr` is an aligned register inside the SMMU frame, mapped as device memory (promised to
        // `SmmuRegs::new`); the driver owns the frame. `dsb ld` orders later memory reads after this load.
        unsafe {
            asm!("ldr {v:w}, [{a}]", "dsb ld", v = out(reg) value, a = in(reg) addr,
                 options(nostack, preserves_flags));
        }
        value
    }

    fn write32(&mut self, offset: usize, value: u32) {
        let addr = self.addr(offset, 4);
        // SAFETY: As for `read32`; `dsb st` makes earlier memory writes (queue entries, STEs) visible first.
        unsafe {
            asm!("dsb st", "str {v:w}, [{a}]", v = in(reg) value, a = in(reg) addr,
                 options(nostack, preserves_flags));
        }
    }

    fn read64(&mut self, offset: usize) -> u64 {
        let addr = self.addr(offset, 8);
        let value: u64;
        // SAFETY: As for `read32`, for an aligned 64-bit register.
        unsafe {
            asm!("ldr {v}, [{a}]", "dsb ld", v = out(reg) value, a = in(reg) addr,
                 options(nostack, preserves_flags));
        }
        value
    }

    fn write64(&mut self, offset: usize, value: u64) {
        let addr = self.addr(offset, 8);
        // SAFETY: As for `write32`, for an aligned 64-bit register.
        unsafe {
            asm!("dsb st", "str {v}, [{a}]", v = in(reg) value, a = in(reg) addr,
                 options(nostack, preserves_flags));
        }
    }
}

/// The SMMU's memory: a bump allocator over `[base, end)` of the carve-out (identity-mapped normal memory).
pub struct CarveoutDma {
    base: u64,
    next: u64,
    end: u64,
}

impl CarveoutDma {
    /// The SMMU's part of the hyp's sized memory (`warden_core::sizing::Plan::smmu`), zeroed here.
    ///
    /// # Safety
    ///
    /// `region` must be hyp memory mapped read/write at VA == PA and used by nothing else, for good.
    pub unsafe fn over(region: PhysRange) -> Self {
        // SAFETY: Promised by the caller: the region is ours, mapped and not aliased.
        unsafe { core::ptr::write_bytes(region.base as *mut u8, 0, region.size as usize) };
        Self {
            base: region.base,
            next: region.base,
            end: region.end(),
        }
    }

    /// The region (for the boot log).
    pub fn region(&self) -> PhysRange {
        PhysRange {
            base: self.base,
            size: self.end - self.base,
        }
    }

    /// Bytes handed out so far.
    pub fn used(&self) -> u64 {
        self.next - self.base
    }

    fn check(&self, pa: u64) {
        assert!(
            pa.is_multiple_of(8) && pa >= self.base && pa < self.next,
            "SMMU driver access outside its memory: {pa:#x}"
        );
    }
}

/// [`CarveoutDma`]'s [`DmaWriter`]: any CPU writes its commands into the command queue with it.
pub struct CarveoutWriter {
    base: u64,
    end: u64,
}

impl DmaWriter for CarveoutWriter {
    fn write64(&self, pa: u64, value: u64) {
        assert!(
            pa.is_multiple_of(8) && pa >= self.base && pa < self.end,
            "SMMU driver access outside its memory: {pa:#x}"
        );
        // SAFETY: `pa` is an aligned word of the carve-out region (checked), mapped read/write at VA == PA and
        // owned by the driver (promised to `CarveoutDma::over`). The driver writes a slot only after reserving
        // it, so CPUs never write the same word at once. Volatile and single-copy-atomic: the SMMU reads
        // commands concurrently.
        unsafe { core::ptr::write_volatile(pa as *mut u64, value) }
    }
}

impl DmaMemory for CarveoutDma {
    type Writer = CarveoutWriter;

    fn writer(&self) -> CarveoutWriter {
        CarveoutWriter {
            base: self.base,
            end: self.end,
        }
    }

    fn alloc_zeroed(&mut self, size: usize, align: usize) -> Option<u64> {
        let start = self.next.checked_next_multiple_of(align as u64)?;
        let end = start.checked_add(size as u64)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        // The region was zeroed by `over` and is handed out once: nothing to clear.
        Some(start)
    }

    fn read64(&mut self, pa: u64) -> u64 {
        self.check(pa);
        // SAFETY: `pa` is an aligned word of this region (checked): carve-out memory mapped read/write at
        // VA == PA, owned by the driver. Volatile: the SMMU writes event records concurrently.
        unsafe { core::ptr::read_volatile(pa as *const u64) }
    }

    fn write64(&mut self, pa: u64, value: u64) {
        self.check(pa);
        // SAFETY: As for `read64`. Volatile and single-copy-atomic: the SMMU reads STEs and commands concurrently.
        unsafe { core::ptr::write_volatile(pa as *mut u64, value) }
    }

    fn write64s(&mut self, pa: u64, values: &[u64]) {
        let Some(last) = values.len().checked_sub(1) else {
            return;
        };
        // The region handed out is one range: checking both ends checks every word between them.
        self.check(pa);
        self.check(pa + 8 * last as u64);
        for (i, &value) in values.iter().enumerate() {
            // SAFETY: As for `write64`: the word lies between two checked words of this region.
            unsafe { core::ptr::write_volatile((pa as *mut u64).add(i), value) }
        }
    }
}

/// The dispatcher type of this image.
pub type El2Warden = Warden<SmmuBackend<SmmuRegs, CarveoutDma, El2HostStage2>>;

static WARDEN: Once<El2Warden> = Once::new();

/// Takes the first SMMU of `platform` (the EL2 stage-1 must map its frame as device memory) and builds the
/// dispatcher with every StreamID the DT routes to it in the host-identity domain. Call once, on the boot
/// CPU, before the host runs.
///
/// # Errors
///
/// No SMMU in the DT, or what `smmu_backend::bring_up` reports (missing feature, timeout, memory).
pub fn bring_up(platform: &Platform, plan: &Plan) -> Result<&'static El2Warden, BootError> {
    let Some(node) = platform.smmus.first() else {
        return Err(BootError::NoPhandle);
    };
    if (node.reg.size as usize) < warden_smmu::regs::FRAME_SIZE {
        panic!(
            "SMMU frame at {:#x} is only {:#x} bytes",
            node.reg.base, node.reg.size
        );
    }
    // SAFETY: The DT's SMMU frame; `mmu::init` mapped it as device memory for EL2 and the host stage-2 does
    // not map it; this is the only driver.
    let regs = unsafe { SmmuRegs::new(node.reg.base) };
    // SAFETY: The plan's SMMU part is hyp memory (never mapped for the host nor any device), mapped read/write
    // by `mmu::init`, and nothing else uses it.
    let mem = unsafe { CarveoutDma::over(plan.smmu()) };
    let dma_region = mem.region();
    let hyp = plan.hyp_ranges();
    // Host-identity's tables first: `Warden::new` takes its reserve from the first pages of the pool.
    let pool = [plan.identity_tables(), plan.domain_pool()];
    let config = BootConfig {
        warden: dispatch::Config {
            ram: &platform.memory,
            hyp: &hyp,
            pool: &pool,
            max_domains: MAX_DOMAINS,
            max_donated_pages: MAX_DONATED_PAGES,
            event_ring: EVENT_RING,
            identity_spare_tables: IDENTITY_SPARE_TABLES,
            identity_iova_bits: plan.identity_iova_bits,
            phys_offset: 0,
        },
        strtab_budget: plan.memory.smmu - sizing::SMMU_FIXED_BYTES,
        driver: warden_smmu::Config::default(),
    };
    let sids = smmu_backend::stream_ids(platform, node, 32);
    let w = smmu_backend::bring_up(platform, node, regs, mem, El2HostStage2, &config)?;
    log!("{}", w.backend().features());
    let c = w.backend().driver_counters();
    let (used, strtab_sids) = w
        .backend()
        .with_smmu(|s| (s.memory_mut().used(), s.sid_bits()));
    let total: u64 = sids.iter().map(|r| u64::from(r.count)).sum();
    log!(
        "SMMU at {:#x}: host-identity domain for {total} StreamID(s) in {} range(s) ({} level-2 tables, \
         {} KiB of {} KiB at {:#x}, {strtab_sids}-bit stream table), other StreamIDs abort; \
         {} commands, {} syncs so far",
        node.reg.base,
        sids.len(),
        c.l2_tables,
        used >> 10,
        dma_region.size >> 10,
        dma_region.base,
        c.commands,
        c.syncs
    );
    log!(
        "host-identity domain: {} (covers host RAM and the MSI doorbells; SMMU IAS {} bits)",
        w.identity_geometry(),
        w.backend().features().ias_bits
    );
    let ip = w.identity_pool_stats();
    let heap_free_mib = (1..=32)
        .take_while(|m| crate::heap_has_room(m << 20))
        .last();
    log!(
        "page tables: host-identity pool {} pages ({} in use: boot tables), host domains {} KiB of carve-out + donations; \
         hyp heap >= {} MiB free",
        ip.total,
        ip.total - ip.free,
        (pool[0].size + pool[1].size) / 1024 - ip.total as u64 * 4,
        heap_free_mib.unwrap_or(0)
    );
    w.set_hyp_memory(plan.memory.total());
    Ok(WARDEN.call_once(|| w))
}

/// A Warden hypercall (SMCCC owner 6) from the host: `fid` = the caller's w0, `args` its x1..x6; returns
/// x0..x3. Without a dispatcher (no SMMU), `NOT_SUPPORTED`.
pub fn hypercall(fid: u32, args: [u64; 6]) -> [u64; 4] {
    match WARDEN.get() {
        Some(w) => w.handle(fid, args),
        None => [
            warden_core::smccc::ret(warden_core::smccc::NOT_SUPPORTED),
            0,
            0,
            0,
        ],
    }
}
