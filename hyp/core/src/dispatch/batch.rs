//! `MAP_BATCH`: many IOVA ranges mapped in one domain with one call, all or nothing; `UNMAP_BATCH`: many
//! unmapped with one call and one invalidation (lazy domains).
//!
//! The host passes the physical address of an array of descriptors (`{iova, pa, len}`, three little-endian
//! u64 each) in its own RAM. The hypervisor pins the descriptor page (one DMA count: it cannot be donated while
//! it is read), copies every descriptor **once** into a fixed buffer on its stack and unpins it; everything after
//! that works on the copy, so the host changing the array during the call changes nothing. Then, without
//! touching the domain: every descriptor is checked on its own and against the others (no two overlap); under
//! the domain's lock: no descriptor's IOVA range is mapped, every page of every PA range takes a DMA count
//! (undone on the first failure), the pool reserves an upper bound of the tables needed (the sum of each
//! descriptor's need), and only then is anything mapped. So a failing call changes nothing, like `MAP_PAGES`.
//!
//! As in `MAP_PAGES`, a descriptor whose pages all go into level-3 tables the domain already has (and are
//! unmapped) is mapped in place ([`domain::PagingDomain::map_pages_in_place_each`]: no table walk of
//! aarch64-paging, no page need, one level-3 table lookup per 2 MiB piece the descriptors share); the others take the generic path and are mapped first (the only step that can still fail, on
//! a broken invariant), so the in-place ones never need undoing. The result is the same as `MAP_PAGES` calls
//! for each descriptor in turn, in any order: descriptors do not overlap, and a block is only written where one
//! descriptor covers a whole block, whose tables no other descriptor can share.
//!
//! `UNMAP_BATCH` reads its `{iova, len}` descriptors the same way (same placement rules, same pinning, one
//! copy), checks each on its own and against the others, then under the domain's lock: every page of every
//! range is mapped, the pool reserves the splits the ranges' ends need (the sum of each descriptor's need), and
//! only then does it clear every range and issue **one** range invalidation with its CMD_SYNC over the span of
//! all of them (the SMMU driver's planner makes it one range command with RIL, or one VMID-wide command when
//! that is fewer); only after it completed do the pages' DMA counts drop. So no page leaves a device's reach
//! before its count drops, and a failing call changes nothing (but `TIMEOUT`/`HW_ERROR` of that invalidation:
//! entries cleared, counts kept). A batch whose ranges have more than [`BATCH_UNMAP_RUNS`] discontiguous PA runs
//! between them takes one invalidation per [`BATCH_UNMAP_RUNS`] runs.

use super::unmap::{BATCH_UNMAP_RUNS, Cleared};
use super::*;

/// Most descriptors per call.
const MAX: usize = abi::MAP_BATCH_MAX_ENTRIES as usize;
/// Most `UNMAP_BATCH` descriptors per call.
const UNMAP_MAX: usize = abi::UNMAP_BATCH_MAX_ENTRIES as usize;

/// Lists of at most this many descriptors are copied into a buffer of this size.
const SHORT: usize = 16;
// Which descriptors are mapped in place is a bit mask in a u64.
const _: () = assert!(MAX <= 64 && SHORT <= MAX);

/// One descriptor, as copied from the host.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub(super) struct BatchEntry {
    /// First IOVA.
    pub iova: u64,
    /// First PA.
    pub pa: u64,
    /// Length in bytes.
    pub len: u64,
}

/// One `UNMAP_BATCH` descriptor, as copied from the host.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub(super) struct UnmapEntry {
    /// First IOVA.
    pub iova: u64,
    /// Length in bytes.
    pub len: u64,
}

/// A descriptor the host hands over in an array: built from its little-endian u64 words, read in order.
trait Descriptor: Copy + Default {
    /// Bytes per descriptor in the host's array.
    const SIZE: u64;
    /// The descriptor whose word `k` is `word(k)`.
    fn from_words(word: impl FnMut(u64) -> u64) -> Self;
}

impl Descriptor for BatchEntry {
    const SIZE: u64 = abi::MAP_BATCH_ENTRY_SIZE;
    fn from_words(mut word: impl FnMut(u64) -> u64) -> Self {
        Self {
            iova: word(0),
            pa: word(1),
            len: word(2),
        }
    }
}

impl Descriptor for UnmapEntry {
    const SIZE: u64 = abi::UNMAP_BATCH_ENTRY_SIZE;
    fn from_words(mut word: impl FnMut(u64) -> u64) -> Self {
        Self {
            iova: word(0),
            len: word(1),
        }
    }
}

/// A failure about the call's own arguments (x2 = [`abi::MAP_BATCH_NO_ENTRY`]).
pub(super) fn whole(e: impl Into<CallError>) -> CallError {
    match e.into() {
        CallError::Abi(error) => CallError::Batch {
            error,
            pages: 0,
            index: abi::MAP_BATCH_NO_ENTRY,
        },
        CallError::NoMem(pages) => CallError::Batch {
            error: Error::NoMem,
            pages,
            index: abi::MAP_BATCH_NO_ENTRY,
        },
        b @ CallError::Batch { .. } => b,
    }
}

/// A failure about descriptor `i`.
fn at(i: usize, e: impl Into<CallError>) -> CallError {
    match e.into() {
        CallError::Abi(error) => CallError::Batch {
            error,
            pages: 0,
            index: i as u64,
        },
        other => whole(other),
    }
}

/// Decodes `MAP_BATCH`'s descriptor array (x2, x3): as [`Descriptors::from_reg`], a failure is about the
/// whole call.
pub(super) fn map_descriptors(x: u64, count: u64, pa_bits: u8) -> Result<Descriptors, CallError> {
    let (max, entry) = (abi::MAP_BATCH_MAX_ENTRIES, BatchEntry::SIZE);
    Descriptors::from_reg(x, count, max, entry, pa_bits).map_err(whole)
}

/// Decodes `UNMAP_BATCH`'s descriptor array (x2, x3): as [`Descriptors::from_reg`], a failure is about the
/// whole call.
pub(super) fn unmap_descriptors(x: u64, count: u64, pa_bits: u8) -> Result<Descriptors, CallError> {
    let (max, entry) = (abi::UNMAP_BATCH_MAX_ENTRIES, UnmapEntry::SIZE);
    Descriptors::from_reg(x, count, max, entry, pa_bits).map_err(whole)
}

impl<B: Backend> Warden<B> {
    /// `MAP_BATCH(domain, descriptors PA, count, prot)`, its arguments decoded by [`Warden::call`].
    #[inline(never)]
    pub(super) fn map_batch(&self, id: DomainId, desc: Descriptors, prot: Prot) -> CallResult {
        self.map_batch_with(id, desc, prot, |pa| self.read_host_u64(pa))
    }

    /// Reads the u64 at host PA `pa` (8-byte aligned, inside a host RAM page the caller pinned).
    fn read_host_u64(&self, pa: u64) -> u64 {
        let va = pa.wrapping_add(self.phys_offset) as *const u64;
        // SAFETY: the caller checked `pa` is 8-byte aligned and holds a DMA count on its page, which
        // `Ownership` only grants to host-owned RAM (never hyp, donated or MMIO memory) and which keeps the page
        // from being donated until the count drops: it is ordinary RAM that EL2 maps at `pa + phys_offset`
        // (`Config::phys_offset`). The host may write it concurrently, hence a volatile read of a plain u64
        // (any value is valid; it is validated afterwards).
        unsafe { core::ptr::read_volatile(va) }
    }

    /// [`Self::map_batch`] with the host-memory reader supplied (tests count and perturb the reads).
    pub(super) fn map_batch_with(
        &self,
        id: DomainId,
        desc: Descriptors,
        prot: Prot,
        mut read: impl FnMut(u64) -> u64,
    ) -> CallResult {
        self.slot_of(id).map_err(whole)?;
        let n = desc.count();
        // The copy's buffer is zeroed first (safe Rust), so a short list gets a short buffer: zeroing all
        // `MAX` entries costs more EL2 instructions than mapping a few pages in place.
        if n <= SHORT {
            let e: [BatchEntry; SHORT] = self.copy_descriptors(desc, &mut read)?;
            self.map_entries(&e[..n], id, prot)
        } else {
            let e: [BatchEntry; MAX] = self.copy_descriptors(desc, &mut read)?;
            self.map_entries(&e[..n], id, prot)
        }
    }

    /// `UNMAP_BATCH(domain, descriptors PA, count)`, its arguments decoded by [`Warden::call`].
    #[inline(never)]
    pub(super) fn unmap_batch(&self, id: DomainId, desc: Descriptors) -> CallResult {
        self.unmap_batch_with(id, desc, |pa| self.read_host_u64(pa))
    }

    /// [`Self::unmap_batch`] with the host-memory reader supplied (tests count and perturb the reads).
    pub(super) fn unmap_batch_with(
        &self,
        id: DomainId,
        desc: Descriptors,
        mut read: impl FnMut(u64) -> u64,
    ) -> CallResult {
        self.slot_of(id).map_err(whole)?;
        let n = desc.count();
        if n <= SHORT {
            let e: [UnmapEntry; SHORT] = self.copy_descriptors(desc, &mut read)?;
            self.unmap_entries(&e[..n], id)
        } else {
            let e: [UnmapEntry; UNMAP_MAX] = self.copy_descriptors(desc, &mut read)?;
            self.unmap_entries(&e[..n], id)
        }
    }

    /// Pins the page of `desc` (host RAM only; not donatable meanwhile), copies its descriptors (at most `N`)
    /// once, and unpins it.
    fn copy_descriptors<T: Descriptor, const N: usize>(
        &self,
        desc: Descriptors,
        read: &mut impl FnMut(u64) -> u64,
    ) -> Result<[T; N], CallError> {
        let page = desc.page();
        self.own
            .inc_range(page, 1, MemKind::Ram)
            .map_err(|e| match e {
                OwnershipError::WrongKind(_) => whole(Error::NotHostMemory),
                e => whole(e),
            })?;
        let mut e = [T::default(); N];
        for (i, ent) in e[..desc.count()].iter_mut().enumerate() {
            let a = desc.pa() + i as u64 * T::SIZE;
            *ent = T::from_words(|k| read(a + 8 * k));
        }
        self.own
            .dec_range(page, 1)
            .map_err(|_| whole(Error::Internal))?;
        Ok(e)
    }

    /// Checks and unmaps the copied `{iova, len}` descriptors `e` with one invalidation (see the module docs).
    fn unmap_entries(&self, e: &[UnmapEntry], id: DomainId) -> CallResult {
        let mut total = 0u64;
        let mut max_end = 0u64;
        for (i, &UnmapEntry { iova, len }) in e.iter().enumerate() {
            if len == 0 {
                return Err(at(i, Error::BadCount));
            }
            if !(iova | len).is_multiple_of(PAGE_SIZE) {
                return Err(at(i, Error::Misaligned));
            }
            let end = iova.checked_add(len).ok_or(at(i, Error::Overflow))?;
            if end > 1 << IOVA_BITS {
                return Err(at(i, Error::OutOfRangeIova));
            }
            // Overlapping descriptors would unmap a page twice: NOT_MAPPED for the later one, as a second
            // UNMAP_PAGES of it would say.
            if iova < max_end && e[..i].iter().any(|o| o.iova < end && iova < o.iova + o.len) {
                return Err(at(i, Error::NotMapped));
            }
            max_end = max_end.max(end);
            total += len;
        }

        let mut s = self.paging_slot(id).map_err(whole)?;
        let slot = s.index;
        let d = s.domain();
        // Every range mapped; the splits its ends need (an upper bound when ranges cut one block).
        let mut need = 0usize;
        for (i, ent) in e.iter().enumerate() {
            need += d.unmap_need(ent.iova, ent.len).map_err(|err| at(i, err))?;
        }
        let mut d = self.pool.reserve_for(d, need, 0).map_err(whole)?;
        let d = &mut *d;
        let mut acc = Cleared::<BATCH_UNMAP_RUNS>::new();
        let mut r = Ok(());
        'entries: for &UnmapEntry { iova, len } in e {
            let (mut start, end) = (iova, iova + len);
            if let Err(err) = self.break_cut_blocks(d, iova, len) {
                r = Err(err);
                break 'entries;
            }
            while start < end {
                match acc.clear(d, start, end) {
                    Ok(next) => start = next,
                    Err(err) => {
                        r = Err(err);
                        break 'entries;
                    }
                }
                if start < end
                    && let Err(err) =
                        self.invalidate_cleared(d, &self.pool, slot as u16, &mut acc, true)
                {
                    r = Err(err);
                    break 'entries;
                }
            }
        }
        // What was cleared is invalidated before anything else happens, even after a failure (a broken
        // invariant in a clear): its counts then drop as for any unmap.
        let flushed = self.invalidate_cleared(d, &self.pool, slot as u16, &mut acc, true);
        r.and(flushed).map_err(whole)?;
        Ok([e.len() as u64, total, 0])
    }

    /// Checks and maps the copied descriptors `e`, all or nothing.
    fn map_entries(&self, e: &[BatchEntry], id: DomainId, prot: Prot) -> CallResult {
        let kind = prot.kind();
        // Each descriptor on its own, then against the earlier ones.
        let mut total = 0u64;
        // The highest end of the descriptors checked so far: one starting at or after it overlaps none of them
        // (a list sorted by IOVA, dma_map_sg's shape, is checked in one pass).
        let mut max_end = 0u64;
        for (i, ent) in e.iter().enumerate() {
            if ent.len == 0 {
                return Err(at(i, Error::BadCount));
            }
            if !(ent.iova | ent.pa | ent.len).is_multiple_of(PAGE_SIZE) {
                return Err(at(i, Error::Misaligned));
            }
            let end = ent
                .iova
                .checked_add(ent.len)
                .ok_or(at(i, Error::Overflow))?;
            if end > 1 << IOVA_BITS {
                return Err(at(i, Error::OutOfRangeIova));
            }
            PhysAddr::range(ent.pa, ent.len, PAGE_SIZE, self.pa_bits).map_err(|err| at(i, err))?;
            if ent.iova < max_end
                && e[..i]
                    .iter()
                    .any(|o| o.iova < end && ent.iova < o.iova + o.len)
            {
                return Err(at(i, Error::AlreadyMapped));
            }
            max_end = max_end.max(end);
            total += ent.len;
        }

        let mut s = self.paging_slot(id).map_err(whole)?;
        let slot = s.index;
        let d = s.domain();
        // Nothing mapped yet in any range. Descriptors whose pages all go into level-3 tables the domain has
        // are mapped in place, as MAP_PAGES does (bit i of `in_place`); the others need an upper bound of the
        // tables they allocate (descriptors may share new tables). Both are decided on the domain as it is now:
        // mapping the others first only adds tables and never touches the in-place ranges (no two overlap).
        let mut in_place = 0u64;
        let mut need = 0usize;
        d.can_map_in_place_each(e.iter().map(|ent| (ent.iova, ent.len)), |i, r| {
            if r.map_err(|err| at(i, err))? {
                in_place |= 1 << i;
            } else {
                let ent = &e[i];
                need += d
                    .map_need(ent.iova, ent.pa, ent.len)
                    .map_err(|err| at(i, err))?;
            }
            Ok::<(), CallError>(())
        })?;
        // DMA counts for every PA page, undone on the first failure.
        for (i, ent) in e.iter().enumerate() {
            if let Err(err) = self.own.inc_range(ent.pa, pages(ent.len), kind) {
                self.uncount(&e[..i]);
                return Err(at(i, err));
            }
        }
        let attrs = prot.attributes();
        // With every descriptor in place, `need` is 0: nothing to reserve.
        if in_place != u64::MAX >> (64 - e.len()) {
            let mut d = match self.pool.reserve_for(d, need, POOL_RESERVE) {
                Ok(d) => d,
                Err(err) => {
                    self.uncount(e);
                    return Err(whole(err));
                }
            };
            for (i, ent) in e.iter().enumerate() {
                if in_place & 1 << i != 0 {
                    continue;
                }
                if let Err(err) = d.map(ent.iova, ent.pa, ent.len, attrs) {
                    // A broken invariant (arguments were all checked): take back what this call mapped (only
                    // descriptors before `i` that are not in place), so that the call still changes nothing,
                    // then report it.
                    for (j, other) in e.iter().enumerate() {
                        if j < i && in_place & 1 << j == 0 {
                            let _ = self.unmap_segments(
                                &mut d,
                                &self.pool,
                                slot as u16,
                                other.iova,
                                other.len,
                                true,
                            );
                        } else {
                            self.uncount(core::slice::from_ref(other));
                        }
                    }
                    return Err(at(i, err));
                }
            }
        }
        // Cannot fail: the in-place ranges are unmapped and their level-3 tables are still there.
        d.map_pages_in_place_each(
            e.iter()
                .enumerate()
                .filter(|&(i, _)| in_place & 1 << i != 0)
                .map(|(_, ent)| (ent.iova, ent.pa, ent.len)),
            attrs,
        );
        Ok([e.len() as u64, total, 0])
    }

    /// Drops the DMA counts [`Self::map_batch_with`] took for `entries` (nothing of them is mapped).
    fn uncount(&self, entries: &[BatchEntry]) {
        for ent in entries {
            let _ = self.own.dec_range(ent.pa, pages(ent.len));
        }
    }
}
