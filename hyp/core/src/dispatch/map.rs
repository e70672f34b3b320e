//! `MAP_PAGES` and `IOVA_TO_PHYS`, and the argument checks the map and unmap calls share.

use super::*;

impl<B: Backend> Warden<B> {
    /// Checks pgsize, count, alignment, overflow and IOVA range; returns the length in bytes.
    pub(super) fn check_iova_range(iova: u64, pgsize: u64, pgcount: u64) -> Result<u64, Error> {
        if !matches!(pgsize, abi::PGSIZE_4K | abi::PGSIZE_2M | abi::PGSIZE_1G) {
            return Err(Error::BadPgsize);
        }
        if pgcount == 0 {
            return Err(Error::BadCount);
        }
        if !iova.is_multiple_of(pgsize) {
            return Err(Error::Misaligned);
        }
        let len = pgsize.checked_mul(pgcount).ok_or(Error::Overflow)?;
        let end = iova.checked_add(len).ok_or(Error::Overflow)?;
        if end > 1 << IOVA_BITS {
            return Err(Error::OutOfRangeIova);
        }
        Ok(len)
    }

    pub(super) fn check_prot(prot: u64) -> Result<MemKind, Error> {
        if prot & !abi::PROT_ALL != 0
            || prot & (abi::PROT_READ | abi::PROT_WRITE) == 0
            || (prot & abi::PROT_MMIO != 0 && prot & abi::PROT_CACHE != 0)
        {
            return Err(Error::BadProt);
        }
        Ok(if prot & abi::PROT_MMIO != 0 {
            MemKind::Mmio
        } else {
            MemKind::Ram
        })
    }

    pub(super) fn check_pa_range(&self, pa: u64, len: u64) -> Result<(), Error> {
        let end = pa.checked_add(len).ok_or(Error::Overflow)?;
        if end > 1 << self.pa_bits {
            return Err(Error::OutOfRangePa);
        }
        Ok(())
    }

    pub(super) fn map_pages(
        &self,
        id: u64,
        iova: u64,
        pa: u64,
        pgsize: u64,
        pgcount: u64,
        prot: u64,
    ) -> CallResult {
        let len = Self::check_iova_range(iova, pgsize, pgcount)?;
        let kind = Self::check_prot(prot)?;
        if !pa.is_multiple_of(pgsize) {
            return Err(Error::Misaligned.into());
        }
        self.check_pa_range(pa, len)?;
        let (slot, generation) = self.slot_of(id)?;
        let mut s = self.lock_slot(slot);
        if s.generation != generation {
            return Err(Error::BadDomain.into());
        }
        let d = match &mut s.kind {
            SlotKind::Paging(d) => d,
            SlotKind::Blocked => return Err(Error::WrongDomainKind.into()),
            SlotKind::Free | SlotKind::Identity(_) => return Err(Error::BadDomain.into()),
        };
        if d.can_map_in_place(iova, len)? {
            // Every page goes into a level-3 table the domain has: no allocation, no generic walk.
            self.own.inc_range(pa, pages(len), kind)?;
            d.map_pages_in_place(iova, pa, len, domain::attributes(prot));
            return Ok([len, 0, 0]);
        }
        let need = d.map_need(iova, pa, len)?;
        self.own.inc_range(pa, pages(len), kind)?;
        if let Err(e) = self.pool.reserve(need, POOL_RESERVE) {
            let _ = self.own.dec_range(pa, pages(len));
            return Err(e.into());
        }
        let before = d.table_pages();
        let r = d.map(iova, pa, len, domain::attributes(prot));
        let used = d.table_pages().saturating_sub(before);
        self.pool.unreserve(need.saturating_sub(used));
        if let Err(e) = r {
            let _ = self.own.dec_range(pa, pages(len));
            return Err(e.into());
        }
        Ok([len, 0, 0])
    }

    pub(super) fn iova_to_phys(&self, id: u64, iova: u64) -> CallResult {
        if iova >> IOVA_BITS != 0 {
            return Err(Error::OutOfRangeIova.into());
        }
        let (slot, generation) = if id == abi::DOMAIN_ID_HOST_IDENTITY {
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
