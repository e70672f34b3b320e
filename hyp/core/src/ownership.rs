//! Page ownership and per-page DMA mapping counts.
//!
//! Every 4 KiB page of RAM the device tree describes has one state, kept in one `AtomicU32` so that a
//! state change and a count change are a single compare-and-swap (no lock, no torn state):
//!
//! | word | state |
//! |---|---|
//! | `0..=MAX_DMA_COUNT` | [`PageState::Host`]: host-owned, with that many DMA mappings in paging domains |
//! | [`WORD_HYP`] | [`PageState::Hyp`]: the hypervisor's carve-out, never mappable |
//! | [`WORD_DONATED`] | [`PageState::Donated`]: given to the hyp's page-table pool by the host, never mappable |
//!
//! Cost: one word per 4 KiB page of each tracked range, allocated per range (0.1 % of RAM; holes between ranges,
//! e.g. NUMA nodes or RAM above 4 GiB, cost nothing), counted in `crate::sizing`. A page's state is found by a
//! binary search over the ranges and one index, so every operation stays O(pages touched).
//!
//! MMIO pages devices may be granted (MSI doorbells) are tracked the same way in regions of kind
//! [`MemKind::Mmio`]; everything else ([`PageState::None`]: holes, other MMIO) is never mappable.
//!
//! Rules (each enforced here, per page, atomically):
//! - only `Host` pages of the expected [`MemKind`] can gain a DMA mapping; counts never wrap
//!   ([`OwnershipError::CountOverflow`]);
//! - a page is donated only from `Host` with count 0 ([`OwnershipError::Busy`] otherwise), so a page a
//!   device can reach is never donated, and a donated page is never mapped;
//! - range operations are all-or-nothing: on the first failing page, the pages already changed are rolled back.
//!
//! The host-identity domain maps all host RAM without counting; donation removes pages from it (see
//! [`crate::dispatch`]).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use warden_abi::{PAGE_SHIFT, PAGE_SIZE};
use warden_dt::PhysRange;

/// Word value of a hypervisor-owned page.
pub const WORD_HYP: u32 = u32::MAX;
/// Word value of a donated page.
pub const WORD_DONATED: u32 = u32::MAX - 1;
/// The largest DMA mapping count a page can have.
pub const MAX_DMA_COUNT: u32 = u32::MAX - 16;

/// What kind of physical memory a page or region is: the kind ownership tracks pages by, and the memory type
/// of a host stage-2 mapping ([`crate::host_s2::Translation::kind`]).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum MemKind {
    /// RAM from a DT `memory` node: Normal write-back memory in the host stage-2.
    Ram,
    /// MMIO: Device memory in the host stage-2. Ownership tracks only the MMIO devices may be granted DMA
    /// access to (MSI doorbell frames).
    Mmio,
}

/// The state of one page.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum PageState {
    /// Host-owned, with this many DMA mappings in paging domains.
    Host {
        /// RAM or a doorbell.
        kind: MemKind,
        /// DMA mapping count.
        count: u32,
    },
    /// Hypervisor-owned (carve-out).
    Hyp,
    /// Donated by the host to the hypervisor's page-table pool.
    Donated,
    /// Not tracked memory: a hole or MMIO devices may not reach.
    None,
}

/// Why an ownership operation failed.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum OwnershipError {
    /// A page is not tracked memory.
    #[error("page {0:#x} is not host memory")]
    NotHostMemory(u64),
    /// A page belongs to the hypervisor.
    #[error("page {0:#x} belongs to the hypervisor")]
    HypMemory(u64),
    /// A page was donated to the hypervisor.
    #[error("page {0:#x} is donated")]
    DonatedMemory(u64),
    /// A page is RAM where MMIO was asked for, or the reverse.
    #[error("page {0:#x} is not of the expected memory kind")]
    WrongKind(u64),
    /// A page still has DMA mappings.
    #[error("page {0:#x} is DMA-mapped")]
    Busy(u64),
    /// A page is not donated (reclaim).
    #[error("page {0:#x} is not donated")]
    NotDonated(u64),
    /// A page's DMA count would exceed [`MAX_DMA_COUNT`].
    #[error("page {0:#x}: DMA count overflow")]
    CountOverflow(u64),
    /// A decrement found a page without mappings (broken invariant).
    #[error("page {0:#x}: DMA count underflow")]
    CountUnderflow(u64),
    /// The range is not page aligned or wraps.
    #[error("bad range {0:#x}")]
    BadRange(u64),
}

/// Why building the ownership map failed.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum OwnershipInitError {
    /// A range is not page aligned or is empty.
    #[error("range {0:?} is not page aligned or empty")]
    Unaligned(PhysRange),
    /// Two tracked ranges overlap.
    #[error("ranges overlap at {0:?}")]
    Overlap(PhysRange),
    /// A hypervisor range is not inside RAM.
    #[error("hypervisor range {0:?} is not RAM")]
    HypNotRam(PhysRange),
}

struct Region {
    base: u64,
    pages: u64,
    kind: MemKind,
    words: Vec<AtomicU32>,
}

impl Region {
    fn end(&self) -> u64 {
        self.base + (self.pages << PAGE_SHIFT)
    }
}

/// The page-state map of all RAM (and DMA-reachable MMIO).
pub struct Ownership {
    regions: Vec<Region>,
    donated: AtomicU64,
    mapped: AtomicU64,
}

impl core::fmt::Debug for Ownership {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ownership")
            .field("regions", &self.regions.len())
            .field("donated", &self.donated_pages())
            .field("mapped", &self.mapped_pages())
            .finish()
    }
}

fn aligned(r: &PhysRange) -> bool {
    r.size != 0
        && r.base.is_multiple_of(PAGE_SIZE)
        && r.size.is_multiple_of(PAGE_SIZE)
        && r.base.checked_add(r.size).is_some()
}

/// Adds `delta` (wrapping: 1 or `u32::MAX` for -1) to every word of a run, each with one compare-and-swap, if
/// every word's value passes `ok` (a DMA count that can take the step); all or nothing: at the first word that
/// does not, the words already changed are stepped back and the result is `false`. `guess` is tried as each
/// word's value first (the previous word's value after that), so the common case needs no separate load.
///
/// This is the per-run path of a physically contiguous run (one region lookup and one bounds check for the
/// whole run, then one strong compare-and-swap per page with no other work in the loop: 14 EL2 instructions
/// per page of an increment, against 19 with a weak compare-and-swap, whose spurious failures the compiler
/// turns into an extra flag test per page). The per-page atomic stays: it is what makes a concurrent donate
/// of a page inside the run either see the count or be seen by it (each word is one atomic location, so a
/// donate's `0 -> WORD_DONATED` and our step are ordered, and whichever comes second refuses).
fn step_all(words: &[AtomicU32], guess: u32, ok: impl Fn(u32) -> bool, delta: u32) -> bool {
    let mut old = guess;
    for (i, w) in words.iter().enumerate() {
        loop {
            if ok(old) {
                match w.compare_exchange(
                    old,
                    old.wrapping_add(delta),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    // Not the guessed value: retry with the actual one if it can take the step.
                    Err(current) if ok(current) => {
                        old = current;
                        continue;
                    }
                    Err(_) => {}
                }
            } else {
                // The guess cannot take the step: decide on the page's actual value.
                old = w.load(Ordering::Acquire);
                if ok(old) {
                    continue;
                }
            }
            // Refused. Undo ours only: each of those words still holds a count we stepped (nothing can donate
            // or reclaim a page while we hold a count on it), so the reverse step is checked too.
            let back = delta.wrapping_neg();
            for w in &words[..i] {
                let _ = w.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                    let n = c.wrapping_add(back);
                    (n <= MAX_DMA_COUNT).then_some(n)
                });
            }
            return false;
        }
    }
    true
}

impl Ownership {
    /// Builds the map: `ram` (DT memory) starts host-owned, except `hyp` ranges (which must lie inside RAM);
    /// `mmio` are the doorbell frames devices may be granted.
    ///
    /// # Errors
    ///
    /// Unaligned or empty ranges, overlapping ranges, hyp ranges outside RAM.
    pub fn new(
        ram: &[PhysRange],
        mmio: &[PhysRange],
        hyp: &[PhysRange],
    ) -> Result<Self, OwnershipInitError> {
        let mut regions = Vec::with_capacity(ram.len() + mmio.len());
        for (list, kind) in [(ram, MemKind::Ram), (mmio, MemKind::Mmio)] {
            for r in list {
                if !aligned(r) {
                    return Err(OwnershipInitError::Unaligned(*r));
                }
                let pages = r.size >> PAGE_SHIFT;
                let mut words = Vec::with_capacity(pages as usize);
                words.resize_with(pages as usize, || AtomicU32::new(0));
                regions.push(Region {
                    base: r.base,
                    pages,
                    kind,
                    words,
                });
            }
        }
        regions.sort_unstable_by_key(|r| r.base);
        for w in regions.windows(2) {
            if w[0].end() > w[1].base {
                return Err(OwnershipInitError::Overlap(PhysRange {
                    base: w[1].base,
                    size: w[1].pages << PAGE_SHIFT,
                }));
            }
        }
        let own = Self {
            regions,
            donated: AtomicU64::new(0),
            mapped: AtomicU64::new(0),
        };
        for h in hyp {
            if !aligned(h) {
                return Err(OwnershipInitError::Unaligned(*h));
            }
            let mut pa = h.base;
            while pa < h.end() {
                match own.word(pa) {
                    Some((w, MemKind::Ram)) => w.store(WORD_HYP, Ordering::Relaxed),
                    _ => return Err(OwnershipInitError::HypNotRam(*h)),
                }
                pa += PAGE_SIZE;
            }
        }
        Ok(own)
    }

    fn region(&self, pa: u64) -> Option<&Region> {
        let i = self.regions.partition_point(|r| r.base <= pa);
        let r = self.regions.get(i.checked_sub(1)?)?;
        (pa < r.end()).then_some(r)
    }

    fn word(&self, pa: u64) -> Option<(&AtomicU32, MemKind)> {
        let r = self.region(pa)?;
        let idx = ((pa - r.base) >> PAGE_SHIFT) as usize;
        Some((&r.words[idx], r.kind))
    }

    /// The state of the page containing `pa`.
    #[must_use]
    pub fn state(&self, pa: u64) -> PageState {
        match self.word(pa) {
            None => PageState::None,
            Some((w, kind)) => match w.load(Ordering::Acquire) {
                WORD_HYP => PageState::Hyp,
                WORD_DONATED => PageState::Donated,
                count => PageState::Host { kind, count },
            },
        }
    }

    /// The words of `[pa, pa + pages * 4K)` and their kind, if the range lies inside one region.
    fn words(&self, pa: u64, pages: u64) -> Option<(&[AtomicU32], MemKind)> {
        if !pa.is_multiple_of(PAGE_SIZE) {
            return None;
        }
        let r = self.region(pa)?;
        let first = ((pa - r.base) >> PAGE_SHIFT) as usize;
        let end = first.checked_add(usize::try_from(pages).ok()?)?;
        Some((r.words.get(first..end)?, r.kind))
    }

    /// Applies `f` to each page of `[pa, pa + pages * 4K)` with a CAS; on the first error, applies `undo` to the
    /// pages already changed (in reverse) and returns the error.
    fn apply(
        &self,
        pa: u64,
        pages: u64,
        f: impl Fn(u64, u32, MemKind) -> Result<u32, OwnershipError>,
        undo: impl Fn(u32) -> u32,
    ) -> Result<(), OwnershipError> {
        let len = pages
            .checked_mul(PAGE_SIZE)
            .ok_or(OwnershipError::BadRange(pa))?;
        if !pa.is_multiple_of(PAGE_SIZE) || pa.checked_add(len).is_none() {
            return Err(OwnershipError::BadRange(pa));
        }
        let mut done = 0u64;
        let mut result = Ok(());
        // The value the next page most likely holds (the previous page's): tried first, so that the common
        // case is one compare-and-swap per page without a separate load.
        let mut guess = 0u32;
        'regions: while done < pages {
            let start = pa + (done << PAGE_SHIFT);
            let Some(r) = self.region(start) else {
                result = Err(OwnershipError::NotHostMemory(start));
                break;
            };
            // One region lookup per region the range crosses, not per page.
            let first = ((start - r.base) >> PAGE_SHIFT) as usize;
            let n = (pages - done).min(r.pages - first as u64) as usize;
            for (i, w) in r.words[first..first + n].iter().enumerate() {
                let page = start + ((i as u64) << PAGE_SHIFT);
                let mut old = guess;
                let step = loop {
                    match f(page, old, r.kind) {
                        Ok(new) => match w.compare_exchange_weak(
                            old,
                            new,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => break Ok(()),
                            Err(current) => old = current,
                        },
                        Err(e) => {
                            // Refused for the guessed value: decide on the page's actual value.
                            let current = w.load(Ordering::Acquire);
                            if current == old {
                                break Err(e);
                            }
                            old = current;
                        }
                    }
                };
                if let Err(e) = step {
                    result = Err(e);
                    break 'regions;
                }
                guess = old;
                done += 1;
            }
        }
        if result.is_err() {
            for i in (0..done).rev() {
                let page = pa + (i << PAGE_SHIFT);
                if let Some((w, _)) = self.word(page) {
                    let _ =
                        w.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| Some(undo(old)));
                }
            }
        }
        result
    }

    /// Adds one DMA mapping to every page of the range (all or nothing). `kind` is the memory the caller's prot
    /// asks for.
    ///
    /// # Errors
    ///
    /// The first page that is not host memory of `kind`, or whose count would overflow.
    pub fn inc_range(&self, pa: u64, pages: u64, kind: MemKind) -> Result<(), OwnershipError> {
        if let Some((words, k)) = self.words(pa, pages)
            && k == kind
            && step_all(words, 0, |c| c < MAX_DMA_COUNT, 1)
        {
            self.mapped.fetch_add(pages, Ordering::Relaxed);
            return Ok(());
        }
        // Refused somewhere (or the range spans regions): the page-by-page path finds the error.
        self.apply(
            pa,
            pages,
            |page, old, k| match dma_count(page, old)? {
                _ if k != kind => Err(OwnershipError::WrongKind(page)),
                c if c >= MAX_DMA_COUNT => Err(OwnershipError::CountOverflow(page)),
                c => Ok(c + 1),
            },
            |c| c - 1,
        )?;
        self.mapped.fetch_add(pages, Ordering::Relaxed);
        Ok(())
    }

    /// Removes one DMA mapping from every page of the range (all or nothing).
    ///
    /// # Errors
    ///
    /// [`OwnershipError::CountUnderflow`] (a broken invariant) or a page that is not host memory.
    pub fn dec_range(&self, pa: u64, pages: u64) -> Result<(), OwnershipError> {
        if let Some((words, _)) = self.words(pa, pages)
            && step_all(words, 1, |c| (1..=MAX_DMA_COUNT).contains(&c), u32::MAX)
        {
            self.mapped.fetch_sub(pages, Ordering::Relaxed);
            return Ok(());
        }
        self.apply(
            pa,
            pages,
            |page, old, _| match dma_count(page, old)? {
                0 => Err(OwnershipError::CountUnderflow(page)),
                c => Ok(c - 1),
            },
            |c| c + 1,
        )?;
        self.mapped.fetch_sub(pages, Ordering::Relaxed);
        Ok(())
    }

    /// Marks host RAM pages with no DMA mapping as donated (all or nothing).
    ///
    /// # Errors
    ///
    /// A page that is hyp memory, already donated, MMIO or a hole, or DMA-mapped ([`OwnershipError::Busy`]).
    pub fn donate_range(&self, pa: u64, pages: u64) -> Result<(), OwnershipError> {
        self.apply(
            pa,
            pages,
            |page, old, k| match dma_count(page, old)? {
                _ if k != MemKind::Ram => Err(OwnershipError::NotHostMemory(page)),
                0 => Ok(WORD_DONATED),
                _ => Err(OwnershipError::Busy(page)),
            },
            |_| 0,
        )?;
        self.donated.fetch_add(pages, Ordering::Relaxed);
        Ok(())
    }

    /// Returns donated pages to the host (all or nothing).
    ///
    /// # Errors
    ///
    /// [`OwnershipError::NotDonated`] for the first page that is not donated.
    pub fn reclaim_range(&self, pa: u64, pages: u64) -> Result<(), OwnershipError> {
        self.apply(
            pa,
            pages,
            |page, old, _| {
                if old == WORD_DONATED {
                    Ok(0)
                } else {
                    Err(OwnershipError::NotDonated(page))
                }
            },
            |_| WORD_DONATED,
        )?;
        self.donated.fetch_sub(pages, Ordering::Relaxed);
        Ok(())
    }

    /// Checks that every page of the range is donated, without changing anything.
    ///
    /// # Errors
    ///
    /// [`OwnershipError::NotDonated`] for the first page that is not donated.
    pub fn check_donated(&self, pa: u64, pages: u64) -> Result<(), OwnershipError> {
        for i in 0..pages {
            let page = pa
                .checked_add(i << PAGE_SHIFT)
                .ok_or(OwnershipError::BadRange(pa))?;
            if self.state(page) != PageState::Donated {
                return Err(OwnershipError::NotDonated(page));
            }
        }
        Ok(())
    }

    /// Pages currently donated.
    #[must_use]
    pub fn donated_pages(&self) -> u64 {
        self.donated.load(Ordering::Relaxed)
    }

    /// Sum of the DMA counts of all pages.
    #[must_use]
    pub fn mapped_pages(&self) -> u64 {
        self.mapped.load(Ordering::Relaxed)
    }

    /// The maximal runs of host-owned pages of `kind` (any count), in address order: what the host-identity
    /// domain maps.
    pub fn host_runs(&self, kind: MemKind, mut f: impl FnMut(u64, u64)) {
        for r in self.regions.iter().filter(|r| r.kind == kind) {
            let mut run: Option<(u64, u64)> = None;
            for (i, w) in r.words.iter().enumerate() {
                let pa = r.base + ((i as u64) << PAGE_SHIFT);
                let host = !matches!(w.load(Ordering::Acquire), WORD_HYP | WORD_DONATED);
                run = match (run, host) {
                    (Some((b, n)), true) => Some((b, n + 1)),
                    (None, true) => Some((pa, 1)),
                    (Some((b, n)), false) => {
                        f(b, n << PAGE_SHIFT);
                        None
                    }
                    (None, false) => None,
                };
            }
            if let Some((b, n)) = run {
                f(b, n << PAGE_SHIFT);
            }
        }
    }
}

/// The DMA-mapping count a host page's word holds, or why the page has none: hyp memory or donated (the
/// refusals every count edit shares).
#[inline(always)]
fn dma_count(page: u64, word: u32) -> Result<u32, OwnershipError> {
    match word {
        WORD_HYP => Err(OwnershipError::HypMemory(page)),
        WORD_DONATED => Err(OwnershipError::DonatedMemory(page)),
        c => Ok(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: u64 = 0x4000_0000;

    fn r(base: u64, size: u64) -> PhysRange {
        PhysRange { base, size }
    }

    /// Host RAM with `count` DMA mappings.
    fn ram(count: u32) -> PageState {
        PageState::Host {
            kind: MemKind::Ram,
            count,
        }
    }

    /// Host MMIO with `count` DMA mappings.
    fn mmio(count: u32) -> PageState {
        PageState::Host {
            kind: MemKind::Mmio,
            count,
        }
    }

    fn own() -> Ownership {
        Ownership::new(
            &[r(RAM, 0x40_0000)],
            &[r(0x0809_0000, 0x1_0000)],
            &[r(RAM, 0x10_0000)],
        )
        .unwrap()
    }

    #[test]
    fn initial_states() {
        let o = own();
        assert_eq!(o.state(RAM), PageState::Hyp);
        assert_eq!(o.state(RAM + 0xf_f000), PageState::Hyp);
        assert_eq!(o.state(RAM + 0x10_0000), ram(0));
        assert_eq!(o.state(RAM + 0x40_0000), PageState::None);
        assert_eq!(o.state(0x0809_0000), mmio(0));
        assert_eq!(o.state(0), PageState::None);
        assert_eq!(o.state(u64::MAX), PageState::None);
        let mut runs = Vec::new();
        o.host_runs(MemKind::Ram, |b, s| runs.push((b, s)));
        assert_eq!(runs, [(RAM + 0x10_0000, 0x30_0000)]);
    }

    #[test]
    fn init_errors() {
        assert!(matches!(
            Ownership::new(&[r(RAM, 0x1001)], &[], &[]),
            Err(OwnershipInitError::Unaligned(_))
        ));
        assert!(matches!(
            Ownership::new(&[r(RAM, 0x2000), r(RAM + 0x1000, 0x2000)], &[], &[]),
            Err(OwnershipInitError::Overlap(_))
        ));
        assert!(matches!(
            Ownership::new(&[r(RAM, 0x2000)], &[], &[r(0, 0x1000)]),
            Err(OwnershipInitError::HypNotRam(_))
        ));
    }

    #[test]
    fn inc_is_all_or_nothing() {
        let o = own();
        let host = RAM + 0x10_0000;
        // The range runs from host memory into a hole past the end of RAM: nothing changes.
        assert_eq!(
            o.inc_range(RAM + 0x3f_e000, 4, MemKind::Ram),
            Err(OwnershipError::NotHostMemory(RAM + 0x40_0000))
        );
        assert_eq!(o.state(RAM + 0x3f_e000), ram(0));
        // Into hyp memory.
        assert_eq!(
            o.inc_range(RAM + 0xf_f000, 2, MemKind::Ram),
            Err(OwnershipError::HypMemory(RAM + 0xf_f000))
        );
        assert_eq!(o.state(host), ram(0));
        o.inc_range(host, 3, MemKind::Ram).unwrap();
        o.inc_range(host, 1, MemKind::Ram).unwrap();
        assert_eq!(o.state(host), ram(2));
        assert_eq!(o.mapped_pages(), 4);
        assert_eq!(
            o.inc_range(host, 1, MemKind::Mmio),
            Err(OwnershipError::WrongKind(host))
        );
        assert_eq!(
            o.inc_range(0x0809_0000, 1, MemKind::Ram),
            Err(OwnershipError::WrongKind(0x0809_0000))
        );
        o.inc_range(0x0809_0000, 16, MemKind::Mmio).unwrap();
        o.dec_range(host, 3).unwrap();
        assert_eq!(
            o.dec_range(host + 0x1000, 1),
            Err(OwnershipError::CountUnderflow(host + 0x1000))
        );
        assert_eq!(o.state(host), ram(1));
        assert_eq!(
            o.inc_range(host + 1, 1, MemKind::Ram),
            Err(OwnershipError::BadRange(host + 1))
        );
        assert_eq!(
            o.inc_range(u64::MAX - 0xfff, 2, MemKind::Ram),
            Err(OwnershipError::BadRange(u64::MAX - 0xfff))
        );
        assert_eq!(
            o.inc_range(host, u64::MAX, MemKind::Ram),
            Err(OwnershipError::BadRange(host))
        );
    }

    /// A refusal in the middle of a range inside one region (the one-CAS-per-page path) rolls back the pages
    /// before it and reports the same error as page by page.
    #[test]
    fn refusal_mid_range_rolls_back() {
        let o = own();
        let host = RAM + 0x30_0000;
        let count = |p: u64| match o.state(p) {
            PageState::Host { count, .. } => count,
            other => panic!("{other:?}"),
        };
        o.donate_range(host + 0x2000, 1).unwrap();
        o.inc_range(host, 1, MemKind::Ram).unwrap();
        assert_eq!(
            o.inc_range(host, 4, MemKind::Ram),
            Err(OwnershipError::DonatedMemory(host + 0x2000))
        );
        assert_eq!((count(host), count(host + 0x1000)), (1, 0));
        assert_eq!(o.state(host + 0x2000), PageState::Donated);
        assert_eq!(o.mapped_pages(), 1);
        o.inc_range(host + 0x3000, 2, MemKind::Ram).unwrap();
        o.inc_range(host + 0x4000, 1, MemKind::Ram).unwrap();
        // Counts 1, 2 then a page without mappings: the decrement changes nothing.
        assert_eq!(
            o.dec_range(host + 0x3000, 3),
            Err(OwnershipError::CountUnderflow(host + 0x5000))
        );
        assert_eq!((count(host + 0x3000), count(host + 0x4000)), (1, 2));
        o.dec_range(host + 0x3000, 2).unwrap();
        assert_eq!((count(host + 0x3000), count(host + 0x4000)), (0, 1));
        assert_eq!(o.mapped_pages(), 2);
    }

    #[test]
    fn count_never_wraps() {
        let o = own();
        let host = RAM + 0x20_0000;
        let (w, _) = o.word(host + 0x1000).unwrap();
        w.store(MAX_DMA_COUNT, Ordering::Relaxed);
        assert_eq!(
            o.inc_range(host, 2, MemKind::Ram),
            Err(OwnershipError::CountOverflow(host + 0x1000))
        );
        assert_eq!(o.state(host), ram(0));
        assert_eq!(o.state(host + 0x1000), ram(MAX_DMA_COUNT));
    }

    #[test]
    fn donate_and_reclaim_rules() {
        let o = own();
        let host = RAM + 0x20_0000;
        o.inc_range(host + 0x2000, 1, MemKind::Ram).unwrap();
        assert_eq!(
            o.donate_range(host, 4),
            Err(OwnershipError::Busy(host + 0x2000))
        );
        assert_eq!(o.state(host), ram(0));
        o.donate_range(host, 2).unwrap();
        assert_eq!(o.donated_pages(), 2);
        assert_eq!(
            o.inc_range(host, 1, MemKind::Ram),
            Err(OwnershipError::DonatedMemory(host))
        );
        assert_eq!(
            o.donate_range(host + 0x1000, 1),
            Err(OwnershipError::DonatedMemory(host + 0x1000))
        );
        assert_eq!(o.donate_range(RAM, 1), Err(OwnershipError::HypMemory(RAM)));
        assert_eq!(
            o.donate_range(0x0809_0000, 1),
            Err(OwnershipError::NotHostMemory(0x0809_0000))
        );
        assert_eq!(
            o.reclaim_range(host, 3),
            Err(OwnershipError::NotDonated(host + 0x2000))
        );
        assert_eq!(o.check_donated(host, 2), Ok(()));
        o.reclaim_range(host, 2).unwrap();
        assert_eq!(o.donated_pages(), 0);
        assert_eq!(
            o.reclaim_range(RAM, 1),
            Err(OwnershipError::NotDonated(RAM))
        );
    }

    /// The counts of every page of `[pa, pa + pages * 4K)`.
    fn counts(o: &Ownership, pa: u64, pages: u64) -> Vec<u32> {
        (0..pages)
            .map(|i| match o.state(pa + (i << PAGE_SHIFT)) {
                PageState::Host { count, .. } => count,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// A 1 MiB run (the shape of a contiguous 1 MiB write) with a page in the middle that refuses the step, in
    /// turn donated, at the count limit and (for the decrement) without mappings: each call fails naming
    /// that page and leaves every count and the mapped total as they were.
    #[test]
    fn run_refused_in_the_middle_changes_nothing() {
        let o = own();
        let run = RAM + 0x20_0000;
        let pages = 256;
        let mid = run + (128 << PAGE_SHIFT);
        o.inc_range(run, pages, MemKind::Ram).unwrap();
        let before = counts(&o, run, pages);
        assert_eq!(o.mapped_pages(), pages);
        o.dec_range(mid, 1).unwrap();
        o.donate_range(mid, 1).unwrap();
        assert_eq!(
            o.inc_range(run, pages, MemKind::Ram),
            Err(OwnershipError::DonatedMemory(mid))
        );
        assert_eq!(
            o.dec_range(run, pages),
            Err(OwnershipError::DonatedMemory(mid))
        );
        o.reclaim_range(mid, 1).unwrap();
        assert_eq!(
            o.dec_range(run, pages),
            Err(OwnershipError::CountUnderflow(mid))
        );
        o.inc_range(mid, 1, MemKind::Ram).unwrap();
        assert_eq!(counts(&o, run, pages), before);
        let (w, _) = o.word(mid).unwrap();
        w.store(MAX_DMA_COUNT, Ordering::Relaxed);
        assert_eq!(
            o.inc_range(run, pages, MemKind::Ram),
            Err(OwnershipError::CountOverflow(mid))
        );
        w.store(1, Ordering::Relaxed);
        assert_eq!(counts(&o, run, pages), before);
        assert_eq!(o.mapped_pages(), pages);
        o.dec_range(run, pages).unwrap();
        assert_eq!(counts(&o, run, pages), [0; 256]);
        assert_eq!(o.mapped_pages(), 0);
    }

    /// Runs step exactly their own pages: the pages either side keep their counts, a run may end on the last
    /// page of a region or start on the first host page after the hyp's carve-out, and one page past either
    /// end is refused with nothing changed.
    #[test]
    fn run_counts_at_boundaries() {
        let o = own();
        let first = RAM + 0x10_0000; // first host page, just after the hyp's range
        let last = RAM + 0x3f_f000; // last page of the region
        o.inc_range(first, 16, MemKind::Ram).unwrap();
        o.inc_range(first + 0x1000, 14, MemKind::Ram).unwrap();
        let mut want = [1u32; 17];
        want[1..15].fill(2);
        want[16] = 0;
        assert_eq!(counts(&o, first, 17), want);
        o.inc_range(last - 0xf000, 16, MemKind::Ram).unwrap();
        assert_eq!(counts(&o, last - 0x1_0000, 17)[..2], [0, 1]);
        assert_eq!(o.state(last), ram(1));
        assert_eq!(
            o.inc_range(last - 0xf000, 17, MemKind::Ram),
            Err(OwnershipError::NotHostMemory(last + 0x1000))
        );
        assert_eq!(
            o.inc_range(first - 0x1000, 17, MemKind::Ram),
            Err(OwnershipError::HypMemory(first - 0x1000))
        );
        assert_eq!(counts(&o, first, 17), want);
        assert_eq!(counts(&o, last - 0xf000, 16), [1; 16]);
        assert_eq!(o.mapped_pages(), 16 + 14 + 16);
        o.dec_range(first, 16).unwrap();
        o.dec_range(first + 0x1000, 14).unwrap();
        o.dec_range(last - 0xf000, 16).unwrap();
        assert_eq!(o.mapped_pages(), 0);
        assert_eq!(counts(&o, first, 16), [0; 16]);
    }

    /// One thread maps and unmaps a 64-page run while another donates and reclaims a page inside it: a page is
    /// never both donated and counted. Each thread checks what it holds (while the run is counted, the page
    /// has a count; while the page is donated, it stays donated), and at the end every count is 0.
    #[test]
    fn concurrent_donate_inside_a_run() {
        use std::sync::atomic::AtomicBool;
        let o = own();
        let run = RAM + 0x20_0000;
        let pages = 64;
        let inside = run + (37 << PAGE_SHIFT);
        let stop = AtomicBool::new(false);
        let (mapped, donated) = std::thread::scope(|s| {
            let mapper = s.spawn(|| {
                let mut ok = 0u32;
                for _ in 0..20_000 {
                    match o.inc_range(run, pages, MemKind::Ram) {
                        Ok(()) => {
                            ok += 1;
                            assert!(matches!(
                                o.state(inside),
                                PageState::Host { count: 1.., .. }
                            ));
                            o.dec_range(run, pages).unwrap();
                        }
                        Err(e) => assert_eq!(e, OwnershipError::DonatedMemory(inside)),
                    }
                }
                stop.store(true, Ordering::Release);
                ok
            });
            let donor = s.spawn(|| {
                let mut ok = 0u32;
                while !stop.load(Ordering::Acquire) {
                    match o.donate_range(inside, 1) {
                        Ok(()) => {
                            ok += 1;
                            assert_eq!(o.state(inside), PageState::Donated);
                            o.reclaim_range(inside, 1).unwrap();
                        }
                        Err(e) => assert_eq!(e, OwnershipError::Busy(inside)),
                    }
                }
                ok
            });
            (mapper.join().unwrap(), donor.join().unwrap())
        });
        assert!(mapped > 0, "the run was never mapped");
        assert!(donated > 0 || mapped == 20_000);
        assert_eq!(counts(&o, run, pages), [0; 64]);
        assert_eq!((o.mapped_pages(), o.donated_pages()), (0, 0));
    }
}
