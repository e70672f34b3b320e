//! SMMUv3 register map, command/STE encoding, queue arithmetic and the EL2 driver, host-testable.
//!
//! The driver ([`Smmu`]) is written against two traits the caller implements:
//! - [`RegisterAccess`]: 32/64-bit reads and writes at byte offsets of the SMMU's register frame (real MMIO in
//!   `warden-el2`; the behavioural `fake::FakeSmmu` (feature `fake`) in tests);
//! - [`DmaMemory`]: zeroed, aligned memory for the stream table and queues, named by physical address, with
//!   64-bit reads and writes (at EL2, VA == PA and the accesses are volatile).
//!
//! ```
//! # #[cfg(feature = "fake")] {
//! use warden_smmu::fake::{FakeMemory, FakeSmmu};
//! use warden_smmu::{Config, LeafSize, S2Config, S2Invalidation, Smmu, Ste, StreamId, Vmid};
//!
//! let mem = FakeMemory::new();
//! let regs = FakeSmmu::qemu(mem.clone());
//! let mut smmu = Smmu::init(regs, mem.clone(), Config::default()).unwrap();
//! // Point StreamID 8 at a stage-2 table (a real caller builds one first).
//! let root = mem.alloc(4096, 4096);
//! smmu.write_ste(StreamId(8), &Ste::stage2(&S2Config::new_4k(Vmid(1), root, 40, 1, 4))).unwrap();
//! // After clearing PTEs: one range TLBI + one CMD_SYNC.
//! smmu.invalidate_s2(&S2Invalidation {
//!     vmid: Vmid(1), iova: 0x10_0000, size: 0x20_0000, leaf_size: LeafSize::Page4K, leaf_only: true,
//! }).unwrap();
//! # }
//! ```

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

pub mod cmd;
pub mod driver;
pub mod event;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod queue;
pub mod regs;
pub mod ste;
mod types;

pub use cmd::{Command, CommandKind, LeafSize, RangeMode, S2Invalidation, SyncCompletion};
pub use driver::{
    Batch, Config, Counters, Features, IssueStep, SharedCmdq, Smmu, SyncStep, SyncTicket,
};
pub use event::{Event, EventKind};
pub use regs::{CmdqConsReader, CmdqError, RegisterAccess};
pub use ste::{S2Config, S2ConfigError, Ste, SteKind};
pub use types::{MAX_ADDR_BITS, StreamId, Vmid};

/// Memory for the SMMU's own structures (stream table, queues), shared with the device.
///
/// Implementations hand out memory that stays allocated, exclusively for the driver, for as long as the
/// implementation value lives (the driver never frees: its structures live as long as the SMMU is enabled).
/// Accesses must be single-copy-atomic 64-bit accesses that the compiler cannot elide or merge (volatile at
/// EL2), because the SMMU reads STEs and commands and writes event records concurrently. The SMMU must be
/// coherent with the CPU (`IDR0.COHACC`, required by [`Smmu::init`]), so no cache maintenance is needed.
pub trait DmaMemory {
    /// The [`DmaWriter`] of this memory.
    type Writer: DmaWriter;

    /// Allocates `size` bytes of zeroed memory aligned to `align` (a power of two, at least 64) and returns its
    /// physical address, or `None` when out of memory.
    fn alloc_zeroed(&mut self, size: usize, align: usize) -> Option<u64>;
    /// Reads the 64-bit word at physical address `pa` (8-byte aligned, inside an allocation).
    fn read64(&mut self, pa: u64) -> u64;
    /// Writes the 64-bit word at physical address `pa` (8-byte aligned, inside an allocation).
    fn write64(&mut self, pa: u64, value: u64);
    /// Writes `values` to consecutive 64-bit words from `pa` (8-byte aligned; all inside one allocation), in
    /// order, each as [`DmaMemory::write64`] would: the bulk form for filling stream table entries. The
    /// default calls `write64` for each word; an implementation may check the range once instead.
    fn write64s(&mut self, pa: u64, values: &[u64]) {
        for (i, &value) in values.iter().enumerate() {
            self.write64(pa + 8 * i as u64, value);
        }
    }
    /// A [`DmaWriter`] for this memory (how CPUs write commands into the queue without the driver's lock).
    fn writer(&self) -> Self::Writer;
}

/// Writes to the driver's memory through a shared reference, from any CPU at any time: each CPU writes its
/// commands into the command queue with it ([`SharedCmdq::issue`]), without the driver's lock. Same access
/// rules as [`DmaMemory::write64`] (single-copy-atomic, not elided), into allocations of the memory it came from.
pub trait DmaWriter: Send + Sync {
    /// Writes the 64-bit word at physical address `pa` (8-byte aligned, inside an allocation).
    fn write64(&self, pa: u64, value: u64);
}

/// What the driver was waiting for when it gave up.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Wait {
    /// `GBPA.Update` to clear.
    GbpaUpdate,
    /// `CR0ACK` to match `CR0`.
    Cr0Ack,
    /// `IRQ_CTRLACK` to match `IRQ_CTRL`.
    IrqCtrlAck,
    /// `CMDQ_CONS` to pass a `CMD_SYNC`.
    CmdSync,
    /// Free space in the command queue.
    CmdqSpace,
}

/// A feature the driver needs and the SMMU lacks.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Feature {
    /// Stage-2 translation (`IDR0.S2P`).
    Stage2,
    /// AArch64 translation tables (`IDR0.TTF`).
    AArch64Tables,
    /// Little-endian table walks (`IDR0.TTENDIAN` mixed or LE).
    LittleEndian,
    /// Coherent table/queue access (`IDR0.COHACC`): the driver does no cache maintenance.
    Coherent,
    /// The 4 KiB translation granule (`IDR5.GRAN4K`).
    Granule4K,
    /// A known output address size (`IDR5.OAS`).
    OutputAddressSize,
    /// Software-placed tables and queues (`IDR1.TABLES_PRESET`/`QUEUES_PRESET` clear).
    ProgrammableBases,
    /// A 2-level stream table (`IDR0.ST_LEVEL`) for a StreamID space too large for a linear one.
    TwoLevelStreamTable,
}

/// Errors of the SMMU driver. Every failure of the device becomes one of these; nothing panics or hangs.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum Error {
    /// A bounded poll ran out.
    #[error("SMMU timed out waiting for {0:?}")]
    Timeout(Wait),
    /// A required feature is missing (boot error).
    #[error("SMMU lacks a required feature: {0:?}")]
    MissingFeature(Feature),
    /// [`DmaMemory::alloc_zeroed`] failed for this many bytes.
    #[error("out of memory allocating {0} bytes for the SMMU")]
    OutOfMemory(usize),
    /// The StreamID is beyond the stream table.
    #[error("StreamID {0:#x} out of range")]
    InvalidStreamId(u32),
    /// The VMID does not fit the SMMU's VMID width.
    #[error("VMID {0} out of range")]
    InvalidVmid(u16),
    /// The stage-2 parameters cannot be programmed.
    #[error("invalid stage-2 configuration: {0:?}")]
    InvalidS2Config(S2ConfigError),
    /// The SMMU rejected a command (`GERROR.CMDQ_ERR`); it was skipped and the rest of the batch completed.
    #[error("SMMU rejected command {opcode:#04x} ({error:?})")]
    CommandError {
        /// Opcode of the offending command.
        opcode: u8,
        /// `CMDQ_CONS.ERR` cause.
        error: CmdqError,
    },
    /// Another global error (`GERROR` bits other than `CMDQ_ERR`) was raised and acknowledged.
    #[error("SMMU global error {0:#x}")]
    GlobalError(u32),
}
