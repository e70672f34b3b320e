//! The hypercall arguments, decoded once: [`Warden::handle`] turns the registers into these validated types
//! (in the order that fixes which error a call with several bad arguments returns) and the handlers take them.
//!
//! Each constructor returns the ABI error a bad value gets; none reads the hypervisor's state but the limits
//! it is given (PA width, donation limit), so a value that decodes is valid for every call.

use super::*;

/// A domain ID as the host names it: host-identity, or an allocatable domain's slot and generation (the slot
/// may still be beyond the table, or free: `Warden::slot_of` and the slot's lock decide).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum DomainId {
    /// [`abi::DOMAIN_ID_HOST_IDENTITY`].
    HostIdentity,
    /// An allocatable domain: bits \[15:0\] the slot (never 0), bits \[31:16\] its generation.
    Allocated {
        /// Slot (1 and up).
        slot: u16,
        /// Generation of the slot when the domain was allocated.
        generation: u16,
    },
}

impl DomainId {
    /// Decodes `x`: [`Error::BadDomain`] unless it is host-identity or fits 32 bits with a non-zero slot.
    pub fn from_reg(x: u64) -> Result<Self, Error> {
        if x == abi::DOMAIN_ID_HOST_IDENTITY {
            return Ok(Self::HostIdentity);
        }
        let id = u32::try_from(x).map_err(|_| Error::BadDomain)?;
        let (slot, generation) = (id as u16, (id >> 16) as u16);
        if slot == 0 {
            return Err(Error::BadDomain);
        }
        Ok(Self::Allocated { slot, generation })
    }

    /// The ID of slot `slot` at `generation` (slot 0 is host-identity).
    pub fn new(slot: u16, generation: u16) -> Self {
        if slot == 0 {
            Self::HostIdentity
        } else {
            Self::Allocated { slot, generation }
        }
    }

    /// The register value.
    pub fn to_reg(self) -> u64 {
        match self {
            Self::HostIdentity => abi::DOMAIN_ID_HOST_IDENTITY,
            Self::Allocated { slot, generation } => (u64::from(generation) << 16) | u64::from(slot),
        }
    }
}

/// A page size of [`abi::PGSIZE_BITMAP`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum PageSize {
    /// 4 KiB ([`abi::PGSIZE_4K`]).
    Size4K,
    /// 2 MiB ([`abi::PGSIZE_2M`]).
    Size2M,
    /// 1 GiB ([`abi::PGSIZE_1G`]).
    Size1G,
}

impl PageSize {
    /// Decodes `x`: [`Error::BadPgsize`] unless it is one of the three sizes.
    pub fn from_reg(x: u64) -> Result<Self, Error> {
        match x {
            abi::PGSIZE_4K => Ok(Self::Size4K),
            abi::PGSIZE_2M => Ok(Self::Size2M),
            abi::PGSIZE_1G => Ok(Self::Size1G),
            _ => Err(Error::BadPgsize),
        }
    }

    /// Bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Size4K => abi::PGSIZE_4K,
            Self::Size2M => abi::PGSIZE_2M,
            Self::Size1G => abi::PGSIZE_1G,
        }
    }
}

/// A valid `prot`: only [`abi::PROT_ALL`] bits, readable or writable, not both MMIO and cacheable.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Prot(u64);

impl Prot {
    /// Decodes `x`: [`Error::BadProt`] unless it is valid.
    pub fn from_reg(x: u64) -> Result<Self, Error> {
        if x & !abi::PROT_ALL != 0
            || x & (abi::PROT_READ | abi::PROT_WRITE) == 0
            || (x & abi::PROT_MMIO != 0 && x & abi::PROT_CACHE != 0)
        {
            return Err(Error::BadProt);
        }
        Ok(Self(x))
    }

    /// The bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The memory the pages must be: MMIO (a doorbell) with [`abi::PROT_MMIO`], else RAM.
    pub const fn kind(self) -> MemKind {
        if self.0 & abi::PROT_MMIO != 0 {
            MemKind::Mmio
        } else {
            MemKind::Ram
        }
    }

    /// The stage-2 attributes of a leaf with this prot.
    pub fn attributes(self) -> aarch64_paging::descriptor::Stage2Attributes {
        domain::attributes(self.0)
    }
}

/// An IOVA: an input address below 2^[`IOVA_BITS`].
#[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd)]
pub struct Iova(u64);

impl Iova {
    /// Decodes `x`: [`Error::OutOfRangeIova`] unless it is below 2^[`IOVA_BITS`].
    pub fn from_reg(x: u64) -> Result<Self, Error> {
        if x >> IOVA_BITS != 0 {
            return Err(Error::OutOfRangeIova);
        }
        Ok(Self(x))
    }

    /// Decodes the range of `count` pages of `size` from `x` and returns its start and length:
    /// [`Error::BadCount`] for no page, [`Error::Misaligned`], [`Error::Overflow`], then
    /// [`Error::OutOfRangeIova`] for a range past 2^[`IOVA_BITS`].
    pub fn range(x: u64, size: PageSize, count: u64) -> Result<(Self, u64), Error> {
        if count == 0 {
            return Err(Error::BadCount);
        }
        let size = size.bytes();
        if !x.is_multiple_of(size) {
            return Err(Error::Misaligned);
        }
        let len = size.checked_mul(count).ok_or(Error::Overflow)?;
        let end = x.checked_add(len).ok_or(Error::Overflow)?;
        if end > 1 << IOVA_BITS {
            return Err(Error::OutOfRangeIova);
        }
        Ok((Self(x), len))
    }

    /// The address.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A physical address: the start of a range the SMMU can output (the range ends at or below 2^`pa_bits`).
#[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd)]
pub struct PhysAddr(u64);

impl PhysAddr {
    /// Decodes the `len` bytes from `x`, `align`-aligned, for an SMMU that outputs `pa_bits`:
    /// [`Error::Misaligned`], [`Error::Overflow`], then [`Error::OutOfRangePa`].
    pub fn range(x: u64, len: u64, align: u64, pa_bits: u8) -> Result<Self, Error> {
        if !x.is_multiple_of(align) {
            return Err(Error::Misaligned);
        }
        let end = x.checked_add(len).ok_or(Error::Overflow)?;
        if end > 1 << pa_bits {
            return Err(Error::OutOfRangePa);
        }
        Ok(Self(x))
    }

    /// Decodes `count` pages from `x` (`DONATE`, `RECLAIM`) and returns the start and length: [`Error::BadCount`]
    /// for none or more than `max`, then as [`PhysAddr::range`].
    pub fn pages(x: u64, count: u64, max: usize, pa_bits: u8) -> Result<(Self, u64), Error> {
        if count == 0 || count > max as u64 {
            return Err(Error::BadCount);
        }
        if !x.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Misaligned);
        }
        let len = count.checked_mul(PAGE_SIZE).ok_or(Error::Overflow)?;
        Ok((Self::range(x, len, PAGE_SIZE, pa_bits)?, len))
    }

    /// The address.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A host array of batch descriptors (`MAP_BATCH`, `UNMAP_BATCH`): `count` descriptors at PA `pa`, 8-byte
/// aligned, inside one 4 KiB page the SMMU can output. Only the placement is checked; the hypervisor reads the
/// descriptors later, from the pinned page.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Descriptors {
    /// PA of the first descriptor.
    pa: u64,
    /// Number of descriptors (1..=the call's maximum).
    count: usize,
}

impl Descriptors {
    /// Decodes `count` descriptors of `entry` bytes at `x`, at most `max` of them, for an SMMU that outputs
    /// `pa_bits`: [`Error::BadCount`] for none or more than `max`, [`Error::Misaligned`] unless `x` is
    /// [`abi::MAP_BATCH_ALIGN`]-aligned and the array ends inside `x`'s 4 KiB page, then as [`PhysAddr::range`]
    /// for that page.
    pub fn from_reg(x: u64, count: u64, max: u64, entry: u64, pa_bits: u8) -> Result<Self, Error> {
        if count == 0 || count > max {
            return Err(Error::BadCount);
        }
        if !x.is_multiple_of(abi::MAP_BATCH_ALIGN) || x % PAGE_SIZE + count * entry > PAGE_SIZE {
            return Err(Error::Misaligned);
        }
        PhysAddr::range(x & !(PAGE_SIZE - 1), PAGE_SIZE, PAGE_SIZE, pa_bits)?;
        Ok(Self {
            pa: x,
            count: count as usize,
        })
    }

    /// PA of the first descriptor.
    pub const fn pa(self) -> u64 {
        self.pa
    }

    /// The 4 KiB page that holds the array.
    pub const fn page(self) -> u64 {
        self.pa & !(PAGE_SIZE - 1)
    }

    /// Number of descriptors.
    pub const fn count(self) -> usize {
        self.count
    }
}

/// A `STAT` ID: the number of calls of one function (from [`abi::STAT_CALLS_BASE`]) or one [`Stat`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum StatId {
    /// `STAT_CALLS_BASE + n`: calls of function number `n` (one the dispatcher counts).
    Calls(Function),
    /// Any other value [`Stat`] names.
    Value(Stat),
}

impl StatId {
    /// Decodes `x`: [`Error::BadStat`] unless it counts the calls of a function or names a [`Stat`]. Whether
    /// the stat is available (some are installed by EL2) is the handler's to say.
    pub fn from_reg(x: u64) -> Result<Self, Error> {
        if let Some(n) = x.checked_sub(abi::STAT_CALLS_BASE)
            && n < FUNCTION_SLOTS as u64
            && let Some(f) = Function::from_value(n as u32)
        {
            return Ok(Self::Calls(f));
        }
        Stat::from_value(x).map(Self::Value).ok_or(Error::BadStat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoders_refuse_what_the_abi_refuses() {
        assert_eq!(DomainId::from_reg(0), Ok(DomainId::HostIdentity));
        let id = DomainId::from_reg(0x3_0005).unwrap();
        assert_eq!(
            id,
            DomainId::Allocated {
                slot: 5,
                generation: 3
            }
        );
        assert_eq!(id.to_reg(), 0x3_0005);
        assert_eq!(DomainId::new(0, 7), DomainId::HostIdentity);
        assert_eq!(DomainId::from_reg(0x1_0000), Err(Error::BadDomain));
        assert_eq!(DomainId::from_reg(1 << 32), Err(Error::BadDomain));
        assert_eq!(
            PageSize::from_reg(abi::PGSIZE_2M).map(PageSize::bytes),
            Ok(1 << 21)
        );
        assert_eq!(PageSize::from_reg(0x2000), Err(Error::BadPgsize));
        assert_eq!(
            Prot::from_reg(abi::PROT_WRITE).map(Prot::kind),
            Ok(MemKind::Ram)
        );
        assert_eq!(
            Prot::from_reg(abi::PROT_READ | abi::PROT_MMIO).map(Prot::kind),
            Ok(MemKind::Mmio)
        );
        assert_eq!(Prot::from_reg(abi::PROT_CACHE), Err(Error::BadProt));
        assert_eq!(Prot::from_reg(1 << 6 | abi::PROT_READ), Err(Error::BadProt));
        assert_eq!(Iova::from_reg(1 << IOVA_BITS), Err(Error::OutOfRangeIova));
        let k4 = PageSize::Size4K;
        assert_eq!(Iova::range(0x1000, k4, 2), Ok((Iova(0x1000), 0x2000)));
        assert_eq!(Iova::range(0x1000, k4, 0), Err(Error::BadCount));
        assert_eq!(Iova::range(0x1800, k4, 1), Err(Error::Misaligned));
        assert_eq!(Iova::range(0, k4, u64::MAX), Err(Error::Overflow));
        assert_eq!(
            Iova::range((1 << IOVA_BITS) - 0x1000, k4, 2),
            Err(Error::OutOfRangeIova)
        );
        assert_eq!(
            PhysAddr::range(1 << 44, 0x1000, 0x1000, 44),
            Err(Error::OutOfRangePa)
        );
        assert_eq!(
            PhysAddr::range(!0xfff, 0x1000, 0x1000, 48),
            Err(Error::Overflow)
        );
        assert_eq!(PhysAddr::pages(0x1000, 9, 8, 44), Err(Error::BadCount));
        assert_eq!(
            PhysAddr::pages(0x1000, 8, 8, 44).map(|(p, l)| (p.get(), l)),
            Ok((0x1000, 0x8000))
        );
        let d = Descriptors::from_reg(0x1ff8, 1, 64, 8, 44).unwrap();
        assert_eq!((d.pa(), d.page(), d.count()), (0x1ff8, 0x1000, 1));
        assert_eq!(
            Descriptors::from_reg(0x1000, 0, 64, 24, 44),
            Err(Error::BadCount)
        );
        assert_eq!(
            Descriptors::from_reg(0x1000, 65, 64, 24, 44),
            Err(Error::BadCount)
        );
        assert_eq!(
            Descriptors::from_reg(0x1004, 1, 64, 24, 44),
            Err(Error::Misaligned)
        );
        assert_eq!(
            Descriptors::from_reg(0x1ff8, 1, 64, 24, 44),
            Err(Error::Misaligned)
        );
        assert_eq!(
            Descriptors::from_reg(1 << 44, 1, 64, 24, 44),
            Err(Error::OutOfRangePa)
        );
        assert_eq!(
            StatId::from_reg(abi::STAT_CALLS_BASE + u64::from(Function::MapPages.value())),
            Ok(StatId::Calls(Function::MapPages))
        );
        assert_eq!(
            StatId::from_reg(Stat::EventsLost.value()),
            Ok(StatId::Value(Stat::EventsLost))
        );
        assert_eq!(
            StatId::from_reg(abi::STAT_CALLS_BASE + 0xff),
            Err(Error::BadStat)
        );
        assert_eq!(StatId::from_reg(u64::MAX), Err(Error::BadStat));
    }
}
