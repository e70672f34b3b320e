//! Fake DMA memory: host allocations named by their host addresses.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use spin::Mutex;

use crate::DmaMemory;

/// One allocation: `words` backs `[base, base + len)`, starting `skip` words into the vector (for alignment).
#[derive(Debug)]
struct Region {
    base: u64,
    len: u64,
    skip: usize,
    words: Vec<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    regions: Vec<Region>,
    write_log: Option<Vec<(u64, u64)>>,
    /// Next free synthetic physical address; `None` in host-identity mode.
    next_pa: Option<u64>,
}

/// Shared fake DMA memory: clones are handles to the same memory (the driver and the fake SMMU each hold one).
///
/// [`FakeMemory::new`] names allocations by synthetic physical addresses from [`FAKE_RAM_BASE`] upwards
/// (QEMU virt's RAM base), so they fit the 44-bit output size of QEMU's SMMU as real RAM does;
/// [`FakeMemory::host_identity`] names them by their host addresses instead (as EL2's VA == PA), which can
/// exceed a 44-bit OAS on a 48-bit host. Either way nothing is dereferenced: the words live in host vectors.
/// Accesses outside every allocation return `None` from the `try_` methods (the fake SMMU turns them into
/// external aborts) and panic through [`DmaMemory`] (a driver bug).
#[derive(Clone, Debug, Default)]
pub struct FakeMemory {
    inner: Arc<Mutex<Inner>>,
}

/// First synthetic physical address handed out by [`FakeMemory::new`].
pub const FAKE_RAM_BASE: u64 = 0x4000_0000;

impl FakeMemory {
    /// Empty memory with synthetic physical addresses from [`FAKE_RAM_BASE`].
    pub fn new() -> Self {
        Self::with_base(FAKE_RAM_BASE)
    }

    /// Empty memory with synthetic physical addresses from `base` upwards (a machine whose RAM starts there,
    /// e.g. above 512 GiB).
    pub fn with_base(base: u64) -> Self {
        let inner = Inner {
            next_pa: Some(base),
            ..Inner::default()
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    /// Empty memory whose physical addresses are the host addresses of the backing buffers.
    pub fn host_identity() -> Self {
        Self::default()
    }

    /// Allocates `size` zeroed bytes aligned to `align` (a power of two) and returns the address.
    pub fn alloc(&self, size: usize, align: usize) -> u64 {
        let align = align.max(8) as u64;
        let len = (size as u64).next_multiple_of(8).max(8);
        let mut inner = self.inner.lock();
        if let Some(next) = inner.next_pa {
            let base = next.next_multiple_of(align);
            inner.next_pa = Some(base + len);
            let words = vec![0; (len / 8) as usize];
            inner.regions.push(Region {
                base,
                len,
                skip: 0,
                words,
            });
            return base;
        }
        let words = vec![0u64; ((len + align) / 8) as usize];
        let host = words.as_ptr() as u64;
        let base = host.next_multiple_of(align);
        let skip = ((base - host) / 8) as usize;
        inner.regions.push(Region {
            base,
            len,
            skip,
            words,
        });
        base
    }

    /// Reads the word at `pa`, or `None` outside every allocation or unaligned.
    pub fn try_read64(&self, pa: u64) -> Option<u64> {
        let inner = self.inner.lock();
        let (region, index) = locate(&inner.regions, pa)?;
        Some(inner.regions[region].words[index])
    }

    /// The host address of the word at `pa` (`None` outside every allocation or unaligned): where code that
    /// plays EL2 (which reaches memory through a linear map, `pa + offset`) reads and writes what the fake SMMU
    /// sees at `pa`. Valid while this memory lives: allocations are never moved or freed.
    pub fn host_address(&self, pa: u64) -> Option<u64> {
        let inner = self.inner.lock();
        let (region, index) = locate(&inner.regions, pa)?;
        Some(inner.regions[region].words.as_ptr() as u64 + 8 * index as u64)
    }

    /// Writes the word at `pa`; returns false outside every allocation or unaligned.
    pub fn try_write64(&self, pa: u64, value: u64) -> bool {
        let mut inner = self.inner.lock();
        let Some((region, index)) = locate(&inner.regions, pa) else {
            return false;
        };
        inner.regions[region].words[index] = value;
        if let Some(log) = &mut inner.write_log {
            log.push((pa, value));
        }
        true
    }

    /// Starts recording every write (address, value) made through this memory.
    pub fn start_write_log(&self) {
        self.inner.lock().write_log = Some(Vec::new());
    }

    /// Stops recording and returns the writes recorded since [`FakeMemory::start_write_log`].
    pub fn take_write_log(&self) -> Vec<(u64, u64)> {
        self.inner.lock().write_log.take().unwrap_or_default()
    }

    /// Total bytes allocated.
    pub fn allocated(&self) -> u64 {
        self.inner.lock().regions.iter().map(|r| r.len).sum()
    }
}

fn locate(regions: &[Region], pa: u64) -> Option<(usize, usize)> {
    if !pa.is_multiple_of(8) {
        return None;
    }
    regions.iter().enumerate().find_map(|(i, r)| {
        (pa >= r.base && pa < r.base + r.len).then(|| (i, r.skip + ((pa - r.base) / 8) as usize))
    })
}

impl DmaMemory for FakeMemory {
    type Writer = FakeMemory;

    fn writer(&self) -> FakeMemory {
        self.clone()
    }

    fn alloc_zeroed(&mut self, size: usize, align: usize) -> Option<u64> {
        Some(self.alloc(size, align))
    }

    fn read64(&mut self, pa: u64) -> u64 {
        self.try_read64(pa)
            .unwrap_or_else(|| panic!("driver read outside its memory: {pa:#x}"))
    }

    fn write64(&mut self, pa: u64, value: u64) {
        assert!(
            self.try_write64(pa, value),
            "driver write outside its memory: {pa:#x}"
        );
    }
}

impl crate::DmaWriter for FakeMemory {
    fn write64(&self, pa: u64, value: u64) {
        assert!(
            self.try_write64(pa, value),
            "driver write outside its memory: {pa:#x}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_addresses() {
        let mem = FakeMemory::new();
        let a = mem.alloc(100, 64);
        let b = mem.alloc(8, 4096);
        assert_eq!((a, b), (FAKE_RAM_BASE, FAKE_RAM_BASE + 4096));
        assert!(mem.try_write64(b, 3));
        assert_eq!(
            (mem.try_read64(b), mem.try_read64(a + 96)),
            (Some(3), Some(0))
        );
        assert_eq!(mem.try_read64(a + 104), None);
        // EL2's view through a linear map: the same words.
        let host = mem.host_address(b).unwrap();
        // SAFETY: `host` is the word at `b`, inside a live allocation of `mem`; nothing else accesses it now.
        unsafe { (host as *mut u64).write(9) };
        assert_eq!(mem.try_read64(b), Some(9));
        assert_eq!(
            mem.host_address(a + 8).unwrap(),
            mem.host_address(a).unwrap() + 8
        );
        assert_eq!(mem.host_address(a + 104), None);
        assert_eq!(mem.host_address(a + 4), None);
    }

    #[test]
    fn aligned_identity_addresses() {
        let mem = FakeMemory::host_identity();
        let a = mem.alloc(100, 4096);
        let b = mem.alloc(16 << 10, 16 << 10);
        assert_eq!(a % 4096, 0);
        assert_eq!(b % (16 << 10), 0);
        assert_eq!(mem.try_read64(a), Some(0));
        assert!(mem.try_write64(a + 96, 7));
        assert_eq!(mem.try_read64(a + 96), Some(7));
        assert_eq!(mem.try_read64(a + 104), None);
        assert_eq!(mem.try_read64(a + 4), None);
        assert!(!mem.try_write64(8, 1));
        mem.start_write_log();
        mem.clone().write64(b, 5);
        assert_eq!(mem.take_write_log(), [(b, 5)]);
    }
}
