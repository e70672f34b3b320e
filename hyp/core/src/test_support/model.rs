//! The reference model of the dispatcher: one model for every test that drives the shipped [`Warden`] through a
//! [`Harness`] with call sequences, the dispatcher's unit test of random well-formed sequences
//! (`dispatch/tests/model.rs`) and the adversarial fuzzer (`tests/fuzz_dispatch.rs`).
//!
//! [`Model`] records what every successful call did: each domain's IOVA page → (PA page, prot), the StreamID
//! → domain table, the donated pages, and host-identity's cut 2 MiB blocks with their level-3 table (from the
//! spare, or a donated page of the block once the spare is empty). From that state [`Model::expect`] predicts
//! a [`Call`]'s answer, written with its own rules (not the dispatcher's decoders), in the order the ABI gives
//! errors. [`Model::run`] makes the call and checks:
//! - the answer has the shape the ABI promises (a documented error code; x1..x3 as the call defines them);
//! - the answer is the predicted one ([`Check::Exact`]) or, for hostile arguments, a success was predicted
//!   and a call predicted to succeed failed only for want of memory ([`Check::Legality`]);
//! - a failing call changed nothing (domain, donation, attachment, mapping, pool and table counts);
//!
//! and records a success. [`Model::check`] compares everything observable with the model, and
//! [`Model::teardown`] takes it all down like the shim's unload and checks the start values are back.
//!
//! ```
//! use warden_core::test_support::model::{Call, Check, Model};
//! use warden_core::test_support::{Harness, Options};
//!
//! let o = Options::default();
//! let h = Harness::boot(&o).unwrap();
//! let mut m = Model::new(&h, &o);
//! let id = m.run(&h, &Call::DomainAlloc { kind: 0 }, Check::Exact).unwrap();
//! let (iova, pa) = (0x10_0000, h.host_ram(0x20_0000));
//! let map = Call::MapPages { id, iova, pa, pgsize: 0x1000, count: 4, prot: 3 };
//! assert_eq!(m.run(&h, &map, Check::Exact), Ok(0x4000));
//! m.check(&h, &[1, 2, 3]);
//! m.teardown(&h, false);
//! ```

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::vec::Vec;
use core::ops::Range;

use warden_abi::{self as abi, DomainKind, Error, Function, Stat};

use super::{CARVEOUT_SIZE, Harness, ITS_FRAME, Options};
use crate::domain::IOVA_BITS;

mod check;

pub use check::Checked;

/// The model's page: 4 KiB.
pub const K4: u64 = abi::PGSIZE_4K;
/// A 2 MiB block (host-identity maps host RAM with them).
pub const M2: u64 = abi::PGSIZE_2M;
/// Bytes of the ITS translation frame, the doorbell a domain may map with [`abi::PROT_MMIO`].
const DOORBELL_SIZE: u64 = 0x1_0000;
/// The end of the IOVA space.
const IOVA_END: u64 = 1 << IOVA_BITS;

/// A call the model knows, with its raw arguments (hostile values included).
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Call {
    /// `DOMAIN_ALLOC(kind)`.
    DomainAlloc {
        /// x1.
        kind: u64,
    },
    /// `DOMAIN_FREE(id)`.
    DomainFree {
        /// x1.
        id: u64,
    },
    /// `ATTACH(sid, id)`.
    Attach {
        /// x1.
        sid: u64,
        /// x2.
        id: u64,
    },
    /// `DETACH(sid)`.
    Detach {
        /// x1.
        sid: u64,
    },
    /// `MAP_PAGES(id, iova, pa, pgsize, count, prot)`.
    MapPages {
        /// x1.
        id: u64,
        /// x2.
        iova: u64,
        /// x3.
        pa: u64,
        /// x4.
        pgsize: u64,
        /// x5.
        count: u64,
        /// x6.
        prot: u64,
    },
    /// `UNMAP_PAGES(id, iova, pgsize, count)`.
    UnmapPages {
        /// x1.
        id: u64,
        /// x2.
        iova: u64,
        /// x3.
        pgsize: u64,
        /// x4.
        count: u64,
    },
    /// `MAP_BATCH(id, desc, count, prot)`: the model reads the descriptors at `desc` as the hypervisor does.
    MapBatch {
        /// x1.
        id: u64,
        /// x2.
        desc: u64,
        /// x3.
        count: u64,
        /// x4.
        prot: u64,
    },
    /// `UNMAP_BATCH(id, desc, count)`.
    UnmapBatch {
        /// x1.
        id: u64,
        /// x2.
        desc: u64,
        /// x3.
        count: u64,
    },
    /// `DONATE(pa, count)`.
    Donate {
        /// x1.
        pa: u64,
        /// x2.
        count: u64,
    },
    /// `RECLAIM(pa, count)`.
    Reclaim {
        /// x1.
        pa: u64,
        /// x2.
        count: u64,
    },
    /// `IOVA_TO_PHYS(id, iova)`.
    IovaToPhys {
        /// x1.
        id: u64,
        /// x2.
        iova: u64,
    },
    /// `STAT(id)`.
    Stat {
        /// x1.
        id: u64,
    },
    /// `READ_EVENT`.
    ReadEvent,
    /// A function number in Warden's range that no function has, with any arguments.
    Unknown {
        /// The function number (without [`abi::FID_BASE`]).
        number: u32,
        /// x1..x6.
        args: [u64; 6],
    },
}

impl Call {
    /// A short name, for tallies: the function's, or `unknown`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::DomainAlloc { .. } => "alloc",
            Self::DomainFree { .. } => "free",
            Self::Attach { .. } => "attach",
            Self::Detach { .. } => "detach",
            Self::MapPages { .. } => "map",
            Self::UnmapPages { .. } => "unmap",
            Self::MapBatch { .. } => "map_batch",
            Self::UnmapBatch { .. } => "unmap_batch",
            Self::Donate { .. } => "donate",
            Self::Reclaim { .. } => "reclaim",
            Self::IovaToPhys { .. } => "iova_to_phys",
            Self::Stat { .. } => "stat",
            Self::ReadEvent => "read_event",
            Self::Unknown { .. } => "unknown",
        }
    }

    /// The function ID and the argument registers.
    fn regs(&self) -> (u32, [u64; 6]) {
        let f = |f: Function, a: &[u64]| {
            let mut args = [0; 6];
            args[..a.len()].copy_from_slice(a);
            (f.fid(), args)
        };
        match *self {
            Self::DomainAlloc { kind } => f(Function::DomainAlloc, &[kind]),
            Self::DomainFree { id } => f(Function::DomainFree, &[id]),
            Self::Attach { sid, id } => f(Function::Attach, &[sid, id]),
            Self::Detach { sid } => f(Function::Detach, &[sid]),
            Self::MapPages {
                id,
                iova,
                pa,
                pgsize,
                count,
                prot,
            } => f(Function::MapPages, &[id, iova, pa, pgsize, count, prot]),
            Self::UnmapPages {
                id,
                iova,
                pgsize,
                count,
            } => f(Function::UnmapPages, &[id, iova, pgsize, count]),
            Self::MapBatch {
                id,
                desc,
                count,
                prot,
            } => f(Function::MapBatch, &[id, desc, count, prot]),
            Self::UnmapBatch { id, desc, count } => f(Function::UnmapBatch, &[id, desc, count]),
            Self::Donate { pa, count } => f(Function::Donate, &[pa, count]),
            Self::Reclaim { pa, count } => f(Function::Reclaim, &[pa, count]),
            Self::IovaToPhys { id, iova } => f(Function::IovaToPhys, &[id, iova]),
            Self::Stat { id } => f(Function::Stat, &[id]),
            Self::ReadEvent => f(Function::ReadEvent, &[]),
            Self::Unknown { number, args } => (abi::FID_BASE | number, args),
        }
    }

    fn is_batch(&self) -> bool {
        matches!(self, Self::MapBatch { .. } | Self::UnmapBatch { .. })
    }
}

/// What the model predicts a call answers.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Expect {
    /// `Ok(Some([x1, x2, x3]))`; `Ok(None)` when any values will do (a new domain's ID, a STAT value, an event
    /// record); or the error. For a batch the model names the first rule the call breaks, which with several
    /// broken need not be the one the hypervisor checks first ([`Check::Legality`] does not compare it).
    pub answer: Result<Option<[u64; 3]>, Error>,
    /// An error the hypervisor may answer instead, whose cause the model does not track: BUSY for a reclaim of
    /// pages that may hold a live domain's page tables, BAD_STAT for a statistic the harness does not install.
    pub or: Option<Error>,
}

impl Expect {
    fn ok(x1: u64) -> Self {
        Self {
            answer: Ok(Some([x1, 0, 0])),
            or: None,
        }
    }

    fn any() -> Self {
        Self {
            answer: Ok(None),
            or: None,
        }
    }
}

impl From<Result<u64, Error>> for Expect {
    fn from(r: Result<u64, Error>) -> Self {
        match r {
            Ok(x1) => Self::ok(x1),
            Err(e) => Self {
                answer: Err(e),
                or: None,
            },
        }
    }
}

/// How [`Model::run`] holds the hypervisor's answer to the prediction.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Check {
    /// The answer is the predicted one, or [`Expect::or`].
    Exact,
    /// For hostile arguments: a success was predicted (same x1..x3), and a call predicted to succeed may only
    /// fail with NOMEM (the pool ran dry: the model does not count page-table pages) or [`Expect::or`].
    Legality,
}

/// One domain as the model sees it.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Domain {
    /// A blocked domain (else paging).
    pub blocked: bool,
    /// IOVA page → (PA page, prot of the call that mapped it), 4 KiB pages whatever page size mapped them.
    pub map: BTreeMap<u64, (u64, u64)>,
}

/// Counts that no failing call may change.
#[derive(Debug, Eq, PartialEq)]
struct Snapshot([u64; 6]);

/// The reference model. See the [module docs](self).
#[derive(Debug)]
pub struct Model {
    /// Host RAM, the carve-out included.
    ram: Range<u64>,
    /// The hyp carve-out at the start of RAM.
    carveout: Range<u64>,
    /// The carve-out's page-table pool (its first pages).
    pool: Range<u64>,
    /// The doorbell: the one MMIO frame the host may map (with [`abi::PROT_MMIO`]); host-identity maps it.
    doorbell: Range<u64>,
    pa_bits: u32,
    max_domains: usize,
    max_donated: usize,
    /// Host-identity's spare level-3 tables at boot.
    spare_tables: usize,
    sids: Vec<u32>,
    /// `STAT POOL_FREE_PAGES` and `POOL_TOTAL_PAGES` at boot (nothing donated).
    baseline: (u64, u64),
    /// Every ID ever allocated (freed ones stay, as stale IDs to try).
    ids: Vec<u64>,
    live: BTreeMap<u64, Domain>,
    /// Attached StreamIDs (the others are in host-identity).
    attached: BTreeMap<u32, u64>,
    donated: BTreeSet<u64>,
    /// Host-identity's cut 2 MiB blocks → their table: `None` from the spare, `Some(page)` a donated page.
    cut: BTreeMap<u64, Option<u64>>,
    /// Free spare tables of host-identity.
    spare: usize,
}

impl Model {
    /// The model of `h`, just booted with `o`: no domain, nothing attached, mapped or donated.
    ///
    /// # Panics
    ///
    /// If `h` was not booted with `o`, or already served calls that changed its state.
    pub fn new(h: &Harness, o: &Options) -> Self {
        assert_eq!(
            h.ram_size, o.ram_size,
            "harness not booted with these options"
        );
        let mut sids: Vec<u32> = (0..o.sids).collect();
        if let Some((first, count)) = o.extra_sids {
            sids.extend(first..first + count);
        }
        let limits = abi::Limits::unpack(h.ok(Function::Version, &[])[3]);
        let stat = |s| h.stat(s);
        assert_eq!(stat(Stat::DomainsInUse), 0, "a fresh harness");
        assert_eq!(stat(Stat::DonatedPages), 0, "a fresh harness");
        Self {
            ram: h.ram..h.ram + o.ram_size,
            carveout: h.ram..h.ram + CARVEOUT_SIZE,
            pool: h.ram..h.ram + o.pool_size.min(CARVEOUT_SIZE),
            doorbell: ITS_FRAME..ITS_FRAME + DOORBELL_SIZE,
            pa_bits: u32::from(limits.pa_bits),
            max_domains: usize::from(o.max_domains),
            max_donated: o.max_donated_pages,
            spare_tables: o.identity_spare_tables,
            sids,
            baseline: (stat(Stat::PoolFreePages), stat(Stat::PoolTotalPages)),
            ids: Vec::new(),
            live: BTreeMap::new(),
            attached: BTreeMap::new(),
            donated: BTreeSet::new(),
            cut: BTreeMap::new(),
            spare: o.identity_spare_tables,
        }
    }

    /// Every domain ID allocated so far, freed ones included.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// The live domains by ID.
    pub fn domains(&self) -> &BTreeMap<u64, Domain> {
        &self.live
    }

    /// The donated pages.
    pub fn donated(&self) -> &BTreeSet<u64> {
        &self.donated
    }

    /// The valid StreamIDs.
    pub fn sids(&self) -> &[u32] {
        &self.sids
    }

    /// The domain `sid` is attached to: 0 for host-identity.
    pub fn sid_domain(&self, sid: u32) -> u64 {
        self.attached.get(&sid).copied().unwrap_or(0)
    }

    /// Donated pages serving as host-identity's level-3 tables (outside the pool).
    pub fn identity_tables(&self) -> usize {
        self.cut.values().flatten().count()
    }

    /// Is `p` the host's RAM (outside the carve-out)?
    pub fn is_host_ram(&self, p: u64) -> bool {
        self.ram.contains(&p) && !self.carveout.contains(&p)
    }

    /// DMA mappings of each PA page, over all domains.
    fn counts(&self) -> BTreeMap<u64, u32> {
        let mut c: BTreeMap<u64, u32> = BTreeMap::new();
        for d in self.live.values() {
            for &(pa, _) in d.map.values() {
                *c.entry(pa).or_default() += 1;
            }
        }
        c
    }

    /// The paging domain `id` names: host-identity is immutable, a stale or forged ID no domain.
    fn paging(&self, id: u64) -> Result<&Domain, Error> {
        domain_id(id)?;
        match self.live.get(&id) {
            _ if id == abi::DOMAIN_ID_HOST_IDENTITY => Err(Error::ImmutableDomain),
            None => Err(Error::BadDomain),
            Some(d) if d.blocked => Err(Error::WrongDomainKind),
            Some(d) => Ok(d),
        }
    }

    /// The valid StreamID `sid` names.
    fn sid(&self, sid: u64) -> Result<u32, Error> {
        u32::try_from(sid)
            .ok()
            .filter(|s| self.sids.contains(s))
            .ok_or(Error::BadSid)
    }

    /// `[pa, pa + len)`, `align`-aligned, must be PAs the SMMU outputs.
    fn pa_range(&self, pa: u64, len: u64, align: u64) -> Result<(), Error> {
        if !pa.is_multiple_of(align) {
            return Err(Error::Misaligned);
        }
        let end = pa.checked_add(len).ok_or(Error::Overflow)?;
        if end > 1 << self.pa_bits {
            return Err(Error::OutOfRangePa);
        }
        Ok(())
    }

    /// DONATE's and RECLAIM's arguments: `count` pages (1..=the donation limit) from the aligned `pa`.
    fn pages(&self, pa: u64, count: u64) -> Result<u64, Error> {
        if count == 0 || count > self.max_donated as u64 {
            return Err(Error::BadCount);
        }
        if !pa.is_multiple_of(K4) {
            return Err(Error::Misaligned);
        }
        let len = count.checked_mul(K4).ok_or(Error::Overflow)?;
        self.pa_range(pa, len, K4)?;
        Ok(len)
    }

    /// The error of the first page of `[pa, end)` a domain may not map as MMIO (`mmio`) or RAM: hyp memory, a
    /// donated page, not the host's, or memory of the other kind (BAD_PROT).
    fn map_error(&self, pa: u64, end: u64, mmio: bool) -> Option<Error> {
        let mut p = pa;
        while p < end {
            let run = if self.carveout.contains(&p) {
                return Some(Error::HypMemory);
            } else if self.ram.contains(&p) {
                p..end.min(self.ram.end)
            } else if self.doorbell.contains(&p) {
                p..end.min(self.doorbell.end)
            } else {
                return Some(Error::NotHostMemory);
            };
            // Page by page, a donated page is refused before memory of the other kind.
            if self.donated.contains(&p) {
                return Some(Error::DonatedMemory);
            }
            if mmio != self.doorbell.contains(&p) {
                return Some(Error::BadProt);
            }
            if self.donated.range(run.clone()).next().is_some() {
                return Some(Error::DonatedMemory);
            }
            p = run.end;
        }
        None
    }

    /// The error of page `p` for DONATE: not host RAM, already donated, or DMA-mapped (BUSY).
    fn donate_error(&self, p: u64, counts: &BTreeMap<u64, u32>) -> Option<Error> {
        if self.carveout.contains(&p) {
            Some(Error::HypMemory)
        } else if !self.ram.contains(&p) {
            Some(Error::NotHostMemory)
        } else if self.donated.contains(&p) {
            Some(Error::DonatedMemory)
        } else if counts.contains_key(&p) {
            Some(Error::Busy)
        } else {
            None
        }
    }

    /// What the hypervisor answers `call` in the model's state (batches: with the descriptors in `h`'s memory).
    pub fn expect(&self, h: &Harness, call: &Call) -> Expect {
        match *call {
            Call::DomainAlloc { kind } => match DomainKind::from_value(kind) {
                None => Err(Error::BadKind).into(),
                Some(_) if self.live.len() == self.max_domains => Err(Error::Limit).into(),
                Some(_) => Expect::any(),
            },
            Call::DomainFree { id } => self.expect_free(id).into(),
            Call::Attach { sid, id } => (|| {
                self.sid(sid)?;
                domain_id(id)?;
                if id != abi::DOMAIN_ID_HOST_IDENTITY && !self.live.contains_key(&id) {
                    return Err(Error::BadDomain);
                }
                Ok(0)
            })()
            .into(),
            Call::Detach { sid } => self.sid(sid).map(|_| 0).into(),
            Call::MapPages {
                id,
                iova,
                pa,
                pgsize,
                count,
                prot,
            } => self.expect_map(id, iova, pa, pgsize, count, prot).into(),
            Call::UnmapPages {
                id,
                iova,
                pgsize,
                count,
            } => (|| {
                page_size(pgsize)?;
                let len = iova_range(iova, pgsize, count)?;
                let d = self.paging(id)?;
                if d.map.range(iova..iova + len).count() as u64 != len / K4 {
                    return Err(Error::NotMapped);
                }
                Ok(len)
            })()
            .into(),
            Call::MapBatch {
                id,
                desc,
                count,
                prot,
            } => self.expect_map_batch(h, id, desc, count, prot),
            Call::UnmapBatch { id, desc, count } => self.expect_unmap_batch(h, id, desc, count),
            Call::Donate { pa, count } => (|| {
                let len = self.pages(pa, count)?;
                if self.donated.len() + count as usize > self.max_donated {
                    return Err(Error::Limit);
                }
                let counts = self.counts();
                match (pa..pa + len)
                    .step_by(K4 as usize)
                    .find_map(|p| self.donate_error(p, &counts))
                {
                    Some(e) => Err(e),
                    None => Ok(0),
                }
            })()
            .into(),
            Call::Reclaim { pa, count } => self.expect_reclaim(pa, count),
            Call::IovaToPhys { id, iova } => self.expect_iova_to_phys(id, iova).into(),
            Call::Stat { id } => {
                let per_call = id
                    .checked_sub(abi::STAT_CALLS_BASE)
                    .and_then(|n| u32::try_from(n).ok())
                    .and_then(Function::from_value)
                    .is_some();
                if per_call || Stat::from_value(id).is_some() {
                    Expect {
                        answer: Ok(None),
                        or: Some(Error::BadStat),
                    }
                } else {
                    Err(Error::BadStat).into()
                }
            }
            Call::ReadEvent => Expect::any(),
            Call::Unknown { .. } => Err(Error::NotSupported).into(),
        }
    }

    fn expect_free(&self, id: u64) -> Result<u64, Error> {
        domain_id(id)?;
        if id == abi::DOMAIN_ID_HOST_IDENTITY {
            return Err(Error::ImmutableDomain);
        }
        if !self.live.contains_key(&id) {
            return Err(Error::BadDomain);
        }
        if self.attached.values().any(|&d| d == id) {
            return Err(Error::Busy);
        }
        Ok(0)
    }

    fn expect_map(
        &self,
        id: u64,
        iova: u64,
        pa: u64,
        pgsize: u64,
        count: u64,
        prot: u64,
    ) -> Result<u64, Error> {
        page_size(pgsize)?;
        let len = iova_range(iova, pgsize, count)?;
        prot_ok(prot)?;
        self.pa_range(pa, len, pgsize)?;
        let d = self.paging(id)?;
        if d.map.range(iova..iova + len).next().is_some() {
            return Err(Error::AlreadyMapped);
        }
        match self.map_error(pa, pa + len, prot & abi::PROT_MMIO != 0) {
            Some(e) => Err(e),
            None => Ok(len),
        }
    }

    fn expect_reclaim(&self, pa: u64, count: u64) -> Expect {
        let len = match self.pages(pa, count) {
            Ok(len) => len,
            Err(e) => return Err(e).into(),
        };
        let range = pa..pa + len;
        if self.donated.range(range.clone()).count() as u64 != count {
            return Err(Error::NotDonated).into();
        }
        // A host-identity table in the range whose block keeps other donated pages.
        let table_busy = self.cut.iter().any(|(&b, &t)| {
            t.is_some_and(|t| range.contains(&t))
                && self.donated.range(b..b + M2).any(|p| !range.contains(p))
        });
        if table_busy {
            return Err(Error::Busy).into();
        }
        Expect {
            answer: Ok(Some([0; 3])),
            // A donated page may be a table of a live paging domain: the model does not track those.
            or: self
                .live
                .values()
                .any(|d| !d.blocked)
                .then_some(Error::Busy),
        }
    }

    fn expect_iova_to_phys(&self, id: u64, iova: u64) -> Result<u64, Error> {
        if iova >= IOVA_END {
            return Err(Error::OutOfRangeIova);
        }
        domain_id(id)?;
        let page = iova & !(K4 - 1);
        if id == abi::DOMAIN_ID_HOST_IDENTITY {
            // Host RAM (not donated) and the doorbell, at their own addresses.
            let host = self.is_host_ram(page) && !self.donated.contains(&page);
            return if host || self.doorbell.contains(&page) {
                Ok(iova)
            } else {
                Err(Error::NotMapped)
            };
        }
        match self.live.get(&id) {
            None => Err(Error::BadDomain),
            Some(d) if d.blocked => Err(Error::WrongDomainKind),
            Some(d) => d
                .map
                .get(&page)
                .map(|&(pa, _)| pa | (iova & (K4 - 1)))
                .ok_or(Error::NotMapped),
        }
    }

    /// Reads a batch's descriptors (`W` words each) as the hypervisor does: `count` in 1..=`max`, 8-aligned
    /// inside one page of host RAM that is neither donated nor hyp memory.
    fn descriptors<const W: usize>(
        &self,
        h: &Harness,
        desc: u64,
        count: u64,
        max: u64,
    ) -> Result<Vec<[u64; W]>, Error> {
        if !(1..=max).contains(&count) {
            return Err(Error::BadCount);
        }
        let size = 8 * W as u64;
        if !desc.is_multiple_of(8) || desc % K4 + count * size > K4 {
            return Err(Error::Misaligned);
        }
        let page = desc & !(K4 - 1);
        let end = page.checked_add(K4).ok_or(Error::NotHostMemory)?;
        if let Some(e) = self.map_error(page, end, false) {
            return Err(e);
        }
        Ok((0..count)
            .map(|i| {
                core::array::from_fn(|j| {
                    let at = desc + i * size + 8 * j as u64;
                    h.mem
                        .try_read64(at)
                        .expect("host RAM is in the fake memory")
                })
            })
            .collect())
    }

    fn expect_map_batch(&self, h: &Harness, id: u64, desc: u64, count: u64, prot: u64) -> Expect {
        let r = (|| {
            let e: Vec<[u64; 3]> = self.descriptors(h, desc, count, abi::MAP_BATCH_MAX_ENTRIES)?;
            prot_ok(prot)?;
            if prot & abi::PROT_MMIO != 0 {
                return Err(Error::BadProt);
            }
            let d = self.paging(id)?;
            let mut pages = BTreeSet::new();
            for &[iova, pa, len] in &e {
                if len == 0 {
                    return Err(Error::BadCount);
                }
                if (iova | pa | len) % K4 != 0 {
                    return Err(Error::Misaligned);
                }
                let end = iova.checked_add(len).ok_or(Error::Overflow)?;
                if end > IOVA_END {
                    return Err(Error::OutOfRangeIova);
                }
                self.pa_range(pa, len, K4)?;
                if let Some(e) = self.map_error(pa, pa + len, false) {
                    return Err(e);
                }
                let fresh = (iova..end).step_by(K4 as usize).all(|p| pages.insert(p));
                if !fresh || d.map.range(iova..end).next().is_some() {
                    return Err(Error::AlreadyMapped);
                }
            }
            Ok([count, e.iter().map(|x| x[2]).sum(), 0])
        })();
        Expect {
            answer: r.map(Some),
            or: None,
        }
    }

    fn expect_unmap_batch(&self, h: &Harness, id: u64, desc: u64, count: u64) -> Expect {
        let r = (|| {
            let e: Vec<[u64; 2]> =
                self.descriptors(h, desc, count, abi::UNMAP_BATCH_MAX_ENTRIES)?;
            let d = self.paging(id)?;
            let mut pages = BTreeSet::new();
            for &[iova, len] in &e {
                if len == 0 {
                    return Err(Error::BadCount);
                }
                if (iova | len) % K4 != 0 {
                    return Err(Error::Misaligned);
                }
                let end = iova.checked_add(len).ok_or(Error::Overflow)?;
                if end > IOVA_END {
                    return Err(Error::OutOfRangeIova);
                }
                let mapped = d.map.range(iova..end).count() as u64 == len / K4;
                if !mapped || !(iova..end).step_by(K4 as usize).all(|p| pages.insert(p)) {
                    return Err(Error::NotMapped);
                }
            }
            Ok([count, e.iter().map(|x| x[1]).sum(), 0])
        })();
        Expect {
            answer: r.map(Some),
            or: None,
        }
    }

    fn snapshot(h: &Harness) -> Snapshot {
        Snapshot(
            [
                Stat::DomainsInUse,
                Stat::DonatedPages,
                Stat::AttachedSids,
                Stat::MappedPages,
                Stat::PoolFreePages,
                Stat::TablePagesInUse,
            ]
            .map(|s| h.stat(s)),
        )
    }

    /// Makes `call` on `h`, checks its answer (see the [module docs](self)) and records what a success did.
    /// Returns x1 or the error.
    ///
    /// # Panics
    ///
    /// If a check fails.
    pub fn run(&mut self, h: &Harness, call: &Call, check: Check) -> Result<u64, Error> {
        let expect = self.expect(h, call);
        let before = Self::snapshot(h);
        let (fid, args) = call.regs();
        let r = h.w.handle(fid, args);
        let ctx = format!("{call:x?} -> {r:x?}, model {expect:x?}");
        let x123 = [r[1], r[2], r[3]];
        let got = if r[0] as i64 >= 0 {
            Ok(x123)
        } else {
            let e = Error::from_code(r[0] as i64)
                .unwrap_or_else(|| panic!("{ctx}: undocumented error code"));
            let nomem = e == Error::NoMem;
            assert!(nomem == (r[1] > 0), "{ctx}: x1 is the NOMEM page count");
            if call.is_batch() {
                assert!(
                    r[2] < args[2] || r[2] == abi::MAP_BATCH_NO_ENTRY,
                    "{ctx}: x2"
                );
                assert!(!nomem || r[2] == abi::MAP_BATCH_NO_ENTRY, "{ctx}: x2");
            } else {
                assert_eq!(r[2], 0, "{ctx}: x2");
            }
            assert_eq!(r[3], 0, "{ctx}: x3");
            assert_eq!(
                Self::snapshot(h),
                before,
                "{ctx}: a failing call changed state"
            );
            Err(e)
        };
        let matches = match (got, expect.answer) {
            (Ok(x), Ok(want)) => want.is_none_or(|w| w == x),
            (Err(e), _) if Some(e) == expect.or => true,
            (Err(e), Err(want)) => check == Check::Legality || e == want,
            (Err(e), Ok(_)) => check == Check::Legality && e == Error::NoMem,
            (Ok(_), Err(_)) => false,
        };
        assert!(matches, "{ctx}: not the model's answer ({check:?})");
        if let Ok(x) = got {
            self.record(h, call, x[0]);
        }
        got.map(|x| x[0])
    }

    /// Records what the successful `call` (answer `x1`) did.
    fn record(&mut self, h: &Harness, call: &Call, x1: u64) {
        match *call {
            Call::DomainAlloc { kind } => {
                assert!(!self.ids.contains(&x1), "domain ID {x1:#x} reused");
                assert!(
                    x1 < 1 << 32 && x1 != abi::DOMAIN_ID_HOST_IDENTITY,
                    "domain ID {x1:#x} out of the ABI's range"
                );
                self.ids.push(x1);
                let blocked = DomainKind::from_value(kind) == Some(DomainKind::Blocked);
                self.live.insert(
                    x1,
                    Domain {
                        blocked,
                        ..Domain::default()
                    },
                );
            }
            Call::DomainFree { id } => {
                self.live.remove(&id);
            }
            Call::Attach { sid, id } if id != abi::DOMAIN_ID_HOST_IDENTITY => {
                self.attached.insert(sid as u32, id);
            }
            Call::Attach { sid, .. } | Call::Detach { sid } => {
                self.attached.remove(&(sid as u32));
            }
            Call::MapPages {
                id, iova, pa, prot, ..
            } => self.insert(id, prot, &[[iova, pa, x1]]),
            Call::UnmapPages { id, iova, .. } => self.remove(id, &[[iova, x1]]),
            Call::MapBatch {
                id,
                desc,
                count,
                prot,
            } => {
                let e: Vec<[u64; 3]> = self.descriptors(h, desc, count, count).expect("read");
                self.insert(id, prot, &e);
            }
            Call::UnmapBatch { id, desc, count } => {
                let e: Vec<[u64; 2]> = self.descriptors(h, desc, count, count).expect("read");
                self.remove(id, &e);
            }
            Call::Donate { pa, count } => self.record_donate(pa, count),
            Call::Reclaim { pa, count } => {
                for i in 0..count {
                    self.donated.remove(&(pa + i * K4));
                }
                // Blocks whole again merge: their table goes back to the spare or to the host.
                let donated = &self.donated;
                let spare = &mut self.spare;
                self.cut.retain(|&b, t| {
                    let keep = donated.range(b..b + M2).next().is_some();
                    if !keep && t.is_none() {
                        *spare += 1;
                    }
                    keep
                });
            }
            Call::IovaToPhys { .. }
            | Call::Stat { .. }
            | Call::ReadEvent
            | Call::Unknown { .. } => {}
        }
    }

    /// Maps `{iova, pa, len}` ranges in domain `id` with `prot`.
    fn insert(&mut self, id: u64, prot: u64, ranges: &[[u64; 3]]) {
        let d = self.live.get_mut(&id).expect("a live domain");
        for &[iova, pa, len] in ranges {
            for off in (0..len).step_by(K4 as usize) {
                d.map.insert(iova + off, (pa + off, prot));
            }
        }
    }

    /// Unmaps `{iova, len}` ranges from domain `id`.
    fn remove(&mut self, id: u64, ranges: &[[u64; 2]]) {
        let d = self.live.get_mut(&id).expect("a live domain");
        for &[iova, len] in ranges {
            for off in (0..len).step_by(K4 as usize) {
                d.map.remove(&(iova + off));
            }
        }
    }

    /// Records a donation: every 2 MiB block it cuts first takes a table, from the spare, else its first
    /// donated page (a donation is fewer pages than a block, so it never takes a whole one).
    fn record_donate(&mut self, pa: u64, count: u64) {
        let end = pa + count * K4;
        let mut b = pa & !(M2 - 1);
        while b < end {
            if !self.cut.contains_key(&b) {
                let t = if self.spare > 0 {
                    self.spare -= 1;
                    None
                } else {
                    Some(pa.max(b))
                };
                self.cut.insert(b, t);
            }
            b += M2;
        }
        self.donated.extend((0..count).map(|i| pa + i * K4));
    }
}

/// A domain ID must fit 32 bits, with a non-zero slot (bits \[15:0\]) unless it is host-identity (0).
fn domain_id(id: u64) -> Result<(), Error> {
    match u32::try_from(id) {
        Ok(0) => Ok(()),
        Ok(x) if x & 0xffff != 0 => Ok(()),
        _ => Err(Error::BadDomain),
    }
}

/// A page size of the ABI's bitmap.
fn page_size(pgsize: u64) -> Result<(), Error> {
    if [abi::PGSIZE_4K, abi::PGSIZE_2M, abi::PGSIZE_1G].contains(&pgsize) {
        Ok(())
    } else {
        Err(Error::BadPgsize)
    }
}

/// `count` pages of `pgsize` from the aligned `iova`, inside the IOVA space: their length.
fn iova_range(iova: u64, pgsize: u64, count: u64) -> Result<u64, Error> {
    if count == 0 {
        return Err(Error::BadCount);
    }
    if !iova.is_multiple_of(pgsize) {
        return Err(Error::Misaligned);
    }
    let len = pgsize.checked_mul(count).ok_or(Error::Overflow)?;
    let end = iova.checked_add(len).ok_or(Error::Overflow)?;
    if end > IOVA_END {
        return Err(Error::OutOfRangeIova);
    }
    Ok(len)
}

/// Only the ABI's bits, readable or writable, not both MMIO and cacheable.
fn prot_ok(prot: u64) -> Result<(), Error> {
    let mmio_cache = abi::PROT_MMIO | abi::PROT_CACHE;
    if prot & !abi::PROT_ALL != 0
        || prot & (abi::PROT_READ | abi::PROT_WRITE) == 0
        || prot & mmio_cache == mmio_cache
    {
        return Err(Error::BadProt);
    }
    Ok(())
}
