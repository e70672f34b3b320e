//! Where the host stage-2's page tables come from, and the reserve that bounds what one runtime edit may
//! allocate.

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::PageTable;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr::NonNull;
use spin::Mutex;
use warden_dt::PhysRange;

use crate::domain::PagePool;

/// The most page tables one runtime edit ([`HostStage2::unmap_range`], [`HostStage2::map_range`]) can
/// allocate: the range has two ends, and at each end one 1 GiB block (or invalid 1 GiB entry) becomes a table
/// of 2 MiB entries plus one table of 4 KiB pages. Level-1 tables for host RAM all exist after the boot build
/// (every RAM range is mapped then), so nothing above level 2 is ever allocated by an edit.
///
/// [`HostStage2::unmap_range`]: super::HostStage2::unmap_range
/// [`HostStage2::map_range`]: super::HostStage2::map_range
pub const MAX_TABLES_PER_EDIT: usize = 4;

/// Where the host stage-2 gets its page tables from ([`PoolTables`] at EL2; tests inject failing sources).
pub trait TableSource: Send {
    /// Whether the reserve of [`MAX_TABLES_PER_EDIT`] tables stays filled between edits (a heap source: it
    /// costs the heap nothing else could use). `false` for [`PoolTables`]: each edit takes from the source
    /// only if it may allocate, and gives back what it did not use when it ends, so no pool page is held
    /// beyond the tables the host stage-2 links (a held donated page could never be reclaimed).
    const KEEP_RESERVE: bool = true;

    /// A zeroed, 4 KiB-aligned page table owned by the caller, or `None` if none is available.
    fn alloc_table(&mut self) -> Option<NonNull<PageTable<Stage2Attributes>>>;

    /// Gives back a table from [`Self::alloc_table`].
    ///
    /// # Safety
    ///
    /// `table` came from `alloc_table` of this source, is no longer referenced, and is freed only once.
    unsafe fn free_table(&mut self, table: NonNull<PageTable<Stage2Attributes>>);
}

/// Page tables from the global heap (the hyp heap at EL2, which maps it 1:1, so a table's address is its PA).
#[derive(Clone, Copy, Debug, Default)]
pub struct HeapTables;

/// The layout of one page table.
const TABLE_LAYOUT: Layout = Layout::new::<PageTable<Stage2Attributes>>();

impl TableSource for HeapTables {
    fn alloc_table(&mut self) -> Option<NonNull<PageTable<Stage2Attributes>>> {
        // SAFETY: `TABLE_LAYOUT` has a non-zero size; an all-zero page table is valid (every entry invalid).
        NonNull::new(unsafe { alloc::alloc::alloc_zeroed(TABLE_LAYOUT) }.cast())
    }

    unsafe fn free_table(&mut self, table: NonNull<PageTable<Stage2Attributes>>) {
        // SAFETY: Our caller promises `table` came from `alloc_table`, which used the global allocator with
        // `TABLE_LAYOUT`, and is freed once.
        unsafe { alloc::alloc::dealloc(table.as_ptr().cast(), TABLE_LAYOUT) };
    }
}

/// The host stage-2's tables with [`RamLeaves::Blocks`](super::RamLeaves::Blocks) on a live system: from the hyp
/// heap while the boot build runs (before [`Self::use_pool`]), then from the host domains' page pool
/// ([`PagePool::take_page`]: the carve-out's domain pool and the pages the host donates). So the tables a
/// donation's splits need come from the host's top-ups, not from a reserve sized for all of RAM; with the pool
/// empty the edit fails before anything changes (`DONATE` answers `NOMEM`: donate, then retry).
///
/// A freed table goes back where it came from: to the heap if it lies in one of the heap ranges given to
/// [`Self::new`], else to the pool. Both are mapped 1:1 for the hyp (the pool's `phys_offset` is 0), as the
/// host stage-2 requires of every table.
pub struct PoolTables {
    heap: Vec<PhysRange>,
    pool: Option<Arc<PagePool>>,
}

impl PoolTables {
    /// Tables from the heap, whose memory is `heap`, until [`Self::use_pool`].
    #[must_use]
    pub fn new(heap: &[PhysRange]) -> Self {
        Self {
            heap: heap.to_vec(),
            pool: None,
        }
    }

    /// From now on new tables come from `pool` (its pages must be mapped 1:1 for the hyp).
    pub fn use_pool(&mut self, pool: Arc<PagePool>) {
        self.pool = Some(pool);
    }
}

impl TableSource for PoolTables {
    const KEEP_RESERVE: bool = false;

    fn alloc_table(&mut self) -> Option<NonNull<PageTable<Stage2Attributes>>> {
        match &self.pool {
            None => HeapTables.alloc_table(),
            Some(pool) => pool
                .take_page()
                .map(|pa| NonNull::new(pa as *mut _).expect("pool page at PA 0")),
        }
    }

    unsafe fn free_table(&mut self, table: NonNull<PageTable<Stage2Attributes>>) {
        let pa = table.as_ptr() as u64;
        match &self.pool {
            Some(pool) if !self.heap.iter().any(|h| h.contains(pa)) => pool.put_page(pa),
            // SAFETY: Our caller promises `table` came from `alloc_table` and is freed once; outside the pool
            // phase, or inside a heap range, it came from `HeapTables`.
            _ => unsafe { HeapTables.free_table(table) },
        }
    }
}

/// The host stage-2's table source and its reserve of at most [`MAX_TABLES_PER_EDIT`] zeroed tables.
pub(super) struct Tables<S> {
    pub(super) source: S,
    pub(super) reserve: Vec<NonNull<PageTable<Stage2Attributes>>>,
    /// Set once the table is live: from then on tables come only from the reserve.
    pub(super) live: bool,
    /// Tables handed out so far (tests check the per-edit bound with it).
    pub(super) allocated: usize,
}

impl<S: TableSource> Tables<S> {
    /// A zeroed table for the page-table library or the boot build's direct fill: from the reserve, or, while
    /// the stage-2 is not yet live, from the source (boot, not host input: a dry source panics).
    ///
    /// # Panics
    ///
    /// If the source runs dry during the build, or the reserve is empty once live (a broken invariant: every
    /// edit refills the reserve to [`MAX_TABLES_PER_EDIT`] first; see the tests).
    pub(super) fn take(&mut self) -> NonNull<PageTable<Stage2Attributes>> {
        let table = match self.reserve.pop() {
            Some(table) => table,
            None if !self.live => self
                .source
                .alloc_table()
                .expect("hyp heap exhausted while building the host stage-2"),
            None => panic!("host stage-2 edit needed more than {MAX_TABLES_PER_EDIT} tables"),
        };
        self.allocated += 1;
        table
    }
}

// SAFETY: The reserved tables are owned by this value alone (taken from the source, not yet handed to the
// page-table library), so moving it to another CPU moves their ownership with it.
unsafe impl<S: TableSource> Send for Tables<S> {}

/// aarch64-paging [`aarch64_paging::paging::Translation`] of the host stage-2 (identity: a table's address is
/// its PA). Allocation pops the reserve; while the table is being built, before it goes live, it may also take
/// from the source (boot, not host input). Deallocated tables go back to the reserve, or to the source when
/// the reserve is full.
pub(super) struct HostS2Tables<S>(pub(super) Arc<Mutex<Tables<S>>>);

impl<S: TableSource> aarch64_paging::paging::Translation<Stage2Attributes> for HostS2Tables<S> {
    fn allocate_table(&mut self) -> (NonNull<PageTable<Stage2Attributes>>, PhysicalAddress) {
        let table = self.0.lock().take();
        (table, PhysicalAddress(table.as_ptr() as usize))
    }

    unsafe fn deallocate_table(&mut self, table: NonNull<PageTable<Stage2Attributes>>) {
        let mut t = self.0.lock();
        if t.reserve.len() < MAX_TABLES_PER_EDIT {
            // SAFETY: The library no longer references `table`, a whole page table we own: zero it so that
            // the reserve only holds empty tables.
            unsafe { table.as_ptr().write_bytes(0, 1) };
            t.reserve.push(table);
        } else {
            // SAFETY: Our caller promises the library allocated `table` here and no longer uses it; every
            // table came from the source.
            unsafe { t.source.free_table(table) };
        }
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<Stage2Attributes>> {
        NonNull::new(pa.0 as *mut PageTable<Stage2Attributes>).expect("host stage-2 table at PA 0")
    }
}
