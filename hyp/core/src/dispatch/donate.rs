//! `DONATE` and `RECLAIM`: host pages into the page-table pool and back, through the host-identity domain.

use super::init::IDENTITY_PROT;
use super::*;

impl<B: Backend> Warden<B> {
    pub(super) fn check_page_range(&self, pa: u64, count: u64) -> Result<u64, Error> {
        if count == 0 || count > self.max_donated as u64 {
            return Err(Error::BadCount);
        }
        if !pa.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Misaligned);
        }
        let len = count.checked_mul(PAGE_SIZE).ok_or(Error::Overflow)?;
        self.check_pa_range(pa, len)?;
        Ok(len)
    }

    pub(super) fn with_identity<T>(&self, f: impl FnOnce(&mut PagingDomain) -> T) -> T {
        let mut s = self.lock_slot(0);
        match &mut s.kind {
            SlotKind::Identity(d) => f(d),
            _ => unreachable!("slot 0 is always host-identity"),
        }
    }

    /// The host-identity pool is sized for the worst case, so it runs short only while tables wait in its
    /// quarantine after a failed SMMU invalidation: donating cannot help, so this is `HW_ERROR`, not `NOMEM`.
    pub(super) fn identity_short(_: DomainError) -> CallError {
        Error::HwError.into()
    }

    pub(super) fn donate(&self, pa: u64, count: u64) -> CallResult {
        let len = self.check_page_range(pa, count)?;
        self.pool.begin_donation(count as usize)?;
        if let Err(e) = self.own.donate_range(pa, count) {
            self.pool.release_donation(count as usize);
            return Err(e.into());
        }
        if let Err(e) = self.backend.host_unmap(pa, len) {
            let _ = self.own.reclaim_range(pa, count);
            self.pool.release_donation(count as usize);
            return Err(e.into());
        }
        // Err((error, whether host-identity was already changed)).
        let r = self.with_identity(|d| -> Result<(), (CallError, bool)> {
            let need = d.unmap_need(pa, len).map_err(|e| (e.into(), false))?;
            self.identity_pool
                .reserve(need, 0)
                .map_err(|e| (Self::identity_short(e), false))?;
            let before = d.table_pages();
            let r = self.unmap_segments(d, &self.identity_pool, 0, pa, len, false);
            self.identity_pool
                .unreserve(need.saturating_sub(d.table_pages().saturating_sub(before)));
            r.map_err(|e| (e, true))
        });
        match r {
            Ok(()) => {}
            Err((e, false)) => {
                let _ = self.backend.host_map(pa, len);
                let _ = self.own.reclaim_range(pa, count);
                self.pool.release_donation(count as usize);
                return Err(e);
            }
            // An invalidation failed: the pages stay donated (and counted) but outside the pool, never used.
            Err((e, true)) => return Err(e),
        }
        self.pool.finish_donation(pa, count as usize);
        Ok([0; 3])
    }

    pub(super) fn reclaim(&self, pa: u64, count: u64) -> CallResult {
        let len = self.check_page_range(pa, count)?;
        self.own.check_donated(pa, count)?;
        // Takes the pages off the free list (still counted as donated until the end).
        self.pool.remove_donated(pa, count as usize)?;
        let r = self.with_identity(|d| -> Result<(), CallError> {
            let need = d.map_need(pa, pa, len)?;
            self.identity_pool
                .reserve(need, 0)
                .map_err(Self::identity_short)?;
            if let Err(e) = self.backend.host_map(pa, len) {
                self.identity_pool.unreserve(need);
                return Err(e.into());
            }
            let before = d.table_pages();
            let r = d.map(pa, pa, len, domain::attributes(IDENTITY_PROT));
            self.identity_pool
                .unreserve(need.saturating_sub(d.table_pages().saturating_sub(before)));
            r.map_err(CallError::from)
        });
        if let Err(e) = r {
            self.pool.finish_donation(pa, count as usize);
            return Err(e);
        }
        self.own.reclaim_range(pa, count)?;
        self.pool.release_donation(count as usize);
        Ok([0; 3])
    }
}
