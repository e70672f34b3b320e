//! Need computation: how many table pages a map or an unmap allocates, computed before it runs (so that the
//! caller reserves exactly that many and a failing call changes nothing).

use warden_abi::{LEAF_LEVEL, granule};

use super::{DomainError, PagingDomain};

/// Calls `f` for each chunk of `[start, end)` cut at multiples of `gran`.
fn chunks(start: u64, end: u64, gran: u64, mut f: impl FnMut(u64, u64)) {
    let mut s = start;
    while s < end {
        let e = end.min((s & !(gran - 1)) + gran);
        f(s, e);
        s = e;
    }
}

fn is_block(start: u64, end: u64, level: usize) -> bool {
    (start | end) & (granule(level) - 1) == 0
}

/// Pages a map of the invalid entry at `level` covering `[start, end)` to `pa` allocates (aarch64-paging's
/// `map_range` decisions: a block where range and PA are aligned, else a new subtable).
fn map_need_entry(level: usize, start: u64, end: u64, pa: u64) -> usize {
    // No block at level 0 (a level-0 root's entries are always tables with the 4 KiB granule).
    if level == LEAF_LEVEL
        || (level > 0 && is_block(start, end, level) && pa.is_multiple_of(granule(level)))
    {
        return 0;
    }
    let mut n = 1;
    chunks(start, end, granule(level + 1), |s, e| {
        n += map_need_entry(level + 1, s, e, pa + (s - start))
    });
    n
}

/// Pages an unmap of `[start, end)` inside the valid block at `level` allocates (splits).
fn split_need(level: usize, start: u64, end: u64) -> usize {
    if level == LEAF_LEVEL || is_block(start, end, level) {
        return 0;
    }
    let mut n = 1;
    chunks(start, end, granule(level + 1), |s, e| {
        n += split_need(level + 1, s, e)
    });
    n
}

impl PagingDomain {
    /// Pages a map of `[iova, iova + len)` to `pa` needs.
    ///
    /// # Errors
    ///
    /// [`DomainError::AlreadyMapped`] for the first mapped IOVA in the range.
    pub fn map_need(&self, iova: u64, pa: u64, len: u64) -> Result<usize, DomainError> {
        let mut need = 0;
        let mut mapped = None;
        self.walk(iova, len, |s, e, leaf_pa, level| {
            if leaf_pa.is_some() {
                mapped = Some(s);
                return Err(());
            }
            need += map_need_entry(level, s, e, pa + (s - iova));
            Ok(())
        });
        match mapped {
            Some(at) => Err(DomainError::AlreadyMapped(at)),
            None => Ok(need),
        }
    }

    /// Pages an unmap of `[iova, iova + len)` needs (block splits at the ends).
    ///
    /// # Errors
    ///
    /// [`DomainError::NotMapped`] for the first unmapped IOVA in the range.
    pub fn unmap_need(&self, iova: u64, len: u64) -> Result<usize, DomainError> {
        let mut need = 0;
        let mut hole = None;
        self.walk(iova, len, |s, e, leaf_pa, level| {
            if leaf_pa.is_none() {
                hole = Some(s);
                return Err(());
            }
            need += split_need(level, s, e);
            Ok(())
        });
        match hole {
            Some(at) => Err(DomainError::NotMapped(at)),
            None => Ok(need),
        }
    }
}
