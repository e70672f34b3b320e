//! DMA domains: stage-2 translations for devices, VMID allocation.
