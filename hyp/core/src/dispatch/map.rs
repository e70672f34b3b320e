//! `MAP_PAGES` and `IOVA_TO_PHYS`.

use super::*;

impl<B: Backend> Warden<B> {
    /// `MAP_PAGES` of `[iova, iova + len)` to `[pa, pa + len)` (checked: aligned to the page size, in range).
    #[inline(never)]
    pub(super) fn map_pages(
        &self,
        id: DomainId,
        iova: Iova,
        pa: PhysAddr,
        len: u64,
        prot: Prot,
    ) -> CallResult {
        let (iova, pa, kind) = (iova.get(), pa.get(), prot.kind());
        let mut s = self.paging_slot(id)?;
        let d = s.domain();
        if d.can_map_in_place(iova, len)? {
            // Every page goes into a level-3 table the domain has: no allocation, no generic walk.
            self.own.inc_range(pa, pages(len), kind)?;
            d.map_pages_in_place(iova, pa, len, prot.attributes());
            return Ok([len, 0, 0]);
        }
        let need = d.map_need(iova, pa, len)?;
        self.own.inc_range(pa, pages(len), kind)?;
        let r = match self.pool.reserve_for(d, need, POOL_RESERVE) {
            Ok(mut d) => d.map(iova, pa, len, prot.attributes()),
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            let _ = self.own.dec_range(pa, pages(len));
            return Err(e.into());
        }
        Ok([len, 0, 0])
    }

    #[inline(never)]
    pub(super) fn iova_to_phys(&self, id: DomainId, iova: Iova) -> CallResult {
        let iova = iova.get();
        let (slot, generation) = if id == DomainId::HostIdentity {
            (0, 0)
        } else {
            self.slot_of(id)?
        };
        let s = self.lock_slot(slot);
        if s.generation != generation {
            return Err(Error::BadDomain.into());
        }
        let pa = match &s.kind {
            SlotKind::Paging(d) | SlotKind::Identity(d) => d.translate(iova),
            SlotKind::Blocked => return Err(Error::WrongDomainKind.into()),
            SlotKind::Free => return Err(Error::BadDomain.into()),
        };
        pa.map(|pa| [pa, 0, 0]).ok_or(Error::NotMapped.into())
    }
}
