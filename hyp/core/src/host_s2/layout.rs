//! The platform description the host stage-2 is built from (ranges are [`PhysRange`]s, rounded to pages here):
//! the borrowed spec and its owned form.

use alloc::string::String;
use alloc::vec::Vec;

use warden_abi::PAGE_SIZE;
use warden_dt::PhysRange;

use crate::domain::{IOVA_BITS, MAX_IOVA_BITS};

/// The largest page-aligned range inside `r`.
pub(super) const fn shrink_to_pages(r: PhysRange) -> PhysRange {
    PhysRange::from_bounds(
        r.base.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1),
        r.end() & !(PAGE_SIZE - 1),
    )
}

/// The smallest page-aligned range holding `r`.
pub(super) const fn grow_to_pages(r: PhysRange) -> PhysRange {
    PhysRange::from_bounds(
        r.base & !(PAGE_SIZE - 1),
        r.end().saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1),
    )
}

/// `ranges` rounded to whole pages by `round` ([`shrink_to_pages`] or [`grow_to_pages`]), empty ones dropped.
pub(super) fn to_pages(ranges: &[PhysRange], round: fn(PhysRange) -> PhysRange) -> Vec<PhysRange> {
    ranges
        .iter()
        .map(|r| round(*r))
        .filter(|r| !r.is_empty())
        .collect()
}

/// The platform description the host stage-2 is built from.
#[derive(Clone, Copy, Debug)]
pub struct HostS2Spec<'a> {
    /// Every RAM bank (from the device tree's `/memory` nodes). Shrunk to page boundaries.
    pub ram: &'a [PhysRange],
    /// Every MMIO window the host may use (from the boot-time classification, [`crate::devices`]).
    /// Grown to page boundaries.
    pub mmio: &'a [PhysRange],
    /// Ranges never mapped for the host, whatever `ram` and `mmio` say: the hypervisor carve-out, the SMMU
    /// register frames. Grown to page boundaries.
    pub excluded: &'a [PhysRange],
    /// How host RAM is mapped (MMIO always takes blocks where alignment allows).
    pub ram_leaves: RamLeaves,
}

/// The leaves the host stage-2 maps host RAM with, chosen at boot by [`RamLeaves::choose`].
///
/// [`RamLeaves::Blocks`] is the choice for hardware (TLB reach, and tables only where donations cut blocks).
/// [`RamLeaves::Pages`] exists for QEMU's TCG, because of how it caches two-stage translations (QEMU 10,
/// `target/arm/ptw.c` `get_phys_addr_twostage` and `accel/tcg/cputlb.c`): a combined stage-1+2 TLB entry is
/// recorded with the *larger* of the two page sizes, so behind a stage-2 block every entry of the host's EL1&0
/// regime is a "large page"; QEMU tracks one region per MMU index that covers all large pages, and answers a
/// `TLBI` by VA (or VA range) that falls in it by flushing that whole MMU index. Linux's boot issues such TLBIs
/// all the time (fixmap text patching, vmalloc/vunmap, user page tables), so with blocks each became a full TLB
/// flush, and QEMU spent ~18 % more CPU time booting Linux to userspace than natively; with pages it spends the
/// same (docs/design.md, "Boot time").
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum RamLeaves {
    /// 4 KiB pages only: one level-3 table per 2 MiB of RAM ([`crate::sizing`] counts them). Donation
    /// unmaps pages and reclaim maps them again; nothing is ever split or merged.
    Pages,
    /// 1 GiB and 2 MiB blocks wherever alignment allows; donation splits the blocks at the ends of the
    /// range (break-before-make) and reclaim merges them back.
    Blocks,
}

/// The kernel command-line argument that overrides the choice of [`RamLeaves`]: `warden.host_s2=blocks` or
/// `warden.host_s2=pages` (read from the boot DT's `/chosen/bootargs`, like the hyp's other `warden.*`
/// words; the last one wins, as in Linux).
pub const HOST_S2_ARG: &str = "warden.host_s2";

/// The values of the `name=value` words of the kernel command line `bootargs`, in order (the hyp's `warden.*`
/// arguments; Linux ignores them).
fn arg_values<'a>(bootargs: Option<&'a str>, name: &'a str) -> impl Iterator<Item = &'a str> {
    bootargs
        .unwrap_or_default()
        .split_ascii_whitespace()
        .filter_map(move |word| word.strip_prefix(name)?.strip_prefix('='))
}

/// The kernel command-line argument that widens the host-identity domain's input size:
/// `warden.identity_iova_bits=N`, N from 39 to [`MAX_IOVA_BITS`] (read like [`HOST_S2_ARG`]: the last valid
/// one wins, other values are ignored and logged). It never narrows what the machine needs, nor goes beyond
/// the SMMU's input size ([`crate::domain::Geometry::host_identity`]); its use is to test a level-0 root on a machine
/// whose RAM lies below 512 GiB (QEMU).
pub const IDENTITY_IOVA_BITS_ARG: &str = "warden.identity_iova_bits";

/// What [`IDENTITY_IOVA_BITS_ARG`] asks for (for [`crate::sizing::plan`] and `dispatch::Config`), and what it
/// ignored (for the boot log).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct IdentityIovaBits {
    /// The input size asked for, 0 if none.
    pub bits: u8,
    /// A value that was not a number from [`IOVA_BITS`] to [`MAX_IOVA_BITS`] (ignored), for the boot log.
    pub rejected: Option<String>,
}

impl IdentityIovaBits {
    /// [`IDENTITY_IOVA_BITS_ARG`] on the kernel command line `bootargs`.
    #[must_use]
    pub fn choose(bootargs: Option<&str>) -> Self {
        let mut choice = Self::default();
        for value in arg_values(bootargs, IDENTITY_IOVA_BITS_ARG) {
            match value.parse::<u8>() {
                Ok(bits) if (IOVA_BITS..=MAX_IOVA_BITS).contains(&u32::from(bits)) => {
                    choice.bits = bits;
                }
                _ => choice.rejected = Some(String::from(value)),
            }
        }
        choice
    }
}

impl core::fmt::Display for IdentityIovaBits {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.bits == 0 {
            write!(f, "sized to the machine")?;
        } else {
            write!(
                f,
                "at least {} bits: {IDENTITY_IOVA_BITS_ARG}={} on the command line",
                self.bits, self.bits
            )?;
        }
        if let Some(bad) = &self.rejected {
            write!(
                f,
                "; ignored {IDENTITY_IOVA_BITS_ARG}={bad}: expected a number of bits from {IOVA_BITS} to \
                 {MAX_IOVA_BITS}"
            )?;
        }
        Ok(())
    }
}

/// The root `compatible` of QEMU's `virt` board, the machine where TCG's TLB makes blocks slow: it boots with
/// [`RamLeaves::Pages`] unless [`HOST_S2_ARG`] says otherwise.
pub const QEMU_VIRT_COMPATIBLE: &str = "linux,dummy-virt";

/// Why [`RamLeaves::choose`] chose what it did (for the boot log).
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum LeavesReason {
    /// [`HOST_S2_ARG`] on the kernel command line.
    BootArg,
    /// The machine is QEMU virt ([`QEMU_VIRT_COMPATIBLE`]) and no valid [`HOST_S2_ARG`] was given.
    QemuVirt,
    /// Any other machine (carries its most specific `compatible`, if any) and no valid [`HOST_S2_ARG`].
    Hardware(Option<String>),
}

/// The leaves [`RamLeaves::choose`] picked, and why.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LeavesChoice {
    /// The leaves host RAM is mapped with.
    pub leaves: RamLeaves,
    /// Why.
    pub reason: LeavesReason,
    /// A [`HOST_S2_ARG`] value that was neither `blocks` nor `pages` (ignored), for the boot log.
    pub rejected: Option<String>,
}

impl RamLeaves {
    /// The leaves for a machine whose root node has `compatible` and whose kernel command line is `bootargs`:
    /// [`HOST_S2_ARG`] if given with a valid value (the last one wins); else [`RamLeaves::Pages`] on QEMU virt
    /// (root `compatible` [`QEMU_VIRT_COMPATIBLE`]), where TCG's TLB makes blocks slow, and
    /// [`RamLeaves::Blocks`] on any other machine.
    #[must_use]
    pub fn choose(compatible: &[String], bootargs: Option<&str>) -> LeavesChoice {
        let mut arg = None;
        let mut rejected = None;
        for value in arg_values(bootargs, HOST_S2_ARG) {
            match value {
                "blocks" => arg = Some(RamLeaves::Blocks),
                "pages" => arg = Some(RamLeaves::Pages),
                other => rejected = Some(String::from(other)),
            }
        }
        let (leaves, reason) = match arg {
            Some(leaves) => (leaves, LeavesReason::BootArg),
            None if compatible.iter().any(|c| c == QEMU_VIRT_COMPATIBLE) => {
                (RamLeaves::Pages, LeavesReason::QemuVirt)
            }
            None => (
                RamLeaves::Blocks,
                LeavesReason::Hardware(compatible.first().cloned()),
            ),
        };
        LeavesChoice {
            leaves,
            reason,
            rejected,
        }
    }

    /// `pages` or `blocks`, as [`HOST_S2_ARG`] spells them.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            RamLeaves::Pages => "pages",
            RamLeaves::Blocks => "blocks",
        }
    }
}

impl core::fmt::Display for LeavesChoice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let leaves = self.leaves.name();
        write!(f, "host RAM mapped with {leaves} (")?;
        match &self.reason {
            LeavesReason::BootArg => write!(f, "{HOST_S2_ARG}={leaves} on the command line")?,
            LeavesReason::QemuVirt => write!(
                f,
                "machine is QEMU virt `{QEMU_VIRT_COMPATIBLE}`: TCG flushes its whole TLB on a TLBI by VA behind \
                 stage-2 blocks; {HOST_S2_ARG}=blocks overrides"
            )?,
            LeavesReason::Hardware(Some(c)) => write!(
                f,
                "machine `{c}` is not QEMU virt: blocks by default; {HOST_S2_ARG}=pages overrides"
            )?,
            LeavesReason::Hardware(None) => write!(
                f,
                "machine has no root compatible, not QEMU virt: blocks by default; {HOST_S2_ARG}=pages overrides"
            )?,
        }
        if let Some(bad) = &self.rejected {
            write!(
                f,
                "; ignored {HOST_S2_ARG}={bad}: expected {HOST_S2_ARG}=blocks or {HOST_S2_ARG}=pages"
            )?;
        }
        write!(f, ")")
    }
}

/// `ranges` minus every hole in `holes` (both page aligned), as a list of non-empty ranges in order.
pub(crate) fn subtract(range: PhysRange, holes: &[PhysRange]) -> Vec<PhysRange> {
    let mut pieces = alloc::vec![range];
    for hole in holes {
        let mut next = Vec::new();
        for piece in pieces {
            if !piece.overlaps(hole) {
                next.push(piece);
                continue;
            }
            let below = PhysRange::from_bounds(piece.base, hole.base.min(piece.end()));
            let above = PhysRange::from_bounds(hole.end().max(piece.base), piece.end());
            for part in [below, above] {
                if !part.is_empty() {
                    next.push(part);
                }
            }
        }
        pieces = next;
    }
    pieces
}
/// The inputs of [`HostStage2::build`](super::HostStage2::build) for a platform, owned.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct HostS2Layout {
    /// RAM banks.
    pub ram: Vec<PhysRange>,
    /// MMIO the host may use.
    pub mmio: Vec<PhysRange>,
    /// Never mapped for the host.
    pub excluded: Vec<PhysRange>,
    /// How host RAM is mapped.
    pub ram_leaves: RamLeaves,
}

impl HostS2Layout {
    /// The host stage-2 layout of a classified platform ([`crate::devices::classify`]): all RAM, mapped with
    /// `ram_leaves`; as MMIO only the host regions of the classified device nodes; excluded the hypervisor
    /// carve-out, every SMMU frame and every withheld node's regions.
    pub fn from_devices(
        devices: &crate::devices::Classification<'_>,
        ram_leaves: RamLeaves,
    ) -> Self {
        Self {
            ram: devices.ram().to_vec(),
            mmio: devices.host_mmio(),
            excluded: devices.excluded(),
            ram_leaves,
        }
    }

    /// The borrowed form [`HostStage2::build`](super::HostStage2::build) takes.
    pub fn spec(&self) -> HostS2Spec<'_> {
        HostS2Spec {
            ram: &self.ram,
            mmio: &self.mmio,
            excluded: &self.excluded,
            ram_leaves: self.ram_leaves,
        }
    }
}
