//! Dispatcher tests: every error path, a no-panic property over random arguments, and random operation
//! sequences checked against the reference model ([`crate::test_support::model`], which the fuzzer in
//! `tests/fuzz_dispatch.rs` runs too). All of them run the shipped adapter over the fake SMMU
//! ([`crate::test_support`]): what they observe (STEs, invalidations, timeouts, fault records) is what the
//! driver wrote to the stream table and command queue, or what the fake SMMU did.

use super::unmap::UNMAP_RUNS;
use super::*;
use crate::test_support::{CARVEOUT_SIZE, FakeBackend, Harness, ITS_FRAME, Options, fake_backend};
use alloc::collections::{BTreeMap, BTreeSet};
use proptest::prelude::*;
use warden_smmu::fake::FAKE_RAM_BASE;
use warden_smmu::fake::Translation;
use warden_smmu::{CommandKind, Ste};

/// Host RAM's base: the fake memory's first allocation.
pub(super) const RAM: u64 = FAKE_RAM_BASE;
pub(super) const RAM_SIZE: u64 = 16 << 20;
/// The hyp carve-out at the start of RAM.
pub(super) const HYP_SIZE: u64 = CARVEOUT_SIZE;
pub(super) const DOORBELL: u64 = ITS_FRAME;
/// Host-identity's spare level-3 tables in these tests (small, so that donations run it dry).
pub(super) const SPARE: usize = 2;
/// Host-identity's pool for this RAM layout: its boot tables (root, two L2 tables: GiB 0 for the doorbell,
/// GiB 1 for RAM; one L3 table for the doorbell; host RAM is 2 MiB blocks) and the spare.
pub(super) const IDENTITY_RESERVE: u64 = 1 + 2 + 1 + SPARE as u64;
const RW: u64 = abi::PROT_READ | abi::PROT_WRITE;
const K4: u64 = abi::PGSIZE_4K;
const M2: u64 = abi::PGSIZE_2M;

/// The dispatcher these tests drive: the shipped one, over the shipped adapter and the fake SMMU.
pub(super) type W = Warden<FakeBackend>;

/// An invalidation, read back from the commands the SMMU executed: the TLBIs up to one `CMD_SYNC`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum Inval {
    /// Contiguous `TLBI_S2_IPA`s: their VMID, first IPA and total span; `leaf_only` from `Leaf`, `leaf_size`
    /// from `TTL` ([`LeafSize::Mixed`] for TTL 0).
    Range(S2Invalidation),
    /// `TLBI_S12_VMALL`.
    Vmid(Vmid),
}

/// StreamIDs of the test machine: 16 from 0 (the first `iommu-map` entry) and 8 from 0x100 (a second one).
pub(super) fn sids() -> [SidRange; 2] {
    [
        SidRange { base: 0, count: 16 },
        SidRange {
            base: 0x100,
            count: 8,
        },
    ]
}

/// What [`Warden::new`] is told of QEMU's SMMU (16-bit VMIDs, 44-bit OAS and IAS) for tests that call it
/// themselves, without doorbells or StreamIDs.
pub(super) const QEMU_HW: Hardware<'static> = Hardware {
    msi_doorbells: &[],
    sids: &[],
    vmid_bits: 16,
    pa_bits: 44,
    ias_bits: 44,
};

/// A [`Config`] for tests that call [`Warden::new`] themselves: `ram`, `hyp`, `pool` and `phys_offset` as
/// given, 4 domains, 8 donated pages, an event ring of 1, [`SPARE`] spare tables, no identity widening.
pub(super) fn config<'a>(
    ram: &'a [PhysRange],
    hyp: &'a [PhysRange],
    pool: &'a [PhysRange],
    phys_offset: u64,
) -> Config<'a> {
    Config {
        ram,
        hyp,
        pool,
        max_domains: 4,
        max_donated_pages: 8,
        phys_offset,
        event_ring: 1,
        identity_spare_tables: SPARE,
        identity_iova_bits: 0,
    }
}

/// The harness options of these tests: [`RAM_SIZE`] of RAM, [`sids`], an event ring of 4, [`SPARE`] spare
/// tables; `pool_pages` pages of the carve-out (from its start) form the pool.
pub(super) fn options(pool_pages: u64, max_domains: u16, max_donated: usize) -> Options {
    let [a, b] = sids();
    Options {
        sids: a.count,
        extra_sids: Some((b.base, b.count)),
        ram_size: RAM_SIZE,
        pool_size: pool_pages * PAGE_SIZE,
        max_domains,
        max_donated_pages: max_donated,
        event_ring: 4,
        identity_spare_tables: SPARE,
        ..Options::default()
    }
}

/// Boots the harness of `o`.
pub(super) fn boot(o: &Options) -> Harness {
    let h = Harness::boot(o).expect("boot");
    assert_eq!(h.ram, RAM);
    h
}

/// [`options`], booted.
pub(super) fn harness_with(pool_pages: u64, max_domains: u16, max_donated: usize) -> Harness {
    boot(&options(pool_pages, max_domains, max_donated))
}

pub(super) fn harness() -> Harness {
    harness_with(256, 8, 1024)
}

/// A harness whose SMMU needs break-before-make on block splits (`IDR3.BBML` 0) if `bbm`, else not (2, QEMU's).
pub(super) fn harness_bbm(bbm: bool) -> Harness {
    let mut o = options(256, 8, 1024);
    o.bbml = if bbm { 0 } else { 2 };
    boot(&o)
}

fn call(w: &W, f: Function, args: &[u64]) -> [u64; 4] {
    let mut a = [0u64; 6];
    a[..args.len()].copy_from_slice(args);
    w.handle(f.fid(), a)
}

/// `Ok(x1)` or `Err(error)`.
fn res(w: &W, f: Function, args: &[u64]) -> Result<u64, Error> {
    let r = call(w, f, args);
    if r[0] as i64 >= 0 {
        Ok(r[1])
    } else {
        Err(Error::from_code(r[0] as i64).expect("undocumented error code"))
    }
}

fn alloc_paging(w: &W) -> u64 {
    res(w, Function::DomainAlloc, &[0]).unwrap()
}

/// The prologue most tests share: a [`harness`] with one paging domain allocated (its ID).
fn paging_harness() -> (Harness, u64) {
    let h = harness();
    let d = alloc_paging(&h.w);
    (h, d)
}

fn stat(w: &W, s: Stat) -> u64 {
    res(w, Function::Stat, &[s.value()]).unwrap()
}

/// A host RAM address (above the carve-out).
fn host(off: u64) -> u64 {
    RAM + HYP_SIZE + off
}

/// The commands the SMMU executed since boot or the last [`clear_commands`], decoded.
pub(super) fn commands(w: &W) -> Vec<CommandKind> {
    w.backend()
        .with_smmu(|s| s.regs_mut().executed().iter().map(|c| c.decode()).collect())
}

/// Forgets the commands executed so far.
pub(super) fn clear_commands(w: &W) {
    w.backend().with_smmu(|s| s.regs_mut().take_executed());
}

/// The invalidations among [`commands`].
pub(super) fn invals(w: &W) -> Vec<Inval> {
    decode_invals(commands(w))
}

/// The invalidation the SMMU sees when the dispatcher asks for `req`, as the driver plans it (which may widen
/// it: to the leaf size given, or to what the range encoding can express).
pub(super) fn planned(w: &W, req: S2Invalidation) -> Inval {
    let cmds = w
        .backend()
        .with_smmu(|s| s.plan_invalidation(&req).map(|c| c.decode()).collect());
    let [one] = decode_invals(cmds)[..] else {
        panic!("{req:x?} is not one invalidation")
    };
    one
}

/// Groups TLBI commands into invalidations (see [`Inval`]).
fn decode_invals(cmds: Vec<CommandKind>) -> Vec<Inval> {
    let mut out = Vec::new();
    let mut cur: Option<Inval> = None;
    for c in cmds {
        match c {
            CommandKind::TlbiS2Ipa(t) => {
                let leaf_size = match (t.tg, t.ttl) {
                    (0, _) | (_, 0) => LeafSize::Mixed,
                    (_, ttl) => LeafSize::at_level(usize::from(ttl)),
                };
                match &mut cur {
                    Some(Inval::Range(r))
                        if r.vmid == t.vmid
                            && r.iova + r.size == t.ipa
                            && r.leaf_only == t.leaf
                            && r.leaf_size == leaf_size =>
                    {
                        r.size += t.span();
                    }
                    _ => {
                        out.extend(cur.take());
                        cur = Some(Inval::Range(S2Invalidation {
                            vmid: t.vmid,
                            iova: t.ipa,
                            size: t.span(),
                            leaf_size,
                            leaf_only: t.leaf,
                        }));
                    }
                }
            }
            CommandKind::TlbiS12Vmall { vmid } => {
                out.extend(cur.take());
                out.push(Inval::Vmid(vmid));
            }
            _ => out.extend(cur.take()),
        }
    }
    out.extend(cur);
    out
}

/// The STE of `sid` as the driver wrote it to the stream table.
pub(super) fn ste(w: &W, sid: u32) -> Ste {
    w.backend()
        .with_smmu(|s| s.ste(StreamId(sid)))
        .expect("StreamID in the stream table")
}

/// The STE the shipped adapter writes for `config`.
pub(super) fn ste_for(w: &W, config: SteConfig) -> Ste {
    w.backend().ste_for(config)
}

/// A host for `map_batch_with`/`unmap_batch_with` that rewrites every descriptor word right after the hyp read
/// it: the first read of word `field` of descriptor `i` (`entry` bytes each, from `desc`) gets
/// `honest(i, field)`, any later read `hostile(field)`. `reads` counts the reads of each address.
pub(super) fn rewritten_after_first_read<'a>(
    reads: &'a mut BTreeMap<u64, u32>,
    desc: u64,
    entry: u64,
    honest: impl Fn(usize, u64) -> u64 + 'a,
    hostile: impl Fn(u64) -> u64 + 'a,
) -> impl FnMut(u64) -> u64 + 'a {
    move |pa| {
        let n = reads.entry(pa).or_default();
        *n += 1;
        let (i, field) = ((pa - desc) / entry, (pa - desc) % entry / 8);
        if *n == 1 {
            honest(i as usize, field)
        } else {
            hostile(field)
        }
    }
}

/// Stops (or restarts) the fake SMMU in front of every `CMD_SYNC`: the driver's waits time out as they would
/// on a hung SMMU ([`HwError::Timeout`]).
pub(super) fn set_sync_stall(w: &W, stall: bool) {
    w.backend()
        .with_smmu(|s| s.regs_mut().set_sync_stall(stall));
}

/// Makes every host stage-2 change fail (or succeed again).
pub(super) fn set_fail_host(w: &W, fail: bool) {
    w.backend().host().fail.store(fail, Ordering::Relaxed);
}

/// The pages the host's stage-2 no longer maps.
pub(super) fn host_unmapped(w: &W) -> BTreeSet<u64> {
    w.backend().host().unmapped_pages()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Nothing panics on any arguments, and every x0 is success or a documented error.
    #[test]
    fn random_calls_never_panic(
        calls in prop::collection::vec(
            (0u32..14, prop::array::uniform6(prop_oneof![
                Just(0u64), Just(1), Just(K4), Just(M2), Just(abi::PGSIZE_1G), Just(u64::MAX),
                0u64..64, any::<u64>(), (0u64..4096).prop_map(|p| RAM + p * K4),
                (0u64..256).prop_map(|p| p * K4),
            ])),
            1..40,
        )
    ) {
        let h = harness_with(64, 4, 32);
        let w = &h.w;
        let mut ids = Vec::new();
        for (f, mut args) in calls {
            let fid = if f < 12 { abi::FID_BASE | f } else if f == 12 { abi::VENDOR_HYP_CALL_UID } else { args[5] as u32 };
            // Give calls that take a domain a live one now and then.
            if !ids.is_empty() && args[5] % 3 == 0 {
                args[0] = ids[(args[4] as usize) % ids.len()];
            }
            let r = w.handle(fid, args);
            let x0 = r[0] as i64;
            prop_assert!(x0 >= 0 || Error::from_code(x0).is_some(), "x0 {x0}");
            if fid == Function::DomainAlloc.fid() && x0 == 0 {
                ids.push(r[1]);
            }
        }
    }
}

mod batch;
mod concurrency;
mod domains;
mod donate;
mod e2e;
mod events;
mod geometry;
mod init;
mod map;
mod model;
mod stat;
mod unmap;
mod unmap_batch;
