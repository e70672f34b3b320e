//! Helpers shared by the integration tests.

#![allow(dead_code, reason = "each test file uses a different subset")]

use dtoolkit::fdt::Fdt;
use dtoolkit::model::DeviceTree;

/// QEMU virt, `-smp 2 -m 1G`.
pub const SMP2_1G: &[u8] = include_bytes!("../data/virt-smp2-1g.dtb");

/// The fixture as an editable model.
pub fn model() -> DeviceTree {
    DeviceTree::from_fdt(&Fdt::new(SMP2_1G).unwrap())
}

/// The fixture after `f`, serialised (packed: a few KiB, so byte-level fuzzing hits structure).
pub fn edited(f: impl FnOnce(&mut DeviceTree)) -> Vec<u8> {
    let mut m = model();
    f(&mut m);
    m.to_dtb()
}

/// Writes FDT blobs token by token, including ones dtoolkit's model cannot express (duplicate
/// sibling names, nesting deeper than a recursive writer survives).
#[derive(Default)]
pub struct RawFdt {
    structure: Vec<u8>,
    strings: Vec<u8>,
}

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_END: u32 = 9;
const HEADER_SIZE: usize = 40;
const RSVMAP_SIZE: usize = 16;

impl RawFdt {
    fn word(&mut self, w: u32) {
        self.structure.extend_from_slice(&w.to_be_bytes());
    }

    fn pad(&mut self) {
        while !self.structure.len().is_multiple_of(4) {
            self.structure.push(0);
        }
    }

    /// FDT_BEGIN_NODE `name`.
    pub fn begin(&mut self, name: &str) -> &mut Self {
        self.word(FDT_BEGIN_NODE);
        self.structure.extend_from_slice(name.as_bytes());
        self.structure.push(0);
        self.pad();
        self
    }

    /// FDT_END_NODE.
    pub fn end(&mut self) -> &mut Self {
        self.word(FDT_END_NODE);
        self
    }

    /// FDT_PROP `name` = `value`.
    pub fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let nameoff = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        self.word(FDT_PROP);
        self.word(value.len() as u32);
        self.word(nameoff);
        self.structure.extend_from_slice(value);
        self.pad();
        self
    }

    /// A property of big-endian cells.
    pub fn cells(&mut self, name: &str, cells: &[u32]) -> &mut Self {
        let bytes: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.prop(name, &bytes)
    }

    /// The finished blob (header, empty reservation map, structure + FDT_END, strings).
    pub fn finish(&mut self) -> Vec<u8> {
        self.word(FDT_END);
        let off_struct = HEADER_SIZE + RSVMAP_SIZE;
        let off_strings = off_struct + self.structure.len();
        let total = off_strings + self.strings.len();
        let mut out = Vec::with_capacity(total);
        for w in [
            0xd00d_feed,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            HEADER_SIZE as u32,
            17,
            16,
            0,
            self.strings.len() as u32,
            self.structure.len() as u32,
        ] {
            out.extend_from_slice(&w.to_be_bytes());
        }
        out.extend_from_slice(&[0; RSVMAP_SIZE]);
        out.extend_from_slice(&self.structure);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// A minimal valid machine: root 2/2 cells, one memory node, one CPU, and `extra` inside the root.
pub fn minimal(extra: impl FnOnce(&mut RawFdt)) -> Vec<u8> {
    let mut f = RawFdt::default();
    f.begin("")
        .cells("#address-cells", &[2])
        .cells("#size-cells", &[2]);
    f.begin("memory@40000000")
        .prop("device_type", b"memory\0")
        .cells("reg", &[0, 0x4000_0000, 0, 0x1000_0000])
        .end();
    f.begin("cpus")
        .cells("#address-cells", &[1])
        .cells("#size-cells", &[0]);
    f.begin("cpu@0")
        .prop("device_type", b"cpu\0")
        .cells("reg", &[0])
        .end();
    f.end();
    extra(&mut f);
    f.end();
    f.finish()
}
