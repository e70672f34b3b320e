//! Page ownership and per-page DMA mapping counts.
