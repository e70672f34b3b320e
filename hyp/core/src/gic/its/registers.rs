//! The ITS control frame's registers: offsets, fields, and the `GITS_TYPER` and `GITS_BASERn` decoding.

/// `GITS_CTLR`.
pub const GITS_CTLR: u64 = 0x00;
/// `GITS_IIDR`.
pub const GITS_IIDR: u64 = 0x04;
/// `GITS_TYPER` (64-bit).
pub const GITS_TYPER: u64 = 0x08;
/// `GITS_CBASER` (64-bit).
pub const GITS_CBASER: u64 = 0x80;
/// `GITS_CWRITER` (64-bit).
pub const GITS_CWRITER: u64 = 0x88;
/// `GITS_CREADR` (64-bit).
pub const GITS_CREADR: u64 = 0x90;
/// `GITS_BASER0` (64-bit; `GITS_BASERn` at + 8 n).
pub const GITS_BASER0: u64 = 0x100;
/// Number of `GITS_BASERn` registers.
pub const BASER_COUNT: usize = 8;

/// `GITS_CTLR.Enabled`.
pub const CTLR_ENABLED: u32 = 1 << 0;
/// `GITS_CTLR.Quiescent`.
pub const CTLR_QUIESCENT: u32 = 1 << 31;
/// `GITS_TYPER` bits of GICv4 features the host is not offered: `Virtual` (1), `VMOVP` (37), `VSGI` (39),
/// `SVPET` (42:41).
pub const TYPER_HIDDEN: u64 = (1 << 1) | (1 << 37) | (1 << 39) | (0b11 << 41);
/// `GITS_TYPER.PTA`: collection targets are redistributor physical addresses (else processor numbers).
pub const TYPER_PTA: u64 = 1 << 19;
/// `GITS_CBASER`/`GITS_BASERn` `Valid`.
pub const BASER_VALID: u64 = 1 << 63;
/// `GITS_BASERn.Indirect`.
pub const BASER_INDIRECT: u64 = 1 << 62;
/// `GITS_BASERn.Type`: device table.
pub const BASER_TYPE_DEVICE: u64 = 1;
/// `GITS_BASERn.Type`: collection table.
pub const BASER_TYPE_COLLECTION: u64 = 4;
/// Physical address bits 51:12 of `GITS_CBASER`.
pub(super) const CBASER_PA_MASK: u64 = ((1 << 52) - 1) & !0xfff;
/// `GITS_CBASER.Size` (4 KiB pages minus one).
pub(super) const CBASER_SIZE_MASK: u64 = 0xff;
/// What the shadow queue's `GITS_CBASER` asks for besides its address and size: inner and outer
/// read/write-allocate write-back (`InnerCache` = 7, `OuterCache` = 0: same as inner), inner shareable.
pub(super) const CBASER_ATTRS: u64 = (7 << 59) | (1 << 10);
/// `GITS_CBASER.Shareability`.
pub(super) const CBASER_SHAREABILITY: u64 = 0b11 << 10;
/// The offset field of `GITS_CWRITER`/`GITS_CREADR` (bits 19:5).
pub(super) const QUEUE_OFFSET_MASK: u64 = 0xf_ffe0;
/// `GITS_CWRITER.Retry`.
pub(super) const CWRITER_RETRY: u64 = 1;
/// `GITS_BASERn` physical address field (bits 47:12; with 64 KiB pages bits 15:12 hold PA bits 51:48).
pub(super) const BASER_PA_FIELD: u64 = 0x0000_ffff_ffff_f000;

/// What `GITS_TYPER` says about the ITS.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ItsParams {
    /// The real `GITS_TYPER`.
    pub typer: u64,
    /// Bytes per ITT entry.
    pub itt_entry_size: u64,
    /// EventID bits.
    pub id_bits: u32,
    /// DeviceID bits.
    pub dev_bits: u32,
    /// Collection IDs the ITS holds without a table (`HCC`).
    pub hcc: u64,
    /// ICID bits.
    pub cid_bits: u32,
    /// Targets are physical addresses.
    pub pta: bool,
}

impl ItsParams {
    /// Decodes `GITS_TYPER`.
    pub fn from_typer(typer: u64) -> Self {
        Self {
            typer,
            itt_entry_size: ((typer >> 4) & 0xf) + 1,
            id_bits: ((typer >> 8) & 0x1f) as u32 + 1,
            dev_bits: ((typer >> 13) & 0x1f) as u32 + 1,
            hcc: (typer >> 24) & 0xff,
            cid_bits: if typer & (1 << 36) != 0 {
                ((typer >> 32) & 0xf) as u32 + 1
            } else {
                16
            },
            pta: typer & TYPER_PTA != 0,
        }
    }
}

/// A `GITS_BASERn` value's table: (physical address, page size, bytes).
pub(super) fn baser_table(v: u64) -> (u64, u64, u64) {
    let (pa, page) = match (v >> 8) & 3 {
        0 => (v & 0xffff_ffff_f000, 4096),
        1 => (v & 0xffff_ffff_c000, 16384),
        _ => ((v & 0xffff_ffff_0000) | ((v >> 12) & 0xf) << 48, 65536),
    };
    (pa, page, ((v & 0xff) + 1) * page)
}

/// `v` with its address field set to `pa` (encoded for the page size `v` names).
pub(super) fn baser_with_pa(v: u64, pa: u64) -> u64 {
    let field = match (v >> 8) & 3 {
        0 | 1 => pa & 0xffff_ffff_f000,
        _ => (pa & 0xffff_ffff_0000) | ((pa >> 48) & 0xf) << 12,
    };
    (v & !BASER_PA_FIELD) | field
}
