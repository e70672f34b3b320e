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
//! use warden_core::test_support::model::{Call, Check, Model, Teardown};
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
//! m.teardown(&h, Teardown::UnmapEach);
//! ```

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::vec::Vec;
use core::ops::Range;

use warden_abi::{self as abi, DomainKind, Error, Function, Stat};

use super::{CARVEOUT_SIZE, Harness, ITS_FRAME, Options};
use crate::domain::IOVA_BITS;

mod call;
mod check;
mod expect;

pub use call::{Call, Check, Expect};
pub use check::{Checked, Teardown};

/// The model's page: 4 KiB.
const K4: u64 = abi::PGSIZE_4K;
/// A 2 MiB block (host-identity maps host RAM with them).
const M2: u64 = abi::PGSIZE_2M;
/// Bytes of the ITS translation frame, the doorbell a domain may map with [`abi::PROT_MMIO`].
const DOORBELL_SIZE: u64 = 0x1_0000;
/// The end of the IOVA space.
const IOVA_END: u64 = 1 << IOVA_BITS;

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
