//! Domain IDs and slots, StreamIDs: `DOMAIN_ALLOC`, `DOMAIN_FREE`, `ATTACH`/`DETACH`.

use super::*;

pub(super) enum SlotKind {
    Free,
    Identity(PagingDomain),
    Paging(PagingDomain),
    Blocked,
}

pub(super) struct Slot {
    pub(super) generation: u16,
    pub(super) kind: SlotKind,
}

pub(super) struct Streams {
    /// Slot of each valid StreamID's domain (0 = host-identity), indexed like [`Warden::sid_index`].
    pub(super) domain: Vec<u16>,
    /// StreamIDs attached to each slot.
    pub(super) attached: Vec<u32>,
}

pub(super) struct AllocState {
    pub(super) free: Vec<u16>,
    pub(super) in_use: usize,
}

/// Splits a domain ID into (slot, generation).
pub(super) fn split_id(id: u64) -> Option<(usize, u16)> {
    if id > u64::from(u32::MAX) {
        return None;
    }
    Some(((id & 0xffff) as usize, (id >> 16) as u16))
}

pub(super) fn make_id(slot: usize, generation: u16) -> u64 {
    (u64::from(generation) << 16) | slot as u64
}

impl<B: Backend> Warden<B> {
    /// Index of a valid StreamID in `Streams::domain`.
    pub(super) fn sid_index(&self, sid: u64) -> Option<usize> {
        let sid = u32::try_from(sid).ok()?;
        let mut offset = 0usize;
        for r in &self.sid_ranges {
            if sid >= r.base && sid - r.base < r.count {
                return Some(offset + (sid - r.base) as usize);
            }
            offset += r.count as usize;
        }
        None
    }

    /// The slot index of a live, allocatable (non-identity) domain ID; checks happen again under the slot lock.
    pub(super) fn slot_of(&self, id: u64) -> Result<(usize, u16), Error> {
        if id == abi::DOMAIN_ID_HOST_IDENTITY {
            return Err(Error::ImmutableDomain);
        }
        let (slot, generation) = split_id(id).ok_or(Error::BadDomain)?;
        if slot == 0 || slot >= self.slots.len() {
            return Err(Error::BadDomain);
        }
        Ok((slot, generation))
    }

    pub(super) fn domain_alloc(&self, kind: u64) -> CallResult {
        let kind = DomainKind::from_value(kind).ok_or(Error::BadKind)?;
        let mut alloc = self.alloc.lock();
        let slot = *alloc.free.last().ok_or(Error::Limit)?;
        let mut s = self.lock_slot(usize::from(slot));
        s.kind = match kind {
            DomainKind::Blocked => SlotKind::Blocked,
            DomainKind::Paging => {
                if self.pool.has_quarantine(slot) {
                    // The previous domain of this slot was freed without a confirmed VMID invalidation: the
                    // SMMU may still cache its translations under the VMID this domain would reuse.
                    self.invalidations.fetch_add(1, Ordering::Relaxed);
                    self.backend.invalidate_vmid(Vmid(slot + 1))?;
                    self.pool.release_quarantine(slot);
                }
                // VMID = slot + 1 (slot 0, host-identity, has VMID 1).
                let d = PagingDomain::new(self.pool.clone(), slot, Vmid(slot + 1), POOL_RESERVE)?;
                SlotKind::Paging(d)
            }
        };
        alloc.free.pop();
        alloc.in_use += 1;
        Ok([make_id(usize::from(slot), s.generation), 0, 0])
    }

    pub(super) fn domain_free(&self, id: u64) -> CallResult {
        let (slot, generation) = self.slot_of(id)?;
        let streams = self.streams.lock();
        let mut s = self.lock_slot(slot);
        if s.generation != generation || matches!(s.kind, SlotKind::Free) {
            return Err(Error::BadDomain.into());
        }
        if streams.attached[slot] != 0 {
            return Err(Error::Busy.into());
        }
        let old = core::mem::replace(&mut s.kind, SlotKind::Free);
        s.generation = s.generation.wrapping_add(1).max(1);
        drop(s);
        drop(streams);
        let mut result = Ok([0; 3]);
        if let SlotKind::Paging(d) = old {
            // No STE points at the domain any more; once the SMMU forgot its VMID, no device can reach its
            // mappings: only then drop their DMA counts and release its tables.
            self.invalidations.fetch_add(1, Ordering::Relaxed);
            match self.backend.invalidate_vmid(d.vmid()) {
                Ok(()) => {
                    let mut bad = false;
                    d.leaves(0, 1 << IOVA_BITS, |_, pa, len, _| {
                        if let Some(pa) = pa {
                            bad |= self.own.dec_range(pa, pages(len)).is_err();
                        }
                        true
                    });
                    drop(d);
                    self.pool.release_quarantine(slot as u16);
                    if bad {
                        result = Err(Error::Internal.into());
                    }
                }
                // Counts stay pinned and the tables stay quarantined (until a later invalidation of the same
                // VMID, when the slot is reused, succeeds).
                Err(e) => {
                    drop(d);
                    result = Err(e.into());
                }
            }
        }
        let mut alloc = self.alloc.lock();
        alloc.free.push(slot as u16);
        alloc.in_use -= 1;
        result
    }

    pub(super) fn attach(&self, sid: u64, id: u64) -> CallResult {
        let idx = self.sid_index(sid).ok_or(Error::BadSid)?;
        let mut streams = self.streams.lock();
        let (slot, config) = if id == abi::DOMAIN_ID_HOST_IDENTITY {
            (0usize, self.identity_ste())
        } else {
            let (slot, generation) = self.slot_of(id)?;
            let s = self.lock_slot(slot);
            if s.generation != generation {
                return Err(Error::BadDomain.into());
            }
            let config = match &s.kind {
                SlotKind::Paging(d) => SteConfig::Translate(d.s2_config(self.pa_bits)),
                SlotKind::Blocked => SteConfig::Abort,
                SlotKind::Free | SlotKind::Identity(_) => return Err(Error::BadDomain.into()),
            };
            (slot, config)
        };
        let current = usize::from(streams.domain[idx]);
        if current == slot {
            return Ok([0; 3]);
        }
        self.backend.install_ste(StreamId(sid as u32), config)?;
        streams.domain[idx] = slot as u16;
        streams.attached[current] -= 1;
        streams.attached[slot] += 1;
        Ok([0; 3])
    }

    /// The domain ID a StreamID is attached to (host-identity = 0), for tests and diagnostics.
    pub fn sid_domain(&self, sid: u32) -> Option<u64> {
        let idx = self.sid_index(u64::from(sid))?;
        let slot = usize::from(self.streams.lock().domain[idx]);
        if slot == 0 {
            return Some(abi::DOMAIN_ID_HOST_IDENTITY);
        }
        Some(make_id(slot, self.lock_slot(slot).generation))
    }
}
