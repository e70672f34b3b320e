//! [`Model::expect`]: the model's predictions, written with its own rules (not the dispatcher's decoders), in
//! the order the ABI gives errors.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use warden_abi::{self as abi, DomainKind, Error, Function, Stat};

use super::{Call, Domain, Expect, IOVA_END, K4, M2, Model};
use crate::test_support::Harness;

impl Model {
    /// DMA mappings of each PA page, over all domains.
    pub(super) fn counts(&self) -> BTreeMap<u64, u32> {
        let mut c: BTreeMap<u64, u32> = BTreeMap::new();
        for d in self.live.values() {
            for &(pa, _) in d.map.values() {
                *c.entry(pa).or_default() += 1;
            }
        }
        c
    }

    /// The paging domain `id` names: host-identity is immutable, a stale or forged ID no domain.
    pub(super) fn paging(&self, id: u64) -> Result<&Domain, Error> {
        domain_id(id)?;
        match self.live.get(&id) {
            _ if id == abi::DOMAIN_ID_HOST_IDENTITY => Err(Error::ImmutableDomain),
            None => Err(Error::BadDomain),
            Some(d) if d.blocked => Err(Error::WrongDomainKind),
            Some(d) => Ok(d),
        }
    }

    /// The valid StreamID `sid` names.
    fn sid(&self, sid: u64) -> Result<u32, Error> {
        u32::try_from(sid)
            .ok()
            .filter(|s| self.sids.contains(s))
            .ok_or(Error::BadSid)
    }

    /// `[pa, pa + len)`, `align`-aligned, must be PAs the SMMU outputs.
    fn pa_range(&self, pa: u64, len: u64, align: u64) -> Result<(), Error> {
        if !pa.is_multiple_of(align) {
            return Err(Error::Misaligned);
        }
        let end = pa.checked_add(len).ok_or(Error::Overflow)?;
        if end > 1 << self.pa_bits {
            return Err(Error::OutOfRangePa);
        }
        Ok(())
    }

    /// DONATE's and RECLAIM's arguments: `count` pages (1..=the donation limit) from the aligned `pa`.
    fn pages(&self, pa: u64, count: u64) -> Result<u64, Error> {
        if count == 0 || count > self.max_donated as u64 {
            return Err(Error::BadCount);
        }
        if !pa.is_multiple_of(K4) {
            return Err(Error::Misaligned);
        }
        let len = count.checked_mul(K4).ok_or(Error::Overflow)?;
        self.pa_range(pa, len, K4)?;
        Ok(len)
    }

    /// The error of the first page of `[pa, end)` a domain may not map as MMIO (`mmio`) or RAM: hyp memory, a
    /// donated page, not the host's, or memory of the other kind (BAD_PROT).
    fn map_error(&self, pa: u64, end: u64, mmio: bool) -> Option<Error> {
        let mut p = pa;
        while p < end {
            let run = if self.carveout.contains(&p) {
                return Some(Error::HypMemory);
            } else if self.ram.contains(&p) {
                p..end.min(self.ram.end)
            } else if self.doorbell.contains(&p) {
                p..end.min(self.doorbell.end)
            } else {
                return Some(Error::NotHostMemory);
            };
            // Page by page, a donated page is refused before memory of the other kind.
            if self.donated.contains(&p) {
                return Some(Error::DonatedMemory);
            }
            if mmio != self.doorbell.contains(&p) {
                return Some(Error::BadProt);
            }
            if self.donated.range(run.clone()).next().is_some() {
                return Some(Error::DonatedMemory);
            }
            p = run.end;
        }
        None
    }

    /// The error of page `p` for DONATE: not host RAM, already donated, or DMA-mapped (BUSY).
    fn donate_error(&self, p: u64, counts: &BTreeMap<u64, u32>) -> Option<Error> {
        if self.carveout.contains(&p) {
            Some(Error::HypMemory)
        } else if !self.ram.contains(&p) {
            Some(Error::NotHostMemory)
        } else if self.donated.contains(&p) {
            Some(Error::DonatedMemory)
        } else if counts.contains_key(&p) {
            Some(Error::Busy)
        } else {
            None
        }
    }

    /// What the hypervisor answers `call` in the model's state (batches: with the descriptors in `h`'s memory).
    pub fn expect(&self, h: &Harness, call: &Call) -> Expect {
        match *call {
            Call::DomainAlloc { kind } => match DomainKind::from_value(kind) {
                None => Err(Error::BadKind).into(),
                Some(_) if self.live.len() == self.max_domains => Err(Error::Limit).into(),
                Some(_) => Expect::any(),
            },
            Call::DomainFree { id } => self.expect_free(id).into(),
            Call::Attach { sid, id } => (|| {
                self.sid(sid)?;
                domain_id(id)?;
                if id != abi::DOMAIN_ID_HOST_IDENTITY && !self.live.contains_key(&id) {
                    return Err(Error::BadDomain);
                }
                Ok(0)
            })()
            .into(),
            Call::Detach { sid } => self.sid(sid).map(|_| 0).into(),
            Call::MapPages {
                id,
                iova,
                pa,
                pgsize,
                count,
                prot,
            } => self.expect_map(id, iova, pa, pgsize, count, prot).into(),
            Call::UnmapPages {
                id,
                iova,
                pgsize,
                count,
            } => (|| {
                page_size(pgsize)?;
                let len = iova_range(iova, pgsize, count)?;
                let d = self.paging(id)?;
                if d.map.range(iova..iova + len).count() as u64 != len / K4 {
                    return Err(Error::NotMapped);
                }
                Ok(len)
            })()
            .into(),
            Call::MapBatch {
                id,
                desc,
                count,
                prot,
            } => self.expect_map_batch(h, id, desc, count, prot),
            Call::UnmapBatch { id, desc, count } => self.expect_unmap_batch(h, id, desc, count),
            Call::Donate { pa, count } => (|| {
                let len = self.pages(pa, count)?;
                if self.donated.len() + count as usize > self.max_donated {
                    return Err(Error::Limit);
                }
                let counts = self.counts();
                match (pa..pa + len)
                    .step_by(K4 as usize)
                    .find_map(|p| self.donate_error(p, &counts))
                {
                    Some(e) => Err(e),
                    None => Ok(0),
                }
            })()
            .into(),
            Call::Reclaim { pa, count } => self.expect_reclaim(pa, count),
            Call::IovaToPhys { id, iova } => self.expect_iova_to_phys(id, iova).into(),
            Call::Stat { id } => {
                let per_call = id
                    .checked_sub(abi::STAT_CALLS_BASE)
                    .and_then(|n| u32::try_from(n).ok())
                    .and_then(Function::from_value)
                    .is_some();
                if per_call || Stat::from_value(id).is_some() {
                    Expect {
                        answer: Ok(None),
                        or: Some(Error::BadStat),
                    }
                } else {
                    Err(Error::BadStat).into()
                }
            }
            Call::ReadEvent => Expect::any(),
            Call::Unknown { .. } => Err(Error::NotSupported).into(),
        }
    }

    fn expect_free(&self, id: u64) -> Result<u64, Error> {
        domain_id(id)?;
        if id == abi::DOMAIN_ID_HOST_IDENTITY {
            return Err(Error::ImmutableDomain);
        }
        if !self.live.contains_key(&id) {
            return Err(Error::BadDomain);
        }
        if self.attached.values().any(|&d| d == id) {
            return Err(Error::Busy);
        }
        Ok(0)
    }

    fn expect_map(
        &self,
        id: u64,
        iova: u64,
        pa: u64,
        pgsize: u64,
        count: u64,
        prot: u64,
    ) -> Result<u64, Error> {
        page_size(pgsize)?;
        let len = iova_range(iova, pgsize, count)?;
        prot_ok(prot)?;
        self.pa_range(pa, len, pgsize)?;
        let d = self.paging(id)?;
        if d.map.range(iova..iova + len).next().is_some() {
            return Err(Error::AlreadyMapped);
        }
        match self.map_error(pa, pa + len, prot & abi::PROT_MMIO != 0) {
            Some(e) => Err(e),
            None => Ok(len),
        }
    }

    fn expect_reclaim(&self, pa: u64, count: u64) -> Expect {
        let len = match self.pages(pa, count) {
            Ok(len) => len,
            Err(e) => return Err(e).into(),
        };
        let range = pa..pa + len;
        if self.donated.range(range.clone()).count() as u64 != count {
            return Err(Error::NotDonated).into();
        }
        // A host-identity table in the range whose block keeps other donated pages.
        let table_busy = self.cut.iter().any(|(&b, &t)| {
            t.is_some_and(|t| range.contains(&t))
                && self.donated.range(b..b + M2).any(|p| !range.contains(p))
        });
        if table_busy {
            return Err(Error::Busy).into();
        }
        Expect {
            answer: Ok(Some([0; 3])),
            // A donated page may be a table of a live paging domain: the model does not track those.
            or: self
                .live
                .values()
                .any(|d| !d.blocked)
                .then_some(Error::Busy),
        }
    }

    pub(super) fn expect_iova_to_phys(&self, id: u64, iova: u64) -> Result<u64, Error> {
        if iova >= IOVA_END {
            return Err(Error::OutOfRangeIova);
        }
        domain_id(id)?;
        let page = iova & !(K4 - 1);
        if id == abi::DOMAIN_ID_HOST_IDENTITY {
            // Host RAM (not donated) and the doorbell, at their own addresses.
            let host = self.is_host_ram(page) && !self.donated.contains(&page);
            return if host || self.doorbell.contains(&page) {
                Ok(iova)
            } else {
                Err(Error::NotMapped)
            };
        }
        match self.live.get(&id) {
            None => Err(Error::BadDomain),
            Some(d) if d.blocked => Err(Error::WrongDomainKind),
            Some(d) => d
                .map
                .get(&page)
                .map(|&(pa, _)| pa | (iova & (K4 - 1)))
                .ok_or(Error::NotMapped),
        }
    }

    /// Reads a batch's descriptors (`W` words each) as the hypervisor does: `count` in 1..=`max`, 8-aligned
    /// inside one page of host RAM that is neither donated nor hyp memory.
    pub(super) fn descriptors<const W: usize>(
        &self,
        h: &Harness,
        desc: u64,
        count: u64,
        max: u64,
    ) -> Result<Vec<[u64; W]>, Error> {
        if !(1..=max).contains(&count) {
            return Err(Error::BadCount);
        }
        let size = 8 * W as u64;
        if !desc.is_multiple_of(8) || desc % K4 + count * size > K4 {
            return Err(Error::Misaligned);
        }
        let page = desc & !(K4 - 1);
        let end = page.checked_add(K4).ok_or(Error::NotHostMemory)?;
        if let Some(e) = self.map_error(page, end, false) {
            return Err(e);
        }
        Ok((0..count)
            .map(|i| {
                core::array::from_fn(|j| {
                    let at = desc + i * size + 8 * j as u64;
                    h.mem
                        .try_read64(at)
                        .expect("host RAM is in the fake memory")
                })
            })
            .collect())
    }

    fn expect_map_batch(&self, h: &Harness, id: u64, desc: u64, count: u64, prot: u64) -> Expect {
        let r = (|| {
            let e: Vec<[u64; 3]> = self.descriptors(h, desc, count, abi::MAP_BATCH_MAX_ENTRIES)?;
            prot_ok(prot)?;
            if prot & abi::PROT_MMIO != 0 {
                return Err(Error::BadProt);
            }
            let d = self.paging(id)?;
            let mut pages = BTreeSet::new();
            for &[iova, pa, len] in &e {
                if len == 0 {
                    return Err(Error::BadCount);
                }
                if (iova | pa | len) % K4 != 0 {
                    return Err(Error::Misaligned);
                }
                let end = iova.checked_add(len).ok_or(Error::Overflow)?;
                if end > IOVA_END {
                    return Err(Error::OutOfRangeIova);
                }
                self.pa_range(pa, len, K4)?;
                if let Some(e) = self.map_error(pa, pa + len, false) {
                    return Err(e);
                }
                let fresh = (iova..end).step_by(K4 as usize).all(|p| pages.insert(p));
                if !fresh || d.map.range(iova..end).next().is_some() {
                    return Err(Error::AlreadyMapped);
                }
            }
            Ok([count, e.iter().map(|x| x[2]).sum(), 0])
        })();
        Expect {
            answer: r.map(Some),
            or: None,
        }
    }

    fn expect_unmap_batch(&self, h: &Harness, id: u64, desc: u64, count: u64) -> Expect {
        let r = (|| {
            let e: Vec<[u64; 2]> =
                self.descriptors(h, desc, count, abi::UNMAP_BATCH_MAX_ENTRIES)?;
            let d = self.paging(id)?;
            let mut pages = BTreeSet::new();
            for &[iova, len] in &e {
                if len == 0 {
                    return Err(Error::BadCount);
                }
                if (iova | len) % K4 != 0 {
                    return Err(Error::Misaligned);
                }
                let end = iova.checked_add(len).ok_or(Error::Overflow)?;
                if end > IOVA_END {
                    return Err(Error::OutOfRangeIova);
                }
                let mapped = d.map.range(iova..end).count() as u64 == len / K4;
                if !mapped || !(iova..end).step_by(K4 as usize).all(|p| pages.insert(p)) {
                    return Err(Error::NotMapped);
                }
            }
            Ok([count, e.iter().map(|x| x[1]).sum(), 0])
        })();
        Expect {
            answer: r.map(Some),
            or: None,
        }
    }
}

/// A domain ID must fit 32 bits, with a non-zero slot (bits \[15:0\]) unless it is host-identity (0).
fn domain_id(id: u64) -> Result<(), Error> {
    match u32::try_from(id) {
        Ok(0) => Ok(()),
        Ok(x) if x & 0xffff != 0 => Ok(()),
        _ => Err(Error::BadDomain),
    }
}

/// A page size of the ABI's bitmap.
fn page_size(pgsize: u64) -> Result<(), Error> {
    if [abi::PGSIZE_4K, abi::PGSIZE_2M, abi::PGSIZE_1G].contains(&pgsize) {
        Ok(())
    } else {
        Err(Error::BadPgsize)
    }
}

/// `count` pages of `pgsize` from the aligned `iova`, inside the IOVA space: their length.
fn iova_range(iova: u64, pgsize: u64, count: u64) -> Result<u64, Error> {
    if count == 0 {
        return Err(Error::BadCount);
    }
    if !iova.is_multiple_of(pgsize) {
        return Err(Error::Misaligned);
    }
    let len = pgsize.checked_mul(count).ok_or(Error::Overflow)?;
    let end = iova.checked_add(len).ok_or(Error::Overflow)?;
    if end > IOVA_END {
        return Err(Error::OutOfRangeIova);
    }
    Ok(len)
}

/// Only the ABI's bits, readable or writable, not both MMIO and cacheable.
fn prot_ok(prot: u64) -> Result<(), Error> {
    let mmio_cache = abi::PROT_MMIO | abi::PROT_CACHE;
    if prot & !abi::PROT_ALL != 0
        || prot & (abi::PROT_READ | abi::PROT_WRITE) == 0
        || prot & mmio_cache == mmio_cache
    {
        return Err(Error::BadProt);
    }
    Ok(())
}
