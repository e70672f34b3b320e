//! The feature set probed from the ID registers, and the check for what the driver requires.

use core::fmt;

use crate::regs::{Idr0, Idr1, Idr3, Idr5, StallModel, TtEndian};
use crate::{Error, Feature};

/// What the SMMU offers, decoded from `IDR0`/`IDR1`/`IDR3`/`IDR5` (IHI 0070 §6.3.1–§6.3.6).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Features {
    /// Raw `IDR0`.
    pub idr0: Idr0,
    /// Raw `IDR1`.
    pub idr1: Idr1,
    /// Raw `IDR3`.
    pub idr3: Idr3,
    /// Raw `IDR5`.
    pub idr5: Idr5,
    /// Stage-1 translation.
    pub stage1: bool,
    /// Stage-2 translation.
    pub stage2: bool,
    /// AArch64 table format.
    pub aarch64_tables: bool,
    /// Coherent access to tables and queues.
    pub coherent: bool,
    /// 2-level stream tables.
    pub two_level_strtab: bool,
    /// 16-bit VMIDs (else 8-bit).
    pub vmid16: bool,
    /// EL2 translation regime (`TLBI_EL2_*`).
    pub hyp: bool,
    /// Range invalidation (`IDR3.RIL`).
    pub range_invalidation: bool,
    /// Break-before-make level (`IDR3.BBML`).
    pub bbml: u32,
    /// Table walk endianness.
    pub ttendian: TtEndian,
    /// Stall model.
    pub stall_model: StallModel,
    /// StreamID bits.
    pub sid_bits: u32,
    /// SubstreamID bits.
    pub ssid_bits: u32,
    /// log2 of the largest command queue.
    pub cmdq_log2max: u32,
    /// log2 of the largest event queue.
    pub evtq_log2max: u32,
    /// Output address size in bits (`None` for a reserved encoding).
    pub oas_bits: Option<u32>,
    /// Raw `IDR5.OAS` encoding (the largest usable `STE.S2PS`).
    pub oas_encoding: u32,
    /// Stage-2 input address size in bits: the OAS, at least 40 when AArch32 tables exist (IHI 0070 §3.4).
    pub ias_bits: u32,
    /// 4 KiB granule.
    pub gran4k: bool,
    /// 16 KiB granule.
    pub gran16k: bool,
    /// 64 KiB granule.
    pub gran64k: bool,
    /// MSIs.
    pub msi: bool,
    /// `SEV` on `CMD_SYNC` completion.
    pub sev: bool,
    /// PCIe ATS.
    pub ats: bool,
    /// PRI.
    pub pri: bool,
}

impl Features {
    /// Decodes the ID registers.
    pub fn from_idrs(idr0: u32, idr1: u32, idr3: u32, idr5: u32) -> Self {
        let (idr0, idr1, idr3, idr5) = (Idr0(idr0), Idr1(idr1), Idr3(idr3), Idr5(idr5));
        /// IAS is at least 40 bits when AArch32 (LPAE) tables are supported.
        const AARCH32_IAS: u32 = 40;
        let oas_bits = idr5.oas_bits();
        let oas = oas_bits.unwrap_or(0);
        Self {
            idr0,
            idr1,
            idr3,
            idr5,
            stage1: idr0.s1p(),
            stage2: idr0.s2p(),
            aarch64_tables: idr0.ttf_aarch64(),
            coherent: idr0.cohacc(),
            two_level_strtab: idr0.two_level_strtab(),
            vmid16: idr0.vmid16(),
            hyp: idr0.hyp(),
            range_invalidation: idr3.ril(),
            bbml: idr3.bbml(),
            ttendian: idr0.ttendian(),
            stall_model: idr0.stall_model(),
            sid_bits: idr1.sidsize(),
            ssid_bits: idr1.ssidsize(),
            cmdq_log2max: idr1.cmdqs(),
            evtq_log2max: idr1.evtqs(),
            oas_bits,
            oas_encoding: idr5.oas_encoding(),
            ias_bits: if idr0.ttf_aarch32() {
                oas.max(AARCH32_IAS)
            } else {
                oas
            },
            gran4k: idr5.gran4k(),
            gran16k: idr5.gran16k(),
            gran64k: idr5.gran64k(),
            msi: idr0.msi(),
            sev: idr0.sev(),
            ats: idr0.ats(),
            pri: idr0.pri(),
        }
    }

    /// Checks that everything this driver needs is present.
    pub fn check_required(&self) -> Result<(), Error> {
        let missing = |ok: bool, feature| {
            if ok {
                Ok(())
            } else {
                Err(Error::MissingFeature(feature))
            }
        };
        missing(self.stage2, Feature::Stage2)?;
        missing(self.aarch64_tables, Feature::AArch64Tables)?;
        missing(
            matches!(self.ttendian, TtEndian::Mixed | TtEndian::Little),
            Feature::LittleEndian,
        )?;
        missing(self.coherent, Feature::Coherent)?;
        missing(self.gran4k, Feature::Granule4K)?;
        missing(self.oas_bits.is_some(), Feature::OutputAddressSize)?;
        missing(
            !self.idr1.tables_preset() && !self.idr1.queues_preset(),
            Feature::ProgrammableBases,
        )?;
        Ok(())
    }

    /// Largest VMID value.
    pub fn max_vmid(&self) -> u16 {
        if self.vmid16 {
            u16::MAX
        } else {
            u8::MAX as u16
        }
    }
}

impl fmt::Display for Features {
    /// One line for the boot log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yn = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "SMMUv3: S1 {} S2 {} AArch64 {} coherent {} 2-level-strtab {} VMID{} HYP {} RIL {} BBML {} \
             SID {} bits, CMDQ 2^{}, EVTQ 2^{}, OAS {} bits, IAS {} bits, granules {}{}{}, MSI {} SEV {} ATS {} \
             PRI {} stall {:?} (IDR0 {:#010x} IDR1 {:#010x} IDR3 {:#010x} IDR5 {:#010x})",
            yn(self.stage1),
            yn(self.stage2),
            yn(self.aarch64_tables),
            yn(self.coherent),
            yn(self.two_level_strtab),
            if self.vmid16 { 16 } else { 8 },
            yn(self.hyp),
            yn(self.range_invalidation),
            self.bbml,
            self.sid_bits,
            self.cmdq_log2max,
            self.evtq_log2max,
            self.oas_bits.unwrap_or(0),
            self.ias_bits,
            if self.gran4k { "4K " } else { "" },
            if self.gran16k { "16K " } else { "" },
            if self.gran64k { "64K" } else { "" },
            yn(self.msi),
            yn(self.sev),
            yn(self.ats),
            yn(self.pri),
            self.stall_model,
            self.idr0.0,
            self.idr1.0,
            self.idr3.0,
            self.idr5.0,
        )
    }
}
