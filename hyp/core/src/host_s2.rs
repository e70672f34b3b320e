//! Host stage-2 construction: identity for host RAM and MMIO, never the hyp carve-out nor SMMU frames.
