//! The read-event call's x2: StreamID, reason and flags of one recorded fault.

/// Read-event call, x2 bits 31:0: StreamID of the faulting device.
pub const EVENT_SID_SHIFT: u32 = 0;
/// Read-event call, x2 bits 39:32: reason (`EVENT_REASON_*`, the SMMUv3 event type number).
pub const EVENT_REASON_SHIFT: u32 = 32;
/// Read-event call, x2 bits 63:48: flags (`EVENT_FLAG_*`).
pub const EVENT_FLAGS_SHIFT: u32 = 48;
/// Event flag: the access was a write (else a read).
pub const EVENT_FLAG_WRITE: u64 = 1 << 0;
/// Event flag: the access was an instruction fetch.
pub const EVENT_FLAG_INSTR: u64 = 1 << 1;
/// Event flag: the access was privileged.
pub const EVENT_FLAG_PRIV: u64 = 1 << 2;
/// Event flag: the fault was raised by stage-2 translation.
pub const EVENT_FLAG_STAGE2: u64 = 1 << 3;
/// Event flag: x1 holds a valid IOVA.
pub const EVENT_FLAG_IOVA_VALID: u64 = 1 << 4;
/// Event reason (SMMUv3 C_BAD_STREAMID): a StreamID outside the stream table.
pub const EVENT_REASON_BAD_STREAMID: u64 = 0x02;
/// Event reason (SMMUv3 C_BAD_STE): an invalid stream table entry.
pub const EVENT_REASON_BAD_STE: u64 = 0x04;
/// Event reason (SMMUv3 F_STREAM_DISABLED): the StreamID is set to abort (blocked domain, unknown device).
pub const EVENT_REASON_STREAM_DISABLED: u64 = 0x06;
/// Event reason (SMMUv3 F_TRANSLATION): no mapping for the IOVA.
pub const EVENT_REASON_TRANSLATION: u64 = 0x10;
/// Event reason (SMMUv3 F_ADDR_SIZE): the IOVA is beyond the domain's input size.
pub const EVENT_REASON_ADDR_SIZE: u64 = 0x11;
/// Event reason (SMMUv3 F_ACCESS): access flag fault.
pub const EVENT_REASON_ACCESS: u64 = 0x12;
/// Event reason (SMMUv3 F_PERMISSION): the mapping forbids the access.
pub const EVENT_REASON_PERMISSION: u64 = 0x13;
/// Event reason: the hyp's SMMU driver saw a global error (GERROR) and recovered.
pub const EVENT_REASON_GERROR: u64 = 0xff;
