//! Test support: the shipped [`Warden`]`<`[`SmmuBackend`]`<..>>` over warden-smmu's behavioural fake SMMU,
//! booted with [`bring_up`] from QEMU virt's real DTB, for this crate's unit tests and (feature
//! `test-support`) its integration tests and benchmarks. One harness, so every test exercises the adapter
//! the hypervisor ships, not a copy of it.
//!
//! Memory model: RAM is one [`FakeMemory`] allocation at QEMU virt's RAM base, or at [`Options::ram_base`] (a
//! machine whose RAM lies above 512 GiB) ([`FakeMemory::with_base`]'s synthetic physical addresses, inside the
//! SMMU's 44-bit output size as on QEMU). Its first [`CARVEOUT_SIZE`] bytes are
//! the hyp's carve-out, the first [`Options::pool_size`] of those the page-table pool. The dispatcher reaches RAM as
//! EL2 does, through a linear map (`phys_offset` = the host address of the allocation minus its physical
//! address), so the page tables it writes, in the pool or in donated pages, are the words the fake SMMU walks.
//! The driver's own stream table and queues are further allocations after RAM, outside it.
//!
//! [`model`] is the dispatcher's reference model over a [`Harness`]: it predicts and checks every call's
//! answer and the whole observable state, for the dispatcher's model test and the fuzzer.
//!
//! ```
//! use warden_core::test_support::{Harness, Options};
//! use warden_abi::Function;
//! use warden_smmu::fake::Translation;
//!
//! let h = Harness::boot(&Options::default()).unwrap();
//! let pa = h.host_ram(0x1000);
//! assert_eq!(h.translate(0, pa, true), Translation::Ok(pa));
//! assert_eq!(h.ok(Function::Version, &[])[0], 0);
//! ```

pub mod model;

use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use spin::Mutex;
use warden_abi::{DomainKind, Error, Function, Stat};
use warden_dt::{PhysRange, Platform};
use warden_smmu::fake::{FAKE_RAM_BASE, FakeMemory, FakeSmmu, Translation, qemu};
use warden_smmu::{Command, CommandKind, StreamId};

use crate::dispatch::{Config, HwError, Warden};
use crate::smmu_backend::{BootConfig, BootError, HostStage2Ops, SmmuBackend, bring_up};
use warden_abi::PAGE_SIZE;

/// What QEMU loads into RAM besides the DT's own ranges, which the hyp's memory must avoid: a 32 MiB kernel at
/// [`HOST_KERNEL_PA`](crate::layout::HOST_KERNEL_PA) and the boot DTB (where QEMU puts it). For the sizing and
/// host stage-2 tests on QEMU's DTBs.
pub const QEMU_LOADED: [PhysRange; 2] = [
    PhysRange {
        base: crate::layout::HOST_KERNEL_PA,
        size: 32 << 20,
    },
    PhysRange {
        base: 0x4820_0000,
        size: 1 << 20,
    },
];
/// QEMU virt's DTB (1 GiB, 2 CPUs), as checked in by warden-dt.
pub const DTB: &[u8] = include_bytes!("../../dt/tests/data/virt-smp2-1g.dtb");
/// The hyp carve-out: the first bytes of RAM.
pub const CARVEOUT_SIZE: u64 = 4 << 20;
/// The page-table pool's default size ([`Options::pool_size`]): the first bytes of the carve-out.
pub const POOL_SIZE: u64 = 2 << 20;
/// StreamIDs the test machine's `iommu-map` covers (shortened from QEMU's 0x10000 to keep tests fast): three
/// level-2 tables, the last one half used.
pub const SIDS: u32 = 0x280;
/// QEMU virt's ITS translation frame (GITS_TRANSLATER at +0x40).
pub const ITS_FRAME: u64 = 0x0809_0000;
/// `IDR3.RIL`.
pub const IDR3_RIL: u32 = 1 << 10;
/// Lowest bit of `IDR3.BBML`.
const IDR3_BBML_SHIFT: u32 = 11;
/// `IDR3.BBML` (bits \[12:11\]).
const IDR3_BBML: u32 = 0b11 << IDR3_BBML_SHIFT;

/// Records host stage-2 calls: (map?, pa, len); fails them all while [`MockHost::fail`] is set. Panics when a
/// successful call unmaps a page the host no longer has, or maps back a page it still has: the dispatcher's
/// ownership tracking must never ask for either.
#[derive(Default)]
pub struct MockHost {
    calls: Mutex<Vec<(bool, u64, u64)>>,
    unmapped: Mutex<BTreeSet<u64>>,
    /// Fail every call (and record it).
    pub fail: AtomicBool,
}

impl MockHost {
    fn record(&self, map: bool, pa: u64, len: u64) -> Result<(), HwError> {
        self.calls.lock().push((map, pa, len));
        if self.fail.load(Ordering::Relaxed) {
            return Err(HwError::Failed);
        }
        let mut unmapped = self.unmapped.lock();
        for p in (pa..pa + len).step_by(PAGE_SIZE as usize) {
            if map {
                assert!(
                    unmapped.remove(&p),
                    "page {p:#x} mapped back without being unmapped"
                );
            } else {
                assert!(
                    unmapped.insert(p),
                    "page {p:#x} unmapped from the host twice"
                );
            }
        }
        Ok(())
    }

    /// Every call so far: (map?, pa, len).
    pub fn calls(&self) -> Vec<(bool, u64, u64)> {
        self.calls.lock().clone()
    }

    /// Forgets the calls so far (not the pages they unmapped).
    pub fn clear(&self) {
        self.calls.lock().clear();
    }

    /// The pages the successful calls leave unmapped from the host's stage-2.
    pub fn unmapped_pages(&self) -> BTreeSet<u64> {
        self.unmapped.lock().clone()
    }
}

impl HostStage2Ops for MockHost {
    fn unmap(&self, pa: u64, len: u64) -> Result<(), HwError> {
        self.record(false, pa, len)
    }
    fn map(&self, pa: u64, len: u64) -> Result<(), HwError> {
        self.record(true, pa, len)
    }
}

/// The shipped backend over the fake SMMU.
pub type FakeBackend = SmmuBackend<FakeSmmu, FakeMemory, MockHost>;

/// How to boot a [`Harness`].
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The fake SMMU reports range invalidation (`IDR3.RIL`).
    pub ril: bool,
    /// The break-before-make level the fake SMMU reports and models (`IDR3.BBML`: 0, 1 or 2; QEMU's is 2).
    pub bbml: u32,
    /// StreamIDs of the `iommu-map` (from 0).
    pub sids: u32,
    /// A second `iommu-map` entry: (first StreamID, count), requester IDs equal to StreamIDs.
    pub extra_sids: Option<(u32, u32)>,
    /// [`BootConfig::strtab_budget`].
    pub strtab_budget: u64,
    /// Driver settings.
    pub driver: warden_smmu::Config,
    /// Bytes of host RAM (the carve-out included), a multiple of 2 MiB.
    pub ram_size: u64,
    /// Bytes of the page-table pool, at most [`CARVEOUT_SIZE`].
    pub pool_size: u64,
    /// [`BootConfig::max_domains`].
    pub max_domains: u16,
    /// [`BootConfig::max_donated_pages`].
    pub max_donated_pages: usize,
    /// [`BootConfig::event_ring`].
    pub event_ring: usize,
    /// [`BootConfig::identity_spare_tables`].
    pub identity_spare_tables: usize,
    /// Physical address of host RAM (2 MiB aligned; the SMMU's stream table and queues follow it).
    pub ram_base: u64,
    /// `Config::identity_iova_bits` (`warden.identity_iova_bits=`; 0 for none).
    pub identity_iova_bits: u8,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ril: true,
            bbml: 2,
            sids: SIDS,
            extra_sids: None,
            strtab_budget: 4 << 20,
            driver: warden_smmu::Config::default(),
            ram_size: 64 << 20,
            pool_size: POOL_SIZE,
            max_domains: 8,
            max_donated_pages: 64,
            event_ring: 16,
            identity_spare_tables: 8,
            ram_base: FAKE_RAM_BASE,
            identity_iova_bits: 0,
        }
    }
}

/// A booted hypervisor over the fake SMMU.
pub struct Harness {
    /// The hypervisor's dispatcher, as EL2 holds it.
    pub w: Warden<FakeBackend>,
    /// Commands executed during bring-up.
    pub boot_cmds: Vec<Command>,
    /// Base of host RAM (its first [`CARVEOUT_SIZE`] bytes are the carve-out).
    pub ram: u64,
    /// Bytes of host RAM.
    pub ram_size: u64,
    /// The memory behind everything. Dropped last: `Warden` drops its backend, and the backend's handle on this
    /// memory, before its domains walk their tables to free them.
    pub mem: FakeMemory,
}

/// QEMU virt's platform with the first `iommu-map` shortened to `sids` StreamIDs.
pub fn platform(sids: u32) -> Platform {
    let mut p = warden_dt::parse(DTB).expect("QEMU virt DTB");
    p.pci_hosts[0].iommu_map[0].length = sids;
    p
}

/// [`platform`] with a second `iommu-map` entry of `count` StreamIDs from `first`, if any.
pub fn platform_with(sids: u32, extra: Option<(u32, u32)>) -> Platform {
    let mut p = platform(sids);
    if let Some((first, count)) = extra {
        let map = &mut p.pci_hosts[0].iommu_map;
        let mut e = map[0];
        (e.rid_base, e.sid_base, e.length) = (first, first, count);
        map.push(e);
    }
    p
}

/// The machine of `o`: memory, host RAM in it (`o.ram_size` bytes, returned as its base) and the fake SMMU with
/// QEMU 10's ID registers (RIL per `o.ril`, BBML per `o.bbml`), not yet initialised.
fn machine(o: &Options) -> (FakeMemory, u64, FakeSmmu) {
    let mem = FakeMemory::with_base(o.ram_base);
    let ram = mem.alloc(o.ram_size as usize, 2 << 20);
    let ril = if o.ril { 0 } else { IDR3_RIL };
    let idr3 = (qemu::IDR3 & !ril & !IDR3_BBML) | (o.bbml << IDR3_BBML_SHIFT) & IDR3_BBML;
    let fake = FakeSmmu::with_ids(mem.clone(), qemu::IDR0, qemu::IDR1, idr3, qemu::IDR5);
    (mem, ram, fake)
}

/// The shipped backend over an initialised fake SMMU (the machine [`Harness::boot`] builds, without
/// [`bring_up`]'s [`Warden::new`]), for tests that give [`Warden::new`] configurations of their own. Also
/// returns the memory and the base of host RAM in it.
///
/// # Panics
///
/// If the driver refuses the fake (it does not with [`Options::default`]'s settings).
pub fn fake_backend(o: &Options) -> (FakeBackend, FakeMemory, u64) {
    let (mem, ram, fake) = machine(o);
    let smmu = warden_smmu::Smmu::init(fake, mem.clone(), o.driver).expect("driver init");
    let backend = SmmuBackend::new(smmu, MockHost::default()).expect("blocked-domain table");
    (backend, mem, ram)
}

impl Harness {
    /// Boots: the fake SMMU with QEMU 10's ID registers (RIL per `o.ril`, BBML per `o.bbml`), [`bring_up`] with the platform of
    /// [`platform_with`].
    ///
    /// # Errors
    ///
    /// What [`bring_up`] returns.
    pub fn boot(o: &Options) -> Result<Self, BootError> {
        let p = platform_with(o.sids, o.extra_sids);
        let (mem, ram, fake) = machine(o);
        let linear = mem.host_address(ram).expect("RAM allocated");
        let range = |size| PhysRange { base: ram, size };
        let config = BootConfig {
            warden: Config {
                ram: &[range(o.ram_size)],
                hyp: &[range(CARVEOUT_SIZE)],
                pool: &[range(o.pool_size.min(CARVEOUT_SIZE))],
                max_domains: o.max_domains,
                max_donated_pages: o.max_donated_pages,
                event_ring: o.event_ring,
                identity_spare_tables: o.identity_spare_tables,
                identity_iova_bits: o.identity_iova_bits,
                phys_offset: linear.wrapping_sub(ram),
            },
            strtab_budget: o.strtab_budget,
            driver: o.driver,
        };
        let w = bring_up(
            &p,
            &p.smmus[0],
            fake,
            mem.clone(),
            MockHost::default(),
            &config,
        )?;
        let boot_cmds = w.backend().with_smmu(|s| s.regs_mut().take_executed());
        Ok(Self {
            w,
            boot_cmds,
            ram,
            ram_size: o.ram_size,
            mem,
        })
    }

    /// The host RAM address `offset` bytes past the carve-out.
    pub fn host_ram(&self, offset: u64) -> u64 {
        self.ram + CARVEOUT_SIZE + offset
    }

    /// A Warden call with up to six arguments: x0..x3.
    pub fn call(&self, f: Function, args: &[u64]) -> [u64; 4] {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        self.w.handle(f.fid(), a)
    }

    /// A call that must succeed: x0..x3.
    ///
    /// # Panics
    ///
    /// If the call fails.
    pub fn ok(&self, f: Function, args: &[u64]) -> [u64; 4] {
        let r = self.call(f, args);
        assert_eq!(r[0], 0, "{f:?}{args:x?} failed: {}", r[0] as i64);
        r
    }

    /// A call as a result: x1, or the error.
    ///
    /// # Panics
    ///
    /// If x0 is negative but no [`Error`] code.
    pub fn res(&self, f: Function, args: &[u64]) -> Result<u64, Error> {
        let r = self.call(f, args);
        if r[0] as i64 >= 0 {
            Ok(r[1])
        } else {
            Err(Error::from_code(r[0] as i64).expect("an ABI error code"))
        }
    }

    /// `STAT(s)`.
    ///
    /// # Panics
    ///
    /// If the hypervisor does not have the statistic.
    pub fn stat(&self, s: Stat) -> u64 {
        self.res(Function::Stat, &[s.value()])
            .unwrap_or_else(|e| panic!("STAT {s:?}: {e:?}"))
    }

    /// A new paging domain's ID.
    pub fn paging_domain(&self) -> u64 {
        self.ok(Function::DomainAlloc, &[DomainKind::Paging.value()])[1]
    }

    /// What a device with StreamID `sid` sees when it accesses `iova`.
    pub fn translate(&self, sid: u32, iova: u64, write: bool) -> Translation {
        self.w
            .backend()
            .with_smmu(|s| s.regs_mut().translate(StreamId(sid), iova, write))
    }

    /// The commands the SMMU executed since the last call (or since boot), decoded.
    pub fn take_cmds(&self) -> Vec<CommandKind> {
        self.w
            .backend()
            .with_smmu(|s| s.regs_mut().take_executed())
            .iter()
            .map(Command::decode)
            .collect()
    }
}
