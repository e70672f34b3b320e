//! Host RAM the ITS reads (command queue, ITTs): the pins, the devices that hold them, their release.

use super::{ItsEmulator, State};

/// A pinned range of host RAM.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) struct Pinned {
    pub(super) pa: u64,
    pub(super) len: u64,
}

/// A device with a live `MAPD`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) struct Device {
    pub(super) id: u32,
    pub(super) itt: Pinned,
    /// EventIDs it has (2^(Size+1)).
    pub(super) events: u64,
}

impl ItsEmulator<'_> {
    /// Releases the ITT pins of commands the ITS has consumed (`creadr` = the real `GITS_CREADR`).
    pub(super) fn release(&self, st: &mut State, creadr: u64) {
        // Saturating: a CREADR the ITS moved oddly must release nothing early, never underflow.
        let consumed = st.submitted.saturating_sub(Self::in_flight(st, creadr));
        st.retired.retain(|&(seq, p)| {
            if seq < consumed {
                self.pins.unpin(self.own, p.pa, p.len);
                false
            } else {
                true
            }
        });
    }
}
