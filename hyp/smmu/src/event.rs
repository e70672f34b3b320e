//! Event queue records (IHI 0070 §7.3 "Event records") and the bounded ring the driver keeps them in.

use crate::regs::field64;
use crate::types::StreamId;

/// Size of one event record in bytes.
pub const EVT_SIZE: usize = 32;
/// Size of one event record in 64-bit words.
pub const EVT_DWORDS: usize = EVT_SIZE / 8;

/// Event type codes, bits \[7:0\] of dword 0 (IHI 0070 §7.3, Table 7-3).
pub mod event_id {
    /// `F_UUT`: unsupported upstream transaction.
    pub const F_UUT: u8 = 0x01;
    /// `C_BAD_STREAMID`: StreamID out of range of the stream table.
    pub const C_BAD_STREAMID: u8 = 0x02;
    /// `F_STE_FETCH`: abort fetching an STE.
    pub const F_STE_FETCH: u8 = 0x03;
    /// `C_BAD_STE`: invalid or malformed STE.
    pub const C_BAD_STE: u8 = 0x04;
    /// `F_STREAM_DISABLED`.
    pub const F_STREAM_DISABLED: u8 = 0x06;
    /// `F_TRANSL_FORBIDDEN`.
    pub const F_TRANSL_FORBIDDEN: u8 = 0x07;
    /// `C_BAD_SUBSTREAMID`.
    pub const C_BAD_SUBSTREAMID: u8 = 0x08;
    /// `F_CD_FETCH`.
    pub const F_CD_FETCH: u8 = 0x09;
    /// `C_BAD_CD`.
    pub const C_BAD_CD: u8 = 0x0A;
    /// `F_WALK_EABT`: external abort during a table walk.
    pub const F_WALK_EABT: u8 = 0x0B;
    /// `F_TRANSLATION`: no valid descriptor.
    pub const F_TRANSLATION: u8 = 0x10;
    /// `F_ADDR_SIZE`: address size fault.
    pub const F_ADDR_SIZE: u8 = 0x11;
    /// `F_ACCESS`: access flag fault.
    pub const F_ACCESS: u8 = 0x12;
    /// `F_PERMISSION`: permission fault.
    pub const F_PERMISSION: u8 = 0x13;
    /// `F_TLB_CONFLICT`.
    pub const F_TLB_CONFLICT: u8 = 0x20;
    /// `F_CFG_CONFLICT`.
    pub const F_CFG_CONFLICT: u8 = 0x21;
}

/// What went wrong, from the event type.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum EventKind {
    /// `F_TRANSLATION`.
    Translation,
    /// `F_ADDR_SIZE`.
    AddressSize,
    /// `F_ACCESS`.
    Access,
    /// `F_PERMISSION`.
    Permission,
    /// `C_BAD_STREAMID`.
    BadStreamId,
    /// `C_BAD_STE`.
    BadSte,
    /// `F_STE_FETCH`.
    SteFetch,
    /// `F_WALK_EABT`.
    WalkAbort,
    /// `F_UUT`.
    UnsupportedTransaction,
    /// Any other type (raw code in [`Event::id`]).
    Other,
}

impl EventKind {
    /// Classifies an event type code.
    pub const fn from_id(id: u8) -> Self {
        match id {
            event_id::F_TRANSLATION => Self::Translation,
            event_id::F_ADDR_SIZE => Self::AddressSize,
            event_id::F_ACCESS => Self::Access,
            event_id::F_PERMISSION => Self::Permission,
            event_id::C_BAD_STREAMID => Self::BadStreamId,
            event_id::C_BAD_STE => Self::BadSte,
            event_id::F_STE_FETCH => Self::SteFetch,
            event_id::F_WALK_EABT => Self::WalkAbort,
            event_id::F_UUT => Self::UnsupportedTransaction,
            _ => Self::Other,
        }
    }

    /// Whether this is a translation-stage fault (the record carries an input address and an IPA).
    pub const fn is_translation_fault(self) -> bool {
        matches!(
            self,
            Self::Translation
                | Self::AddressSize
                | Self::Access
                | Self::Permission
                | Self::WalkAbort
        )
    }
}

// Record layout (IHI 0070 §7.3.12 F_TRANSLATION, shared by the fault records).
const ID_WIDTH: u32 = 8;
const SSV: u64 = 1 << 11;
const SSID_SHIFT: u32 = 12;
const SSID_WIDTH: u32 = 20;
const SID_SHIFT: u32 = 32;
const STALL: u64 = 1 << 31;
const PNU: u64 = 1 << 33;
const IND: u64 = 1 << 34;
const RNW: u64 = 1 << 35;
const S2: u64 = 1 << 39;
const CLASS_SHIFT: u32 = 40;

/// A decoded event record.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Event {
    /// Classification of [`Event::id`].
    pub kind: EventKind,
    /// Raw event type code (dword 0 bits \[7:0\]).
    pub id: u8,
    /// StreamID of the faulting transaction (dword 0 bits \[63:32\]).
    pub sid: StreamId,
    /// SubstreamID when `SSV` (bit 11) is set.
    pub ssid: Option<u32>,
    /// Input address of the transaction (dword 2) for translation faults, else 0.
    pub input_addr: u64,
    /// IPA of a stage-2 fault (dword 3 bits \[51:12\]) for translation faults, else 0.
    pub ipa: u64,
    /// The transaction was a read (`RnW`, dword 1 bit 35); only meaningful for translation faults.
    pub read: bool,
    /// Stage-2 fault (`S2`, dword 1 bit 39).
    pub stage2: bool,
    /// `CLASS` (dword 1 bits \[41:40\]): 0 = CD fetch, 1 = table walk, 2 = input address.
    pub class: u8,
    /// Instruction fetch (`InD`, bit 34).
    pub instruction: bool,
    /// Privileged (`PnU`, bit 33).
    pub privileged: bool,
    /// The transaction is stalled (`Stall`, bit 31; never, as this driver programs terminate).
    pub stall: bool,
    /// The raw record.
    pub raw: [u64; EVT_DWORDS],
}

impl Event {
    /// Decodes a raw record.
    pub const fn decode(raw: [u64; EVT_DWORDS]) -> Self {
        let id = field64(raw[0], 0, ID_WIDTH) as u8;
        let kind = EventKind::from_id(id);
        let fault = kind.is_translation_fault();
        Self {
            kind,
            id,
            sid: StreamId(field64(raw[0], SID_SHIFT, 32) as u32),
            ssid: if raw[0] & SSV != 0 {
                Some(field64(raw[0], SSID_SHIFT, SSID_WIDTH) as u32)
            } else {
                None
            },
            input_addr: if fault { raw[2] } else { 0 },
            ipa: if fault {
                raw[3] & crate::regs::mask64(51, 12)
            } else {
                0
            },
            read: fault && raw[1] & RNW != 0,
            stage2: fault && raw[1] & S2 != 0,
            class: if fault {
                field64(raw[1], CLASS_SHIFT, 2) as u8
            } else {
                0
            },
            instruction: fault && raw[1] & IND != 0,
            privileged: fault && raw[1] & PNU != 0,
            stall: fault && raw[1] & STALL != 0,
            raw,
        }
    }

    /// Encodes a fault record the way an SMMU writes it (used by the fake; fields as [`Event::decode`] reads).
    pub const fn encode_fault(
        id: u8,
        sid: StreamId,
        input_addr: u64,
        ipa: u64,
        read: bool,
        class: u8,
    ) -> [u64; 4] {
        [
            id as u64 | (sid.0 as u64) << SID_SHIFT,
            if read { RNW } else { 0 } | S2 | ((class as u64 & 3) << CLASS_SHIFT),
            input_addr,
            ipa & crate::regs::mask64(51, 12),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_translation_fault() {
        let raw = Event::encode_fault(
            event_id::F_TRANSLATION,
            StreamId(0x18),
            0x1234_5678,
            0x1234_5000,
            true,
            2,
        );
        let e = Event::decode(raw);
        assert_eq!(e.kind, EventKind::Translation);
        assert_eq!(e.sid, StreamId(0x18));
        assert_eq!(
            (e.input_addr, e.ipa, e.read, e.stage2, e.class),
            (0x1234_5678, 0x1234_5000, true, true, 2)
        );
        assert_eq!(e.ssid, None);
        let e = Event::decode([
            event_id::C_BAD_STE as u64 | 7 << 32 | SSV | 5 << 12,
            u64::MAX,
            9,
            9,
        ]);
        assert_eq!(
            (e.kind, e.sid, e.ssid, e.input_addr, e.read),
            (EventKind::BadSte, StreamId(7), Some(5), 0, false)
        );
        assert_eq!(Event::decode([0x13, 0, 0, 0]).kind, EventKind::Permission);
        assert_eq!(Event::decode([0x12, 0, 0, 0]).kind, EventKind::Access);
        assert_eq!(Event::decode([0x11, 0, 0, 0]).kind, EventKind::AddressSize);
        assert_eq!(Event::decode([0x7f, 0, 0, 0]).kind, EventKind::Other);
    }
}
