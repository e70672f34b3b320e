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

/// A paging domain's slot, locked ([`Warden::paging_slot`]).
pub(super) struct PagingSlot<'a> {
    guard: spin::MutexGuard<'a, Slot>,
    /// The slot's index (the domain's quarantine tag).
    pub(super) index: usize,
}

impl PagingSlot<'_> {
    /// The domain (inlined: the kind was checked by `paging_slot`, so at each call site the check folds into it).
    #[inline(always)]
    pub(super) fn domain(&mut self) -> &mut PagingDomain {
        match &mut self.guard.kind {
            SlotKind::Paging(d) => d,
            _ => unreachable!("paging_slot checked the kind under this lock"),
        }
    }
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

impl<B: Backend> Warden<B> {
    /// Decodes a StreamID argument: the StreamID and its index in `Streams::domain`, or [`Error::BadSid`]
    /// unless it is one of this SMMU's valid StreamIDs.
    pub(super) fn stream(&self, sid: u64) -> Result<(StreamId, usize), Error> {
        let sid = u32::try_from(sid).map_err(|_| Error::BadSid)?;
        let idx = self.sid_index(StreamId(sid)).ok_or(Error::BadSid)?;
        Ok((StreamId(sid), idx))
    }

    /// Index of a valid StreamID in `Streams::domain`.
    pub(super) fn sid_index(&self, sid: StreamId) -> Option<usize> {
        let sid = sid.0;
        let mut offset = 0usize;
        for r in &self.sid_ranges {
            if sid >= r.base && sid - r.base < r.count {
                return Some(offset + (sid - r.base) as usize);
            }
            offset += r.count as usize;
        }
        None
    }

    /// The slot index and generation of an allocatable (non-identity) domain ID ([`Error::ImmutableDomain`] for
    /// host-identity, [`Error::BadDomain`] beyond the slots); the generation is checked under the slot lock.
    pub(super) fn slot_of(&self, id: DomainId) -> Result<(usize, u16), Error> {
        match id {
            DomainId::HostIdentity => Err(Error::ImmutableDomain),
            DomainId::Allocated { slot, generation } if usize::from(slot) < self.slots.len() => {
                Ok((usize::from(slot), generation))
            }
            DomainId::Allocated { .. } => Err(Error::BadDomain),
        }
    }

    /// Locks the slot of paging domain `id`: [`Error::ImmutableDomain`]/[`Error::BadDomain`] as
    /// [`Self::slot_of`], [`Error::BadDomain`] if the domain was freed, [`Error::WrongDomainKind`] if it is
    /// blocked.
    pub(super) fn paging_slot(&self, id: DomainId) -> Result<PagingSlot<'_>, Error> {
        let (index, generation) = self.slot_of(id)?;
        let guard = self.lock_slot(index);
        if guard.generation != generation {
            return Err(Error::BadDomain);
        }
        match guard.kind {
            SlotKind::Paging(_) => Ok(PagingSlot { guard, index }),
            SlotKind::Blocked => Err(Error::WrongDomainKind),
            SlotKind::Free | SlotKind::Identity(_) => Err(Error::BadDomain),
        }
    }

    #[inline(never)]
    pub(super) fn domain_alloc(&self, kind: DomainKind) -> CallResult {
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
        Ok([DomainId::new(slot, s.generation).to_reg(), 0, 0])
    }

    #[inline(never)]
    pub(super) fn domain_free(&self, id: DomainId) -> CallResult {
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
                    d.leaves(0, d.geometry().end(), |_, pa, len, _| {
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

    /// `ATTACH`/`DETACH` of `sid` (index `idx`, from [`Self::stream`]) to `id`.
    #[inline(never)]
    pub(super) fn attach(&self, sid: StreamId, idx: usize, id: DomainId) -> CallResult {
        let mut streams = self.streams.lock();
        let (slot, config) = if id == DomainId::HostIdentity {
            (0usize, self.identity_ste())
        } else {
            let (slot, generation) = self.slot_of(id)?;
            let s = self.lock_slot(slot);
            if s.generation != generation {
                return Err(Error::BadDomain.into());
            }
            let config = match &s.kind {
                SlotKind::Paging(d) => SteConfig::Translate(d.s2_config(self.pa_bits)),
                SlotKind::Blocked => SteConfig::Blocked,
                SlotKind::Free | SlotKind::Identity(_) => return Err(Error::BadDomain.into()),
            };
            (slot, config)
        };
        let current = usize::from(streams.domain[idx]);
        if current == slot {
            return Ok([0; 3]);
        }
        self.backend.install_ste(sid, config)?;
        streams.domain[idx] = slot as u16;
        streams.attached[current] -= 1;
        streams.attached[slot] += 1;
        Ok([0; 3])
    }

    /// The domain ID a StreamID is attached to (host-identity = 0), for tests and diagnostics.
    pub fn sid_domain(&self, sid: u32) -> Option<u64> {
        let idx = self.sid_index(StreamId(sid))?;
        let slot = self.streams.lock().domain[idx];
        if slot == 0 {
            return Some(abi::DOMAIN_ID_HOST_IDENTITY);
        }
        Some(DomainId::new(slot, self.lock_slot(usize::from(slot)).generation).to_reg())
    }
}
