//! Adversarial-host fuzzing of the hypercall dispatcher, end to end on the host.
//!
//! `Warden::handle` runs over the shipped SMMU adapter, warden-smmu's real driver and its behavioural fake SMMU
//! (`warden_core::test_support`, booted with `bring_up` from QEMU virt's DTB). A seeded generator
//! issues random sequences of *any* call (including unknown function numbers) with biased-random arguments:
//! live, stale and forged domain IDs; valid and invalid StreamIDs (also with high bits set); IOVAs at and past
//! the 39-bit input size and near 2^64; PAs in the hyp carve-out, in donated pages, past RAM, at the MSI
//! doorbell, misaligned or wrapping; odd page sizes, zero and huge counts, every prot bit; MAP_BATCH descriptor
//! arrays written into host RAM (overlapping, misaligned, hostile descriptors; arrays in hyp, donated or random
//! memory); UNMAP_BATCH arrays likewise (mostly ranges the model has mapped, some hostile, overlapping or
//! unmapped).
//!
//! Every call goes through the dispatcher's one reference model, `warden_core::test_support::model` (the same
//! model the dispatcher's unit test `dispatch/tests/model.rs` runs well-formed sequences against), which
//! records what every *successful* call did and checks after each call:
//! - the call did not panic, and its answer has the shape the ABI promises;
//! - calls whose arguments only the model's state decides (DOMAIN_FREE, ATTACH, DETACH, DONATE, RECLAIM,
//!   IOVA_TO_PHYS, STAT, READ_EVENT, unknown functions) get exactly the predicted answer, errors included;
//! - the others (DOMAIN_ALLOC, MAP_PAGES, UNMAP_PAGES and the batches) succeed only when legal: no mapping of
//!   hyp, donated or non-host memory, nothing past 2^39, no double mapping, no attach to a dead domain, and so
//!   on; a legal one may only fail with NOMEM (the pool ran dry);
//! - a failing call changed nothing (domain, donation, attachment, mapping, pool and table counts).
//!
//! Every 64 calls (and at the end) the model compares the whole state: `IOVA_TO_PHYS` for every mapped page
//! and random probes, ownership of every mapped and donated page, the STAT counters, host-identity's spare and
//! tables, and what a device would see: each StreamID's STE and DMA through the fake SMMU (`translate`) lands
//! where the model says, reaches nothing when blocked, and never reaches the carve-out or a donated page.
//! Finally everything is torn down and the pool, donation and mapping counts must be back at their start values.
//!
//! `WARDEN_FUZZ_ITERS` (calls per run, default 2500) and `WARDEN_FUZZ_RUNS` (runs with different seeds, default
//! 4, seeds from `WARDEN_FUZZ_BASE` on) make it longer; `WARDEN_FUZZ_SEED` replays one run (each run prints its
//! seed; odd seeds run over a fake SMMU without BBML2, so block splits are break-before-make). E.g.
//! `WARDEN_FUZZ_RUNS=400 cargo test -p warden-core --test fuzz_dispatch -- --nocapture`.

use std::collections::BTreeMap;

use warden_abi as abi;
use warden_core::domain::IOVA_BITS;
use warden_core::test_support::model::{Call, Check, Model, Teardown};
use warden_core::test_support::{Harness, ITS_FRAME, Options};
use warden_smmu::fake::FAKE_RAM_BASE;

/// Host RAM: the harness's one allocation, the first of its fake memory.
const RAM: u64 = FAKE_RAM_BASE;
const RAM_SIZE: u64 = 16 << 20;
const HYP_SIZE: u64 = warden_core::test_support::CARVEOUT_SIZE;
const DOORBELL: u64 = ITS_FRAME;
const K4: u64 = abi::PGSIZE_4K;
const M2: u64 = abi::PGSIZE_2M;
/// Carve-out pages given to the pool.
const POOL: u64 = 64 * K4;
/// Host-identity's spare level-3 tables: fewer than the 2 MiB blocks of host RAM, so that donations run it
/// dry and donated pages become host-identity tables (RECLAIM of them is BUSY until their block is back).
const SPARE: usize = 2;
const MAX_DOMAINS: u16 = 4;
const MAX_DONATED: usize = 512;
/// IOVAs used by the "plausible" generator: the first 8 MiB of the input space.
const WINDOW: u64 = 8 << 20;
/// Random probes per full model check.
const PROBES: usize = 16;

/// The options of the fuzzed hypervisor over a fake SMMU reporting (and modelling) break-before-make level
/// `bbml`: StreamIDs 0..16 and 0x100..0x108, [`RAM_SIZE`] of RAM, a small pool and spare.
fn options(bbml: u32) -> Options {
    Options {
        bbml,
        sids: 16,
        extra_sids: Some((0x100, 8)),
        ram_size: RAM_SIZE,
        pool_size: POOL,
        max_domains: MAX_DOMAINS,
        max_donated_pages: MAX_DONATED,
        event_ring: 16,
        identity_spare_tables: SPARE,
        ..Options::default()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Seeded generator (splitmix64): no dependency, reproducible from a printed seed.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

/// Biased argument generators.
struct Gen<'a> {
    rng: &'a mut Rng,
    m: &'a Model,
}

impl Gen<'_> {
    /// A map that is likely to succeed: a live paging domain, aligned host RAM, 4 KiB or 2 MiB pages.
    fn plausible_map(&mut self) -> (u64, u64, u64, u64, u64, u64) {
        let paging: Vec<u64> = self
            .m
            .domains()
            .iter()
            .filter(|(_, d)| !d.blocked)
            .map(|(&id, _)| id)
            .collect();
        let id = if paging.is_empty() {
            self.dom()
        } else {
            self.rng.pick(&paging)
        };
        let pgsize = if self.rng.chance(15) { M2 } else { K4 };
        let count = if pgsize == M2 {
            1
        } else {
            1 + self.rng.below(16)
        };
        // Now and then anywhere in the 39-bit space: every new 1 GiB / 2 MiB region costs the pool a table, so
        // the pool runs dry (NOMEM), donated pages become tables and reclaiming them is refused (BUSY).
        let span = if self.rng.chance(30) {
            1 << IOVA_BITS
        } else {
            WINDOW
        };
        let iova = self.rng.below(span) & !(pgsize - 1);
        let pa =
            RAM + HYP_SIZE + (self.rng.below(RAM_SIZE - HYP_SIZE - pgsize * count) & !(pgsize - 1));
        let prot = self.rng.pick(&[
            abi::PROT_READ | abi::PROT_WRITE,
            abi::PROT_READ,
            abi::PROT_WRITE | abi::PROT_NOEXEC | abi::PROT_CACHE,
        ]);
        (id, pgsize, count, iova, pa, prot)
    }

    fn dom(&mut self) -> u64 {
        let ids = self.m.ids();
        match self.rng.below(20) {
            0..=11 if !ids.is_empty() => ids[self.rng.below(ids.len() as u64) as usize],
            12 => 0,
            13 if !ids.is_empty() => {
                // Same slot, forged generation.
                ids[self.rng.below(ids.len() as u64) as usize] ^ (1 << (16 + self.rng.below(16)))
            }
            14 if !ids.is_empty() => ids[self.rng.below(ids.len() as u64) as usize] | (1 << 32),
            15 => self.rng.below(8),
            16 => u64::MAX,
            17 => self.rng.next(),
            _ => self.m.domains().keys().next().copied().unwrap_or(1),
        }
    }

    fn sid(&mut self) -> u64 {
        match self.rng.below(12) {
            0..=7 => u64::from(self.rng.pick(self.m.sids())),
            8 => self.rng.pick(&[16, 0xff, 0x108, 0x1ff, 0xffff_ffff]),
            9 => (1 << 32) | u64::from(self.rng.pick(self.m.sids())),
            10 => u64::MAX,
            _ => self.rng.next(),
        }
    }

    fn pgsize(&mut self) -> u64 {
        match self.rng.below(20) {
            0..=13 => K4,
            14..=16 => M2,
            17 => abi::PGSIZE_1G,
            18 => self
                .rng
                .pick(&[0, 8 << 10, 3 << 12, 1 << 13, 64 << 10, 1 << 63]),
            _ => self.rng.next(),
        }
    }

    fn count(&mut self, pgsize: u64) -> u64 {
        match self.rng.below(20) {
            0..=13 if pgsize == M2 => 1 + self.rng.below(2),
            0..=13 => 1 + self.rng.below(24),
            14 => 0,
            15 => self
                .rng
                .pick(&[1 << 20, 1 << 27, 1 << 40, u64::MAX, u64::MAX / K4]),
            16 => (1u64 << IOVA_BITS) / pgsize.max(1),
            17 => 512 + self.rng.below(4),
            _ => 1,
        }
    }

    /// An IOVA for a map or unmap of `pgsize` pages: mostly aligned inside the window, often at the edges.
    fn iova(&mut self, pgsize: u64) -> u64 {
        let align = if pgsize.is_power_of_two() && pgsize >= K4 {
            pgsize
        } else {
            K4
        };
        let top = 1u64 << IOVA_BITS;
        match self.rng.below(24) {
            0..=13 => {
                // Reuse a mapped IOVA half the time so unmaps hit.
                let mapped: Vec<u64> = self
                    .m
                    .domains()
                    .values()
                    .flat_map(|d| d.map.keys().copied())
                    .collect();
                if !mapped.is_empty() && self.rng.chance(50) {
                    self.rng.pick(&mapped) & !(align - 1).min(M2 - 1)
                } else {
                    (self.rng.below(WINDOW) & !(align - 1)) % WINDOW
                }
            }
            14 => top.wrapping_sub(align.wrapping_mul(1 + self.rng.below(2))),
            15 => top,
            16 => top.wrapping_add(align),
            17 => 1 << 48,
            18 => (u64::MAX - align).wrapping_add(1),
            19 => !(K4 - 1),
            20 => self.rng.below(WINDOW) | (1 + self.rng.below(K4 - 1)),
            21 => 0,
            _ => self.rng.next(),
        }
    }

    fn pa(&mut self, pgsize: u64) -> u64 {
        let align = if pgsize == M2 { M2 } else { K4 };
        let host = RAM + HYP_SIZE + (self.rng.below(RAM_SIZE - HYP_SIZE) & !(align - 1));
        match self.rng.below(30) {
            0..=15 => host,
            16 | 17 => RAM + (self.rng.below(HYP_SIZE) & !(align - 1)),
            18 | 19 if !self.m.donated().is_empty() => {
                let d: Vec<u64> = self.m.donated().iter().copied().collect();
                self.rng.pick(&d) & !(align - 1)
            }
            20 => RAM + RAM_SIZE + (self.rng.below(4) * align),
            21 => RAM + RAM_SIZE - align,
            22 => DOORBELL,
            23 => 0x0900_0000, // PL011
            24 => 0x0900_0000 - K4,
            25 => !(align - 1),
            26 => 1 << 44,
            27 => host | (1 + self.rng.below(K4 - 1)),
            28 => RAM - align,
            _ => self.rng.next(),
        }
    }

    fn prot(&mut self) -> u64 {
        const RW: u64 = abi::PROT_READ | abi::PROT_WRITE;
        match self.rng.below(12) {
            0..=5 => RW,
            6 => abi::PROT_READ,
            7 => abi::PROT_WRITE,
            8 => 0,
            9 => RW | 1 << (6 + self.rng.below(58)),
            10 => abi::PROT_ALL,
            _ => self.rng.next(),
        }
    }
}

/// Per-run tallies, for the report line.
#[derive(Default)]
struct Tally {
    calls: u64,
    ok: BTreeMap<&'static str, u64>,
    err: BTreeMap<&'static str, u64>,
    /// Refusals by error, all calls.
    why: BTreeMap<String, u64>,
    dma_checks: u64,
    full_checks: u64,
    /// Full checks that found donated pages serving as host-identity tables.
    identity_tables: u64,
    /// Teardown reclaims refused with BUSY (host-identity tables) and retried.
    busy_retries: u64,
}

impl Tally {
    fn add(&mut self, t: Tally) {
        self.calls += t.calls;
        self.dma_checks += t.dma_checks;
        self.full_checks += t.full_checks;
        self.identity_tables += t.identity_tables;
        self.busy_retries += t.busy_retries;
        for (k, v) in t.ok {
            *self.ok.entry(k).or_default() += v;
        }
        for (k, v) in t.why {
            *self.why.entry(k).or_default() += v;
        }
        for (k, v) in t.err {
            *self.err.entry(k).or_default() += v;
        }
    }
}

/// One random call and how the model checks its answer: exactly when the model's state decides it, else its
/// legality (see the module docs).
fn pick_call(h: &Harness, g: &mut Gen<'_>) -> (Call, Check) {
    let legal = Check::Legality;
    match g.rng.below(100) {
        0..=5 => {
            let kind = match g.rng.below(8) {
                0..=3 => 0,
                4..=5 => 1,
                6 => 2,
                _ => g.rng.next(),
            };
            (Call::DomainAlloc { kind }, legal)
        }
        6..=9 => (Call::DomainFree { id: g.dom() }, Check::Exact),
        10..=19 => {
            let (sid, id) = (g.sid(), g.dom());
            (Call::Attach { sid, id }, Check::Exact)
        }
        20..=24 => (Call::Detach { sid: g.sid() }, Check::Exact),
        25..=46 => {
            let (id, pgsize, count, iova, pa, prot) = if g.rng.chance(50) {
                g.plausible_map()
            } else {
                let id = g.dom();
                let pgsize = g.pgsize();
                let count = g.count(pgsize);
                (id, pgsize, count, g.iova(pgsize), g.pa(pgsize), g.prot())
            };
            let map = Call::MapPages {
                id,
                iova,
                pa,
                pgsize,
                count,
                prot,
            };
            (map, legal)
        }
        47..=54 => (map_batch(h, g), legal),
        55..=61 => (unmap_batch(h, g), legal),
        62..=74 => {
            let mapped: Vec<(u64, u64)> =
                g.m.domains()
                    .iter()
                    .flat_map(|(&id, d)| d.map.keys().map(move |&i| (id, i)))
                    .collect();
            let (id, pgsize, count, iova) = if !mapped.is_empty() && g.rng.chance(40) {
                // Something mapped (maybe the middle of a 2 MiB block), sometimes running past its end.
                let (id, iova) = g.rng.pick(&mapped);
                (id, K4, 1 + g.rng.below(4), iova)
            } else {
                let id = g.dom();
                let pgsize = g.pgsize();
                let count = g.count(pgsize);
                (id, pgsize, count, g.iova(pgsize))
            };
            let unmap = Call::UnmapPages {
                id,
                iova,
                pgsize,
                count,
            };
            (unmap, legal)
        }
        75..=81 => {
            let pa = if g.rng.chance(80) {
                RAM + HYP_SIZE + (g.rng.below(RAM_SIZE - HYP_SIZE) & !(K4 - 1))
            } else {
                g.pa(K4)
            };
            let count = match g.rng.below(10) {
                0..=7 => 1 + g.rng.below(4),
                8 => 0,
                _ => g.rng.pick(&[u64::MAX, 1 << 40, 4096]),
            };
            (Call::Donate { pa, count }, Check::Exact)
        }
        82..=87 => {
            let d: Vec<u64> = g.m.donated().iter().copied().collect();
            let pa = if !d.is_empty() && g.rng.chance(75) {
                g.rng.pick(&d)
            } else {
                g.pa(K4)
            };
            let span = if g.rng.chance(10) { 1 << 20 } else { 8 };
            let count = 1 + g.rng.below(span);
            (Call::Reclaim { pa, count }, Check::Exact)
        }
        88..=91 => {
            let (id, iova) = (g.dom(), g.iova(K4));
            (Call::IovaToPhys { id, iova }, Check::Exact)
        }
        92..=94 => (Call::ReadEvent, Check::Exact),
        95..=97 => {
            let id = if g.rng.chance(70) {
                g.rng.below(16)
            } else {
                g.rng.next()
            };
            (Call::Stat { id }, Check::Exact)
        }
        _ => {
            // Unknown function numbers in Warden's range, and random argument registers.
            let number = 0x0e + g.rng.below(0xfff2) as u32;
            let args = std::array::from_fn(|_| g.rng.next());
            (Call::Unknown { number, args }, Check::Exact)
        }
    }
}

/// One random call, checked and recorded by the model.
fn step(h: &Harness, m: &mut Model, rng: &mut Rng, t: &mut Tally) {
    let (call, check) = pick_call(h, &mut Gen { rng, m });
    let name = call.name();
    let result = m.run(h, &call, check);
    t.calls += 1;
    match result {
        Ok(_) => *t.ok.entry(name).or_default() += 1,
        Err(e) => {
            *t.err.entry(name).or_default() += 1;
            *t.why.entry(format!("{name}:{e:?}")).or_default() += 1;
        }
    }
}

/// Writes a batch call's descriptors (`W` words each) to a page of host RAM the model has not donated (the
/// host cannot write donated pages), at an offset that leaves room for all of them, then picks what the call
/// passes: mostly that address and count, sometimes a hostile one (another page, a donated page, misaligned,
/// running past the end of its page, a count out of range). Returns `(desc, count)`; the model reads what the
/// hypervisor would find there.
fn batch_descriptors<const W: usize>(h: &Harness, g: &mut Gen<'_>, e: &[[u64; W]]) -> (u64, u64) {
    let m = g.m;
    let n = e.len() as u64;
    let size = 8 * W as u64;
    let page = loop {
        let p = RAM + HYP_SIZE + (g.rng.below(RAM_SIZE - HYP_SIZE) & !(K4 - 1));
        if !m.donated().contains(&p) {
            break p;
        }
    };
    let room = (K4 - n * size) / 8;
    let written = page + 8 * g.rng.below(room + 1);
    for (i, d) in e.iter().enumerate() {
        for (j, &v) in d.iter().enumerate() {
            // Host RAM, not a table page (not donated, not the carve-out); the hyp reads it through its
            // linear map like the pool writes its tables.
            assert!(h.mem.try_write64(written + 8 * (i * W + j) as u64, v));
        }
    }
    match g.rng.below(20) {
        0 => (g.pa(K4), n),
        1 if !m.donated().is_empty() => (*m.donated().iter().next().unwrap(), n),
        2 => (written + 4, n),
        // One word short of room for a descriptor at the end of the page.
        3 => (page + K4 - (size - 8), n),
        4 => (written, g.rng.pick(&[0, 65, u64::MAX])),
        _ => (written, n),
    }
}

/// MAP_BATCH with 1..=8 descriptors (mostly plausible, some hostile) written to a page of host RAM (or a
/// hostile descriptor address).
fn map_batch(h: &Harness, g: &mut Gen<'_>) -> Call {
    let (id, _, _, base, _, prot) = g.plausible_map();
    let prot = if g.rng.chance(90) { prot } else { g.prot() };
    let n = 1 + g.rng.below(8);
    let mut e = Vec::new();
    let mut iova = base;
    for _ in 0..n {
        let len = K4 * (1 + g.rng.below(4));
        let pa = RAM + HYP_SIZE + (g.rng.below(RAM_SIZE - HYP_SIZE - len) & !(K4 - 1));
        let ent = match g.rng.below(40) {
            0 => [iova, g.pa(K4), len],
            1 => [g.iova(K4), pa, len],
            2 => [iova, pa, g.rng.pick(&[0, 0x800, 1 << 40, !(K4 - 1)])],
            3 => [base, pa, len], // overlaps the first descriptor
            _ => [iova, pa, len],
        };
        iova = iova.wrapping_add(len + if g.rng.chance(50) { 0 } else { K4 });
        e.push(ent);
    }
    let (desc, count) = batch_descriptors(h, g, &e);
    Call::MapBatch {
        id,
        desc,
        count,
        prot,
    }
}

/// UNMAP_BATCH with 1..=8 descriptors, mostly ranges the model has mapped in a live paging domain (1..=3 pages
/// from a mapped page, maybe running past its mapping), some hostile (unmapped, overlapping, misaligned, huge),
/// written to a page of host RAM (or a hostile descriptor address).
fn unmap_batch(h: &Harness, g: &mut Gen<'_>) -> Call {
    let m = g.m;
    let paging: Vec<u64> = m
        .domains()
        .iter()
        .filter(|(_, d)| !d.blocked && !d.map.is_empty())
        .map(|(&id, _)| id)
        .collect();
    let id = if !paging.is_empty() && g.rng.chance(90) {
        g.rng.pick(&paging)
    } else {
        g.dom()
    };
    let mapped: Vec<u64> = m
        .domains()
        .get(&id)
        .map(|d| d.map.keys().copied().collect())
        .unwrap_or_default();
    let n = 1 + g.rng.below(8);
    let mut e: Vec<[u64; 2]> = Vec::new();
    for _ in 0..n {
        let len = K4 * (1 + g.rng.below(3));
        let ent = match g.rng.below(30) {
            0 => [g.iova(K4), len],
            1 => [
                g.rng
                    .pick(&mapped.clone().into_iter().chain([0]).collect::<Vec<_>>()),
                0,
            ],
            2 => [g.iova(K4), g.rng.pick(&[0x800, 1 << 40, !(K4 - 1)])],
            3 if !e.is_empty() => [e[0][0], K4], // overlaps the first descriptor
            _ if !mapped.is_empty() => {
                let start = g.rng.pick(&mapped);
                // Mostly exactly what is mapped from there on (as a flush queue holds it).
                let mut l = K4;
                while l < len && mapped.binary_search(&(start + l)).is_ok() {
                    l += K4;
                }
                [start, if g.rng.chance(85) { l } else { len }]
            }
            _ => [g.iova(K4), len],
        };
        e.push(ent);
    }
    let (desc, count) = batch_descriptors(h, g, &e);
    Call::UnmapBatch { id, desc, count }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The model's full check, with random probes.
fn check(h: &Harness, m: &Model, rng: &mut Rng, t: &mut Tally) {
    let probes: Vec<u64> = (0..PROBES).map(|_| rng.next()).collect();
    let c = m.check(h, &probes);
    t.full_checks += 1;
    t.dma_checks += c.streams;
    t.identity_tables += u64::from(c.identity_tables > 0);
}

fn run(seed: u64, iters: u64) -> Tally {
    // Odd seeds: an SMMU without BBML2, so block splits are break-before-make (the fake faults a walk that
    // meets a table under a cached block, which the model's DMA checks would catch, and counts TLB conflicts,
    // which the teardown checks).
    let o = options(if seed % 2 == 1 { 0 } else { 2 });
    let h = Harness::boot(&o).expect("boot");
    assert_eq!(h.ram, RAM);
    let mut m = Model::new(&h, &o);
    let mut rng = Rng(seed);
    let mut t = Tally::default();
    for i in 0..iters {
        step(&h, &mut m, &mut rng, &mut t);
        if i % 64 == 63 {
            check(&h, &m, &mut rng, &mut t);
        }
    }
    check(&h, &m, &mut rng, &mut t);
    // Detach all, free all (with their mappings), reclaim all: back to the start values.
    t.busy_retries += m.teardown(&h, Teardown::FreeMapped);
    t
}

#[test]
fn hostile_call_sequences_match_model() {
    let iters = env("WARDEN_FUZZ_ITERS", 2500);
    let seeds: Vec<u64> = match std::env::var("WARDEN_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(s) => vec![s],
        None => {
            let base = env("WARDEN_FUZZ_BASE", 0x5741_5244_454e);
            (0..env("WARDEN_FUZZ_RUNS", 4)).map(|i| base + i).collect()
        }
    };
    let mut total = Tally::default();
    for seed in seeds {
        eprintln!("fuzz: seed {seed} ({iters} calls; replay with WARDEN_FUZZ_SEED={seed})");
        total.add(run(seed, iters));
    }
    let ok: u64 = total.ok.values().sum();
    eprintln!(
        "FUZZ: {} calls, {} succeeded, {} refused, {} full model checks, {} StreamID DMA checks",
        total.calls,
        ok,
        total.calls - ok,
        total.full_checks,
        total.dma_checks
    );
    eprintln!("FUZZ: ok {:?}", total.ok);
    eprintln!("FUZZ: refused {:?}", total.err);
    eprintln!("FUZZ: refusals by error {:?}", total.why);
    eprintln!(
        "FUZZ: {} full checks with donated host-identity tables, {} BUSY reclaims retried at teardown",
        total.identity_tables, total.busy_retries
    );
    assert!(
        total.identity_tables > 0,
        "the generator never ran host-identity's spare dry"
    );
    // The generator must exercise the successful paths too, not only refusals.
    for f in [
        "alloc",
        "free",
        "attach",
        "detach",
        "map",
        "map_batch",
        "unmap",
        "unmap_batch",
        "donate",
        "reclaim",
    ] {
        assert!(
            total.ok.get(f).copied().unwrap_or(0) > 0,
            "no successful {f}"
        );
    }
}
