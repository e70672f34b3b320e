//! The device and collection tables: `GITS_BASERn` writes, and the zeroed hyp memory the real ITS gets.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};

use super::registers::*;
use super::{GicMemory, GicRefusal, GicRegs, ItsEmulator, MAX_TABLE_BYTES, State};

/// Zeroed hyp memory (VA == PA) the real ITS uses as a device or collection table; freed when dropped.
#[derive(Debug)]
pub(super) struct HypTable {
    pub(super) addr: u64,
    pub(super) layout: Layout,
}

impl HypTable {
    /// `len` bytes aligned to `align` (a page size), or `None` if the heap cannot provide them.
    pub(super) fn new(len: u64, align: u64) -> Option<Self> {
        let layout =
            Layout::from_size_align(usize::try_from(len).ok()?, usize::try_from(align).ok()?)
                .ok()?;
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: `layout` has a non-zero size.
        let p = unsafe { alloc_zeroed(layout) };
        (!p.is_null()).then(|| Self {
            addr: p as u64,
            layout,
        })
    }
}

impl Drop for HypTable {
    fn drop(&mut self) {
        // SAFETY: `addr` came from `alloc_zeroed(self.layout)` in `new` and is freed only here.
        unsafe { dealloc(self.addr as *mut u8, self.layout) }
    }
}

/// A table a `GITS_BASERn` holds.
#[derive(Debug)]
pub(super) struct Table {
    pub(super) mem: HypTable,
    /// Its `Type` field.
    pub(super) kind: u64,
    /// Entries it holds.
    pub(super) entries: u64,
}

impl ItsEmulator<'_> {
    pub(super) fn write_baser(
        &self,
        st: &mut State,
        regs: &impl GicRegs,
        mem: &impl GicMemory,
        n: usize,
        v: u64,
    ) -> Result<(), GicRefusal> {
        let addr = self.base + GITS_BASER0 + 8 * n as u64;
        let old = regs.read64(addr);
        let kind = (old >> 56) & 7;
        if kind != BASER_TYPE_DEVICE && kind != BASER_TYPE_COLLECTION {
            // Unimplemented (type 0: RAZ/WI) or a vPE table (GICv4, not offered).
            return if kind == 0 {
                Ok(())
            } else {
                Err(GicRefusal::Unsupported("GITS_BASERn (vPE table)", v))
            };
        }
        if !self.idle(regs) {
            return Err(GicRefusal::InUse("GITS_BASERn"));
        }
        let v = v & !BASER_INDIRECT;
        if v & BASER_VALID == 0 {
            regs.write64(addr, v & !BASER_PA_FIELD);
            let now = regs.read64(addr);
            st.tables[n] = None;
            st.baser_host[n] = Some((now & !BASER_PA_FIELD) | (v & BASER_PA_FIELD));
            return Ok(());
        }
        let (pa, page, len) = baser_table(v);
        if len > MAX_TABLE_BYTES {
            return Err(GicRefusal::Unsupported("GITS_BASERn (table too large)", v));
        }
        // The host's table must be its own RAM, though the ITS never uses it.
        self.pins.check(self.own, "ITS table", pa, len)?;
        let table = HypTable::new(len, page)
            .ok_or(GicRefusal::Unsupported("GITS_BASERn (no hyp memory)", v))?;
        // The zeroes reach memory before the ITS may read the table without snooping caches.
        mem.clean_to_poc(table.addr, len);
        regs.write64(addr, baser_with_pa(v, table.addr));
        let now = regs.read64(addr);
        let (real_pa, real_page, real_len) = baser_table(now);
        if now & BASER_VALID == 0
            || now & BASER_INDIRECT != 0
            || real_len > len
            || real_pa != table.addr & !(real_page - 1)
            || table.addr % real_page != 0
        {
            regs.write64(addr, old);
            return Err(GicRefusal::Unsupported(
                "GITS_BASERn (value the ITS changed)",
                now,
            ));
        }
        st.tables[n] = Some(Table {
            entries: real_len / (((now >> 48) & 0x1f) + 1),
            mem: table,
            kind,
        });
        st.baser_host[n] = Some(baser_with_pa(now, pa));
        Ok(())
    }

    pub(super) fn table_entries(st: &State, kind: u64) -> u64 {
        st.tables
            .iter()
            .flatten()
            .find(|t| t.kind == kind)
            .map_or(0, |t| t.entries)
    }
}
