//! Command queue entries (IHI 0070 §4 "Commands"): 16 bytes, opcode in bits \[7:0\] of the first dword.

mod plan;

pub use plan::{
    InvalidationPlan, InvalidationPolicy, LeafSize, RangeMode, S2Invalidation, plan_s2_invalidation,
};

use crate::regs::{field64, mask64, prep64};
use crate::types::{StreamId, Vmid};

/// Size of one command in bytes (IHI 0070 §4.1.1).
pub const CMD_SIZE: usize = 16;
/// Size of one command in 64-bit words.
pub const CMD_DWORDS: usize = CMD_SIZE / 8;

/// Command opcodes (IHI 0070 §4.1.2 "Command opcodes").
pub mod opcode {
    /// `CMD_PREFETCH_CONFIG` (§4.2.1).
    pub const PREFETCH_CONFIG: u8 = 0x01;
    /// `CMD_CFGI_STE` (§4.3.1).
    pub const CFGI_STE: u8 = 0x03;
    /// `CMD_CFGI_STE_RANGE`, also `CMD_CFGI_ALL` with `Range` = 31 (§4.3.2, §4.3.3).
    pub const CFGI_STE_RANGE: u8 = 0x04;
    /// `CMD_CFGI_CD` (§4.3.4).
    pub const CFGI_CD: u8 = 0x05;
    /// `CMD_CFGI_CD_ALL` (§4.3.5).
    pub const CFGI_CD_ALL: u8 = 0x06;
    /// `CMD_TLBI_NH_ALL` (§4.4.2).
    pub const TLBI_NH_ALL: u8 = 0x10;
    /// `CMD_TLBI_EL2_ALL` (§4.4.7).
    pub const TLBI_EL2_ALL: u8 = 0x20;
    /// `CMD_TLBI_S12_VMALL` (§4.4.5).
    pub const TLBI_S12_VMALL: u8 = 0x28;
    /// `CMD_TLBI_S2_IPA` (§4.4.6).
    pub const TLBI_S2_IPA: u8 = 0x2A;
    /// `CMD_TLBI_NSNH_ALL` (§4.4.10).
    pub const TLBI_NSNH_ALL: u8 = 0x30;
    /// `CMD_SYNC` (§4.7.3).
    pub const CMD_SYNC: u8 = 0x46;
}

// Field layouts (IHI 0070 §4.2–§4.7).
const OP_SHIFT: u32 = 0;
const OP_WIDTH: u32 = 8;
const SID_SHIFT: u32 = 32;
const SID_WIDTH: u32 = 32;
const CFGI_LEAF: u64 = 1 << 0;
const CFGI_RANGE_WIDTH: u32 = 5;
/// `Range` value of `CMD_CFGI_ALL`: every StreamID (§4.3.3).
pub const CFGI_RANGE_ALL: u8 = 31;
const TLBI_NUM_SHIFT: u32 = 12;
const TLBI_NUM_WIDTH: u32 = 5;
const TLBI_SCALE_SHIFT: u32 = 20;
const TLBI_SCALE_WIDTH: u32 = 5;
const TLBI_VMID_SHIFT: u32 = 32;
const TLBI_VMID_WIDTH: u32 = 16;
const TLBI_LEAF: u64 = 1 << 0;
const TLBI_TTL_SHIFT: u32 = 8;
const TLBI_TG_SHIFT: u32 = 10;
const TLBI_IPA_HI: u32 = 51;
const TLBI_IPA_LO: u32 = 12;
const SYNC_CS_SHIFT: u32 = 12;
const SYNC_MSH_SHIFT: u32 = 22;
const SYNC_MSIATTR_SHIFT: u32 = 24;
const SYNC_MSIDATA_SHIFT: u32 = 32;
const SYNC_MSIADDR_HI: u32 = 51;
const SYNC_MSIADDR_LO: u32 = 2;

/// `TLBI_*.TG` encoding of the 4 KiB granule: range invalidation in 4 KiB pages (§4.4.1.1).
pub const TG_4K: u8 = 1;
/// Largest `NUM` field value: a range covers `(NUM + 1) * 2^SCALE` granules (§4.4.1.1).
pub const TLBI_NUM_MAX: u8 = 31;
/// Largest `SCALE` field value.
pub const TLBI_SCALE_MAX: u8 = 31;

/// `CMD_SYNC.CS`, the completion signal (§4.7.3).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SyncCompletion {
    /// 0b00: completion is observed through `CMDQ_CONS` moving past the command.
    None,
    /// 0b01: write `msi_data` to `msi_addr` on completion (MSI).
    Irq {
        /// Physical address of the 32-bit write, 4-byte aligned.
        msi_addr: u64,
        /// Value written.
        msi_data: u32,
    },
    /// 0b10: send an event (wake WFE) on completion.
    Sev,
}

/// One `CMD_TLBI_S2_IPA` (§4.4.6), with the range fields of SMMUv3.2 `RIL` (§4.4.1.1).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct TlbiS2Ipa {
    /// VMID whose entries are invalidated.
    pub vmid: Vmid,
    /// First IPA (4 KiB aligned; bits \[51:12\] are encoded).
    pub ipa: u64,
    /// Only leaf entries (not walk caches) need invalidating.
    pub leaf: bool,
    /// `TG`: 0 = a single address, [`TG_4K`] = a range of 4 KiB granules.
    pub tg: u8,
    /// `TTL`: level of the leaf entries (0 = unknown), meaningful only with `tg != 0`.
    pub ttl: u8,
    /// `NUM`: range is `(num + 1) * 2^scale` granules.
    pub num: u8,
    /// `SCALE`.
    pub scale: u8,
}

impl TlbiS2Ipa {
    /// Number of bytes this command invalidates from `ipa` (4 KiB for a non-range command).
    pub const fn span(&self) -> u64 {
        if self.tg == 0 {
            1 << 12
        } else {
            ((self.num as u64) + 1) << (self.scale as u32 + 12)
        }
    }
}

/// A decoded command.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum CommandKind {
    /// `CMD_PREFETCH_CONFIG`.
    PrefetchConfig {
        /// StreamID.
        sid: StreamId,
    },
    /// `CMD_CFGI_STE`.
    CfgiSte {
        /// StreamID whose STE (and level-1 descriptor) is invalidated.
        sid: StreamId,
        /// Only the STE, not level-1 descriptors.
        leaf: bool,
    },
    /// `CMD_CFGI_STE_RANGE` (`CMD_CFGI_ALL` when `range` = 31).
    CfgiSteRange {
        /// StreamID (aligned down to the range).
        sid: StreamId,
        /// `2^(range+1)` StreamIDs.
        range: u8,
    },
    /// `CMD_TLBI_S2_IPA`.
    TlbiS2Ipa(TlbiS2Ipa),
    /// `CMD_TLBI_S12_VMALL`.
    TlbiS12Vmall {
        /// VMID.
        vmid: Vmid,
    },
    /// `CMD_TLBI_NSNH_ALL`.
    TlbiNsnhAll,
    /// `CMD_TLBI_EL2_ALL`.
    TlbiEl2All,
    /// `CMD_SYNC`.
    Sync(SyncCompletion),
    /// Any other opcode, kept raw.
    Other {
        /// The opcode byte.
        opcode: u8,
    },
}

/// One encoded command, as written to the queue (little-endian dwords).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[repr(transparent)]
pub struct Command(pub [u64; CMD_DWORDS]);

impl Command {
    /// A raw command, e.g. to test the error path with an illegal opcode.
    pub const fn from_raw(raw: [u64; CMD_DWORDS]) -> Self {
        Self(raw)
    }

    /// `CMD_PREFETCH_CONFIG` for `sid` (a hint; never required for correctness).
    pub const fn prefetch_config(sid: StreamId) -> Self {
        Self([
            op(opcode::PREFETCH_CONFIG) | prep64(sid.0 as u64, SID_SHIFT, SID_WIDTH),
            0,
        ])
    }

    /// `CMD_CFGI_STE`: invalidate cached copies of `sid`'s STE (with `leaf` false also its level-1
    /// descriptor).
    pub const fn cfgi_ste(sid: StreamId, leaf: bool) -> Self {
        Self([
            op(opcode::CFGI_STE) | prep64(sid.0 as u64, SID_SHIFT, SID_WIDTH),
            if leaf { CFGI_LEAF } else { 0 },
        ])
    }

    /// `CMD_CFGI_STE_RANGE`: invalidate the STEs of `2^(range+1)` StreamIDs from `sid` aligned down.
    pub const fn cfgi_ste_range(sid: StreamId, range: u8) -> Self {
        Self([
            op(opcode::CFGI_STE_RANGE) | prep64(sid.0 as u64, SID_SHIFT, SID_WIDTH),
            prep64(range as u64, 0, CFGI_RANGE_WIDTH),
        ])
    }

    /// `CMD_CFGI_ALL`: invalidate every cached configuration structure.
    pub const fn cfgi_all() -> Self {
        Self::cfgi_ste_range(StreamId(0), CFGI_RANGE_ALL)
    }

    /// `CMD_TLBI_S2_IPA`.
    pub const fn tlbi_s2_ipa(t: TlbiS2Ipa) -> Self {
        Self([
            op(opcode::TLBI_S2_IPA)
                | prep64(t.num as u64, TLBI_NUM_SHIFT, TLBI_NUM_WIDTH)
                | prep64(t.scale as u64, TLBI_SCALE_SHIFT, TLBI_SCALE_WIDTH)
                | prep64(t.vmid.0 as u64, TLBI_VMID_SHIFT, TLBI_VMID_WIDTH),
            if t.leaf { TLBI_LEAF } else { 0 }
                | prep64(t.ttl as u64, TLBI_TTL_SHIFT, 2)
                | prep64(t.tg as u64, TLBI_TG_SHIFT, 2)
                | (t.ipa & mask64(TLBI_IPA_HI, TLBI_IPA_LO)),
        ])
    }

    /// `CMD_TLBI_S12_VMALL`: every stage-1 and stage-2 entry of `vmid`.
    pub const fn tlbi_s12_vmall(vmid: Vmid) -> Self {
        Self([
            op(opcode::TLBI_S12_VMALL) | prep64(vmid.0 as u64, TLBI_VMID_SHIFT, TLBI_VMID_WIDTH),
            0,
        ])
    }

    /// `CMD_TLBI_NSNH_ALL`: every non-secure, non-hyp entry.
    pub const fn tlbi_nsnh_all() -> Self {
        Self([op(opcode::TLBI_NSNH_ALL), 0])
    }

    /// `CMD_TLBI_EL2_ALL`: every EL2 entry (only with `IDR0.HYP`).
    pub const fn tlbi_el2_all() -> Self {
        Self([op(opcode::TLBI_EL2_ALL), 0])
    }

    /// `CMD_SYNC` with completion signal `cs` (MSI attributes: inner-shareable, write-back; §4.7.3).
    pub const fn sync(cs: SyncCompletion) -> Self {
        /// `MSH` inner shareable.
        const MSH_ISH: u64 = 3;
        /// `MSIATTR` inner/outer write-back cacheable.
        const MSIATTR_OIWB: u64 = 0xF;
        match cs {
            SyncCompletion::None => Self([op(opcode::CMD_SYNC), 0]),
            SyncCompletion::Sev => Self([op(opcode::CMD_SYNC) | 2 << SYNC_CS_SHIFT, 0]),
            SyncCompletion::Irq { msi_addr, msi_data } => Self([
                op(opcode::CMD_SYNC)
                    | 1 << SYNC_CS_SHIFT
                    | MSH_ISH << SYNC_MSH_SHIFT
                    | MSIATTR_OIWB << SYNC_MSIATTR_SHIFT
                    | (msi_data as u64) << SYNC_MSIDATA_SHIFT,
                msi_addr & mask64(SYNC_MSIADDR_HI, SYNC_MSIADDR_LO),
            ]),
        }
    }

    /// The opcode byte.
    pub const fn opcode(&self) -> u8 {
        field64(self.0[0], OP_SHIFT, OP_WIDTH) as u8
    }

    /// Whether this is a range `CMD_TLBI_S2_IPA` (`TG` non-zero), without decoding the rest.
    pub const fn is_range_tlbi(&self) -> bool {
        self.opcode() == opcode::TLBI_S2_IPA && field64(self.0[1], TLBI_TG_SHIFT, 2) != 0
    }

    /// Decodes the command (fields this crate knows; others as [`CommandKind::Other`]).
    pub const fn decode(&self) -> CommandKind {
        let [d0, d1] = self.0;
        let sid = StreamId(field64(d0, SID_SHIFT, SID_WIDTH) as u32);
        match self.opcode() {
            opcode::PREFETCH_CONFIG => CommandKind::PrefetchConfig { sid },
            opcode::CFGI_STE => CommandKind::CfgiSte {
                sid,
                leaf: d1 & CFGI_LEAF != 0,
            },
            opcode::CFGI_STE_RANGE => CommandKind::CfgiSteRange {
                sid,
                range: field64(d1, 0, CFGI_RANGE_WIDTH) as u8,
            },
            opcode::TLBI_S2_IPA => CommandKind::TlbiS2Ipa(TlbiS2Ipa {
                vmid: Vmid(field64(d0, TLBI_VMID_SHIFT, TLBI_VMID_WIDTH) as u16),
                ipa: d1 & mask64(TLBI_IPA_HI, TLBI_IPA_LO),
                leaf: d1 & TLBI_LEAF != 0,
                tg: field64(d1, TLBI_TG_SHIFT, 2) as u8,
                ttl: field64(d1, TLBI_TTL_SHIFT, 2) as u8,
                num: field64(d0, TLBI_NUM_SHIFT, TLBI_NUM_WIDTH) as u8,
                scale: field64(d0, TLBI_SCALE_SHIFT, TLBI_SCALE_WIDTH) as u8,
            }),
            opcode::TLBI_S12_VMALL => CommandKind::TlbiS12Vmall {
                vmid: Vmid(field64(d0, TLBI_VMID_SHIFT, TLBI_VMID_WIDTH) as u16),
            },
            opcode::TLBI_NSNH_ALL => CommandKind::TlbiNsnhAll,
            opcode::TLBI_EL2_ALL => CommandKind::TlbiEl2All,
            opcode::CMD_SYNC => CommandKind::Sync(match field64(d0, SYNC_CS_SHIFT, 2) {
                1 => SyncCompletion::Irq {
                    msi_addr: d1 & mask64(SYNC_MSIADDR_HI, SYNC_MSIADDR_LO),
                    msi_data: field64(d0, SYNC_MSIDATA_SHIFT, 32) as u32,
                },
                2 => SyncCompletion::Sev,
                _ => SyncCompletion::None,
            }),
            opcode => CommandKind::Other { opcode },
        }
    }
}

impl From<CommandKind> for Command {
    fn from(kind: CommandKind) -> Self {
        match kind {
            CommandKind::PrefetchConfig { sid } => Self::prefetch_config(sid),
            CommandKind::CfgiSte { sid, leaf } => Self::cfgi_ste(sid, leaf),
            CommandKind::CfgiSteRange { sid, range } => Self::cfgi_ste_range(sid, range),
            CommandKind::TlbiS2Ipa(t) => Self::tlbi_s2_ipa(t),
            CommandKind::TlbiS12Vmall { vmid } => Self::tlbi_s12_vmall(vmid),
            CommandKind::TlbiNsnhAll => Self::tlbi_nsnh_all(),
            CommandKind::TlbiEl2All => Self::tlbi_el2_all(),
            CommandKind::Sync(cs) => Self::sync(cs),
            CommandKind::Other { opcode } => Self([opcode as u64, 0]),
        }
    }
}

/// The opcode in bits \[7:0\] of dword 0.
const fn op(opcode: u8) -> u64 {
    opcode as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Encodings checked field by field against IHI 0070 §4.
    #[test]
    fn known_encodings() {
        assert_eq!(
            Command::cfgi_ste(StreamId(0x0010), true).0,
            [0x0000_0010_0000_0003, 1]
        );
        assert_eq!(Command::cfgi_all().0, [0x04, 31]);
        assert_eq!(
            Command::tlbi_s12_vmall(Vmid(5)).0,
            [0x0000_0005_0000_0028, 0]
        );
        assert_eq!(Command::tlbi_nsnh_all().0, [0x30, 0]);
        assert_eq!(Command::tlbi_el2_all().0, [0x20, 0]);
        assert_eq!(Command::sync(SyncCompletion::None).0, [0x46, 0]);
        assert_eq!(Command::sync(SyncCompletion::Sev).0, [0x2046, 0]);
        let t = TlbiS2Ipa {
            vmid: Vmid(7),
            ipa: 0x8000_1000,
            leaf: true,
            tg: TG_4K,
            ttl: 3,
            num: 31,
            scale: 4,
        };
        // dword0: NUM[16:12] = 31, SCALE[24:20] = 4, VMID[47:32] = 7, opcode 0x2a.
        // dword1: LEAF[0], TTL[9:8] = 3, TG[11:10] = 1, IPA[51:12].
        assert_eq!(
            Command::tlbi_s2_ipa(t).0,
            [0x0000_0007_0041_F02A, 0x8000_1000 | 0x700 | 1]
        );
        assert_eq!(t.span(), 32 << 16);
        let msi = Command::sync(SyncCompletion::Irq {
            msi_addr: 0x4000_0008,
            msi_data: 0xabcd,
        });
        assert_eq!(msi.0[1], 0x4000_0008);
        assert_eq!(msi.0[0] >> 32, 0xabcd);
    }

    fn any_kind() -> impl Strategy<Value = CommandKind> {
        prop_oneof![
            any::<u32>().prop_map(|s| CommandKind::PrefetchConfig { sid: StreamId(s) }),
            (any::<u32>(), any::<bool>()).prop_map(|(s, leaf)| CommandKind::CfgiSte {
                sid: StreamId(s),
                leaf
            }),
            (any::<u32>(), 0u8..32).prop_map(|(s, range)| CommandKind::CfgiSteRange {
                sid: StreamId(s),
                range
            }),
            (
                any::<u16>(),
                0u64..(1 << 40),
                any::<bool>(),
                0u8..4,
                0u8..4,
                0u8..32,
                0u8..32
            )
                .prop_map(|(v, page, leaf, tg, ttl, num, scale)| {
                    CommandKind::TlbiS2Ipa(TlbiS2Ipa {
                        vmid: Vmid(v),
                        ipa: page << 12,
                        leaf,
                        tg,
                        ttl,
                        num,
                        scale,
                    })
                }),
            any::<u16>().prop_map(|v| CommandKind::TlbiS12Vmall { vmid: Vmid(v) }),
            Just(CommandKind::TlbiNsnhAll),
            Just(CommandKind::TlbiEl2All),
            Just(CommandKind::Sync(SyncCompletion::None)),
            Just(CommandKind::Sync(SyncCompletion::Sev)),
            (0u64..(1 << 50), any::<u32>()).prop_map(|(a, d)| CommandKind::Sync(
                SyncCompletion::Irq {
                    msi_addr: a << 2,
                    msi_data: d
                }
            )),
        ]
    }

    proptest! {
        #[test]
        fn encode_decode_roundtrip(kind in any_kind()) {
            prop_assert_eq!(Command::from(kind).decode(), kind);
        }
    }
}
