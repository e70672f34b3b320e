//! Stage-2 TLB invalidation planning: the fewest commands that cover an unmapped IPA range.
//!
//! - With range invalidation (`IDR3.RIL`, IHI 0070 §4.4.1.1), one `CMD_TLBI_S2_IPA` covers
//!   `(NUM + 1) * 2^SCALE` 4 KiB pages from its address (NUM ≤ 31, SCALE ≤ 31, so up to 2^48 bytes).
//!   [`RangeMode::Single`] emits exactly ONE command for any range: the smallest SCALE with
//!   `ceil(pages / 2^SCALE) ≤ 32`, which covers the range exactly when it can, otherwise overshoots its end by
//!   fewer than `2^SCALE` pages (< 1/16 of the range). Invalidating extra entries of the same VMID is always
//!   safe (it costs refills, never correctness). [`RangeMode::Exact`] instead emits Linux's decomposition
//!   (one command per 5-bit chunk of the page count), covering exactly the range.
//! - Without RIL, one non-range `CMD_TLBI_S2_IPA` per leaf granule.
//! - Past [`InvalidationPolicy::vmall_threshold`] commands, one `CMD_TLBI_S12_VMALL` for the VMID instead.

use super::{Command, TG_4K, TLBI_NUM_MAX, TLBI_SCALE_MAX, TlbiS2Ipa};
use crate::types::{MAX_ADDR_BITS, Vmid};
use warden_abi::{PAGE_SHIFT, PAGE_SIZE};

/// Size of the leaf entries that were removed from the range (drives the per-granule step and the `TTL` hint).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum LeafSize {
    /// Leaves of several sizes (or unknown): 4 KiB steps, no `TTL` hint.
    Mixed,
    /// Level-3 4 KiB pages.
    Page4K,
    /// Level-2 2 MiB blocks.
    Block2M,
    /// Level-1 1 GiB blocks.
    Block1G,
}

impl LeafSize {
    /// Bytes per leaf (4 KiB for [`LeafSize::Mixed`]).
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Mixed | Self::Page4K => PAGE_SIZE,
            Self::Block2M => 1 << 21,
            Self::Block1G => 1 << 30,
        }
    }

    /// The size of leaves at translation table `level` (1, 2 or 3; [`LeafSize::Mixed`] for any other).
    pub const fn at_level(level: usize) -> Self {
        match level {
            1 => Self::Block1G,
            2 => Self::Block2M,
            3 => Self::Page4K,
            _ => Self::Mixed,
        }
    }

    /// `TTL` hint: the translation table level of the leaves (0 = no hint).
    pub const fn ttl(self) -> u8 {
        match self {
            Self::Mixed => 0,
            Self::Page4K => 3,
            Self::Block2M => 2,
            Self::Block1G => 1,
        }
    }
}

/// One stage-2 invalidation request: `[iova, iova + size)` of `vmid`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct S2Invalidation {
    /// VMID of the domain.
    pub vmid: Vmid,
    /// Start of the range (rounded down to the leaf size).
    pub iova: u64,
    /// Length in bytes (the end is rounded up to the leaf size).
    pub size: u64,
    /// Size of the removed leaves.
    pub leaf_size: LeafSize,
    /// Only leaf entries changed (no table was freed): walk caches need not be invalidated.
    pub leaf_only: bool,
}

/// How range invalidations are split.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum RangeMode {
    /// One command per request, possibly overshooting the end (see the module docs).
    Single,
    /// Exactly the requested pages, with up to one command per 5 bits of the page count.
    Exact,
}

/// Planner settings, derived from the SMMU's features.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct InvalidationPolicy {
    /// Range invalidation is available (`IDR3.RIL`).
    pub range: bool,
    /// How range commands are split.
    pub range_mode: RangeMode,
    /// A plan needing more than this many `TLBI_S2_IPA` commands becomes one `TLBI_S12_VMALL`.
    pub vmall_threshold: u64,
}

impl InvalidationPolicy {
    /// Default threshold: 512 per-granule commands (2 MiB of 4 KiB pages), as Linux's `CMDQ_MAX_TLBI_OPS`.
    pub const DEFAULT_VMALL_THRESHOLD: u64 = 512;

    /// The default policy for an SMMU with (`ril` = true) or without range invalidation.
    pub const fn new(ril: bool) -> Self {
        Self {
            range: ril,
            range_mode: RangeMode::Single,
            vmall_threshold: Self::DEFAULT_VMALL_THRESHOLD,
        }
    }
}

/// The commands for one request, produced lazily (no allocation on the unmap path).
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum InvalidationPlan {
    /// Nothing to invalidate (empty range).
    Empty,
    /// Range commands covering `remaining` pages from `next`, split per the mode.
    Range {
        /// Request template (VMID, leaf, TTL).
        vmid: Vmid,
        /// Leaf-only invalidation.
        leaf: bool,
        /// TTL hint.
        ttl: u8,
        /// Next IPA to cover.
        next: u64,
        /// 4 KiB pages still to cover.
        remaining: u64,
        /// Split mode.
        mode: RangeMode,
    },
    /// One non-range command per `step` bytes from `next`, `count` more of them.
    PerGranule {
        /// VMID.
        vmid: Vmid,
        /// Leaf-only invalidation.
        leaf: bool,
        /// Next IPA.
        next: u64,
        /// Bytes per command.
        step: u64,
        /// Commands left.
        count: u64,
    },
    /// One `TLBI_S12_VMALL`, not yet emitted when `pending`.
    Vmall {
        /// VMID.
        vmid: Vmid,
        /// Still to be emitted.
        pending: bool,
    },
}

/// Plans the invalidation of `req` under `policy`. A range reaching past the 52-bit IPA space is clamped to it.
pub fn plan_s2_invalidation(req: &S2Invalidation, policy: &InvalidationPolicy) -> InvalidationPlan {
    /// One past the last IPA the architecture can name.
    const IPA_LIMIT: u64 = 1 << MAX_ADDR_BITS;
    if req.size == 0 || req.iova >= IPA_LIMIT {
        return InvalidationPlan::Empty;
    }
    let step = req.leaf_size.bytes();
    let start = req.iova & !(step - 1);
    let end = req
        .iova
        .saturating_add(req.size)
        .min(IPA_LIMIT)
        .next_multiple_of(step);
    let ttl = if req.leaf_only {
        req.leaf_size.ttl()
    } else {
        0
    };
    if policy.range {
        let pages = (end - start) >> PAGE_SHIFT;
        let plan = InvalidationPlan::Range {
            vmid: req.vmid,
            leaf: req.leaf_only,
            ttl,
            next: start,
            remaining: pages,
            mode: policy.range_mode,
        };
        let fits = match policy.range_mode {
            RangeMode::Single => pages <= MAX_RANGE_PAGES,
            RangeMode::Exact => plan.clone().count() as u64 <= policy.vmall_threshold.max(1),
        };
        if fits {
            return plan;
        }
    } else {
        let count = (end - start) / step;
        if count <= policy.vmall_threshold {
            return InvalidationPlan::PerGranule {
                vmid: req.vmid,
                leaf: req.leaf_only,
                next: start,
                step,
                count,
            };
        }
    }
    InvalidationPlan::Vmall {
        vmid: req.vmid,
        pending: true,
    }
}

/// Largest page count one range command can cover: 32 * 2^31.
const MAX_RANGE_PAGES: u64 = (TLBI_NUM_MAX as u64 + 1) << TLBI_SCALE_MAX;

/// (NUM + 1, SCALE) of the single command covering at least `pages` (≤ [`MAX_RANGE_PAGES`]) with the least
/// overshoot.
fn single_range(pages: u64) -> (u64, u32) {
    let mut scale = 0;
    loop {
        let count = pages.div_ceil(1 << scale);
        if count <= TLBI_NUM_MAX as u64 + 1 {
            return (count, scale);
        }
        scale += 1;
    }
}

/// (NUM + 1, SCALE) of the next command of an exact decomposition of `pages` (as Linux: the lowest set bit
/// gives SCALE, the next five bits NUM + 1).
fn exact_range(pages: u64) -> (u64, u32) {
    let scale = pages.trailing_zeros().min(TLBI_SCALE_MAX as u32);
    let count = ((pages >> scale) & (TLBI_NUM_MAX as u64)).max(if scale == TLBI_SCALE_MAX as u32 {
        // At the top scale, take as many as the field allows.
        (pages >> scale).min(TLBI_NUM_MAX as u64 + 1)
    } else {
        0
    });
    (count, scale)
}

impl Iterator for InvalidationPlan {
    type Item = Command;

    fn next(&mut self) -> Option<Command> {
        match self {
            Self::Empty => None,
            Self::Vmall { vmid, pending } => {
                if *pending {
                    *pending = false;
                    Some(Command::tlbi_s12_vmall(*vmid))
                } else {
                    None
                }
            }
            Self::PerGranule {
                vmid,
                leaf,
                next,
                step,
                count,
            } => {
                if *count == 0 {
                    return None;
                }
                let cmd = Command::tlbi_s2_ipa(TlbiS2Ipa {
                    vmid: *vmid,
                    ipa: *next,
                    leaf: *leaf,
                    tg: 0,
                    ttl: 0,
                    num: 0,
                    scale: 0,
                });
                *next += *step;
                *count -= 1;
                Some(cmd)
            }
            Self::Range {
                vmid,
                leaf,
                ttl,
                next,
                remaining,
                mode,
            } => {
                if *remaining == 0 {
                    return None;
                }
                let (count, scale) = match mode {
                    RangeMode::Single if *remaining <= MAX_RANGE_PAGES => single_range(*remaining),
                    RangeMode::Single => (TLBI_NUM_MAX as u64 + 1, TLBI_SCALE_MAX as u32),
                    RangeMode::Exact => exact_range(*remaining),
                };
                let cmd = Command::tlbi_s2_ipa(TlbiS2Ipa {
                    vmid: *vmid,
                    ipa: *next,
                    leaf: *leaf,
                    tg: TG_4K,
                    ttl: *ttl,
                    num: (count - 1) as u8,
                    scale: scale as u8,
                });
                let covered = count << scale;
                *next = next.saturating_add(covered << PAGE_SHIFT);
                *remaining = remaining.saturating_sub(covered);
                Some(cmd)
            }
        }
    }

    /// Exact for every plan but an [`RangeMode::Exact`] range (at least one command, no upper bound given),
    /// so that a plan of a few commands is written straight into the queue ([`crate::SharedCmdq::issue`]).
    fn size_hint(&self) -> (usize, Option<usize>) {
        let exact = |n: u64| {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            (n, Some(n))
        };
        match self {
            Self::Empty => (0, Some(0)),
            Self::Vmall { pending, .. } => exact(u64::from(*pending)),
            Self::PerGranule { count, .. } => exact(*count),
            Self::Range { remaining: 0, .. } => (0, Some(0)),
            Self::Range {
                remaining,
                mode: RangeMode::Single,
                ..
            } => exact(remaining.div_ceil(MAX_RANGE_PAGES)),
            Self::Range { .. } => (1, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::CommandKind;
    use proptest::prelude::*;

    const VMID: Vmid = Vmid(3);

    fn req(iova: u64, size: u64, leaf_size: LeafSize) -> S2Invalidation {
        S2Invalidation {
            vmid: VMID,
            iova,
            size,
            leaf_size,
            leaf_only: true,
        }
    }

    /// The byte ranges a plan's commands invalidate (a non-range command: the `leaf`-sized entry at its
    /// address), or `None` for a VMID-wide command.
    fn ranges_of(plan: InvalidationPlan, leaf: LeafSize) -> Option<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        for cmd in plan {
            match cmd.decode() {
                CommandKind::TlbiS2Ipa(t) => {
                    assert_eq!(t.vmid, VMID);
                    let span = if t.tg == 0 { leaf.bytes() } else { t.span() };
                    out.push((t.ipa, t.ipa + span));
                }
                CommandKind::TlbiS12Vmall { vmid } => {
                    assert_eq!(vmid, VMID);
                    return None;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        Some(out)
    }

    fn ranges(plan: InvalidationPlan) -> Option<Vec<(u64, u64)>> {
        ranges_of(plan, LeafSize::Page4K)
    }

    /// Whether the sorted union of `r` is exactly `[start, end)` with no gap.
    fn contiguous_union(mut r: Vec<(u64, u64)>) -> Option<(u64, u64)> {
        r.sort();
        let mut it = r.into_iter();
        let (start, mut end) = it.next()?;
        for (s, e) in it {
            if s != end {
                return None;
            }
            end = e;
        }
        Some((start, end))
    }

    #[test]
    fn ril_one_command_for_any_range_up_to_2m() {
        let policy = InvalidationPolicy::new(true);
        // Every page count 1..=512 at several alignments: exactly one command covering the range.
        for pages in 1..=512u64 {
            for base in [0x4000_0000u64, 0x4000_1000, 0x4001_f000, 0x7fff_f000] {
                let plan = plan_s2_invalidation(&req(base, pages << 12, LeafSize::Page4K), &policy);
                let r = ranges(plan).expect("no vmall with RIL");
                assert_eq!(r.len(), 1, "pages {pages}");
                let (s, e) = r[0];
                assert_eq!(s, base);
                assert!(e >= base + (pages << 12));
                // Overshoot stays below 1/16 of the range (+ rounding of one page).
                assert!(
                    e - base - (pages << 12) <= (pages << 12) / 16,
                    "pages {pages}: overshoot {}",
                    e - s
                );
                if pages <= 32 || pages.is_power_of_two() {
                    assert_eq!(e, base + (pages << 12), "exact when representable");
                }
            }
        }
    }

    #[test]
    fn ril_exact_mode_covers_exactly() {
        let policy = InvalidationPolicy {
            range_mode: RangeMode::Exact,
            ..InvalidationPolicy::new(true)
        };
        for pages in 1..=4096u64 {
            let base = 0x1234_5000;
            let r = ranges(plan_s2_invalidation(
                &req(base, pages << 12, LeafSize::Page4K),
                &policy,
            ))
            .unwrap();
            assert!(r.len() <= 3, "pages {pages}: {} commands", r.len());
            assert_eq!(
                contiguous_union(r),
                Some((base, base + (pages << 12))),
                "pages {pages}"
            );
        }
    }

    #[test]
    fn no_ril_one_per_granule_then_vmall() {
        let policy = InvalidationPolicy::new(false);
        for pages in 1..=512u64 {
            let base = 0x8000_0000 + 0x3000;
            let r = ranges(plan_s2_invalidation(
                &req(base, pages << 12, LeafSize::Page4K),
                &policy,
            ))
            .unwrap();
            assert_eq!(r.len() as u64, pages);
            assert_eq!(contiguous_union(r), Some((base, base + (pages << 12))));
        }
        let plan = plan_s2_invalidation(&req(0, 513 << 12, LeafSize::Page4K), &policy);
        assert_eq!(ranges(plan), None);
        // 2 MiB blocks: one command per block.
        let plan = plan_s2_invalidation(&req(0x4000_0000, 8 << 21, LeafSize::Block2M), &policy);
        let cmds: Vec<_> = plan.collect();
        assert_eq!(cmds.len(), 8);
        assert!(
            cmds.iter().all(
                |c| matches!(c.decode(), CommandKind::TlbiS2Ipa(t) if t.tg == 0 && t.ttl == 0)
            )
        );
    }

    #[test]
    fn ttl_and_leaf_hints() {
        let policy = InvalidationPolicy::new(true);
        let mut r = req(0x4000_0000, 1 << 21, LeafSize::Block2M);
        let CommandKind::TlbiS2Ipa(t) = plan_s2_invalidation(&r, &policy).next().unwrap().decode()
        else {
            panic!()
        };
        assert_eq!(
            (t.tg, t.ttl, t.leaf, t.num, t.scale),
            (TG_4K, 2, true, 31, 4)
        );
        r.leaf_only = false;
        let CommandKind::TlbiS2Ipa(t) = plan_s2_invalidation(&r, &policy).next().unwrap().decode()
        else {
            panic!()
        };
        assert_eq!((t.ttl, t.leaf), (0, false));
    }

    #[test]
    fn degenerate_inputs() {
        let policy = InvalidationPolicy::new(true);
        assert_eq!(
            plan_s2_invalidation(&req(0x1000, 0, LeafSize::Page4K), &policy),
            InvalidationPlan::Empty
        );
        assert_eq!(
            plan_s2_invalidation(&req(1 << 52, 4096, LeafSize::Page4K), &policy),
            InvalidationPlan::Empty
        );
        // Unaligned start and size round outwards to pages.
        let r = ranges(plan_s2_invalidation(
            &req(0x1fff, 2, LeafSize::Page4K),
            &policy,
        ))
        .unwrap();
        assert_eq!(contiguous_union(r), Some((0x1000, 0x3000)));
        // The whole 52-bit space: still one command with RIL (32 * 2^31 pages = 2^48 bytes is not enough, so
        // the VMID-wide command takes over rather than several huge ranges).
        let whole = plan_s2_invalidation(&req(0, u64::MAX, LeafSize::Mixed), &policy);
        assert_eq!(whole.count(), 1);
    }

    proptest! {
        /// Any plan's size hint holds its commands: exact but for an exact-mode range (at least one, no bound),
        /// and after every command taken.
        #[test]
        fn size_hints_hold(
            iova in 0u64..(1 << 48),
            size in 0u64..(1 << 34),
            ril in any::<bool>(),
            exact in any::<bool>(),
        ) {
            let mode = if exact { RangeMode::Exact } else { RangeMode::Single };
            let policy = InvalidationPolicy { range_mode: mode, ..InvalidationPolicy::new(ril) };
            let mut plan = plan_s2_invalidation(&req(iova, size, LeafSize::Mixed), &policy);
            loop {
                let n = plan.clone().count();
                let (low, high) = plan.size_hint();
                prop_assert!(low <= n);
                prop_assert!(high.is_none_or(|h| h == n));
                prop_assert!(high.is_some() || (ril && exact && n > 0));
                if plan.next().is_none() {
                    break;
                }
            }
        }
        /// Any request: the plan covers every requested byte (or is VMID-wide), within the command budget.
        #[test]
        fn plans_cover_requests(
            iova in 0u64..(1 << 48),
            size in 1u64..(1 << 34),
            ril in any::<bool>(),
            exact in any::<bool>(),
            leaf in prop_oneof![Just(LeafSize::Mixed), Just(LeafSize::Page4K), Just(LeafSize::Block2M),
                Just(LeafSize::Block1G)],
        ) {
            let mode = if exact { RangeMode::Exact } else { RangeMode::Single };
            let policy = InvalidationPolicy { range_mode: mode, ..InvalidationPolicy::new(ril) };
            let step = leaf.bytes();
            let (start, end) = (iova & !(step - 1), (iova + size).next_multiple_of(step));
            match ranges_of(plan_s2_invalidation(&req(iova, size, leaf), &policy), leaf) {
                None => prop_assert!(!ril && (end - start) / step > policy.vmall_threshold),
                Some(r) => {
                    prop_assert!(!r.is_empty());
                    if ril && !exact {
                        prop_assert_eq!(r.len(), 1);
                        prop_assert_eq!(r[0].0, start);
                        prop_assert!(r[0].1 >= end);
                        prop_assert!(r[0].1 - end <= (end - start) / 16);
                    } else {
                        if ril { prop_assert!(r.len() <= 8); } else { prop_assert!(r.len() as u64 <= 512); }
                        prop_assert_eq!(contiguous_union(r), Some((start, end)));
                    }
                }
            }
        }
    }
}
