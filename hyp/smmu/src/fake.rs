//! A behavioural, register-level fake SMMUv3 and fake DMA memory, for host tests of this crate and its users
//! (feature `fake`).
//!
//! [`FakeMemory`] hands out memory named by physical addresses (synthetic ones from QEMU's RAM base, or the
//! host addresses, as EL2's identity map); [`FakeSmmu`] implements [`crate::RegisterAccess`] with the behaviour the driver relies on: the
//! `GBPA.Update`, `CR0ACK` and `IRQ_CTRLACK` handshakes; a command queue consumed from memory on every
//! `CMDQ_PROD` write (wrap handled), every executed command recorded; `CMD_SYNC` completion by `CMDQ_CONS`
//! moving past it; a TLB keyed by (VMID, IPA page) that the `TLBI_*` commands invalidate; an STE cache that the
//! `CFGI_*` commands invalidate; stream table fetches (linear and 2-level) and stage-2 walks for
//! [`FakeSmmu::translate`], with fault records written to the event queue. Failure injection: a `CMD_SYNC`
//! that never completes, a slow (or stopped) consumer, stuck handshakes, illegal commands (`GERROR.CMDQ_ERR`),
//! and event queue overflow (by filling it).

mod memory;
mod smmu;
mod translate;

pub use memory::{FAKE_RAM_BASE, FakeMemory};
pub use smmu::{FakeCmdqCons, FakeSmmu, RegAccess};
pub use translate::{Perm, Translation};

/// QEMU 10.0.2 virt machine ID register values (`/work/shared/notes/platform.md`).
pub mod qemu {
    /// `IDR0`: S1P, S2P, AArch64 tables, COHACC, ASID16, VMID16, LE walks, no stall, 2-level stream table.
    pub const IDR0: u32 = 0x0d44_101b;
    /// `IDR1`: SIDSIZE 16, CMDQS 19, EVENTQS 19.
    pub const IDR1: u32 = 0x0273_0010;
    /// `IDR3`: RIL, HAD, XNX, BBML 2.
    pub const IDR3: u32 = 0x0000_1414;
    /// `IDR5`: OAS 44 bits, 4K/16K/64K granules.
    pub const IDR5: u32 = 0x74;
    /// `GBPA` at reset: bypass (ABORT clear), incoming shareability.
    pub const GBPA: u32 = 0x1000;
}
