/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The Warden hypercall ABI for the host shim.
 *
 * GENERATED from hyp/abi (crate warden-abi) by `cargo xtask gen-header`. DO NOT EDIT.
 * Documentation: docs/abi.md.
 */
#ifndef WARDEN_ABI_H
#define WARDEN_ABI_H

/* ---- ABI version, names ---- */
#define WARDEN_ABI_VERSION_MAJOR 1
#define WARDEN_ABI_VERSION_MINOR 2
#define WARDEN_MODULE_NAME "warden"
#define WARDEN_DT_COMPATIBLE "warden,smmu-v3-pv"
/* UUID 7f71637a-ecfe-47e6-b67a-d3a1af022896, as the Call UID query returns it in w0..w3 */
#define WARDEN_UUID_W0 0x7a63717fU
#define WARDEN_UUID_W1 0xe647feecU
#define WARDEN_UUID_W2 0xa1d37ab6U
#define WARDEN_UUID_W3 0x962802afU

/* ---- SMCCC function IDs ---- */
#define WARDEN_SMCCC_VENDOR_HYP_CALL_UID 0x8600ff01U /* SMC32: UUID in w0..w3 */
#define WARDEN_SMCCC_VENDOR_HYP_REVISION 0x8600ff03U /* SMC32: w0 = major, w1 = minor */
#define WARDEN_FID_BASE 0xc6000000U /* SMC64 fast call, owner 6 (vendor hyp) */
/* Version and features: x1 = version and feature bits, x2 = page sizes, x3 = limits. */
#define WARDEN_FN_VERSION 0x0000
#define WARDEN_FID_VERSION 0xc6000000U
/* Allocate a domain of kind x1 (`DomainKind`): x1 = new domain ID. */
#define WARDEN_FN_DOMAIN_ALLOC 0x0001
#define WARDEN_FID_DOMAIN_ALLOC 0xc6000001U
/* Free domain x1 (must not be attached to any StreamID). */
#define WARDEN_FN_DOMAIN_FREE 0x0002
#define WARDEN_FID_DOMAIN_FREE 0xc6000002U
/* Attach StreamID x1 to domain x2 (replaces its current domain). */
#define WARDEN_FN_ATTACH 0x0003
#define WARDEN_FID_ATTACH 0xc6000003U
/* Detach StreamID x1: it goes back to the host-identity domain. */
#define WARDEN_FN_DETACH 0x0004
#define WARDEN_FID_DETACH 0xc6000004U
/* Map x5 pages of size x4 at IOVA x2 to PA x3 in domain x1 with prot x6: x1 = bytes mapped. */
#define WARDEN_FN_MAP_PAGES 0x0005
#define WARDEN_FID_MAP_PAGES 0xc6000005U
/* Unmap x4 pages of size x3 at IOVA x2 in domain x1: x1 = bytes unmapped. */
#define WARDEN_FN_UNMAP_PAGES 0x0006
#define WARDEN_FID_UNMAP_PAGES 0xc6000006U
/* Translate IOVA x2 in domain x1: x1 = PA. */
#define WARDEN_FN_IOVA_TO_PHYS 0x0007
#define WARDEN_FID_IOVA_TO_PHYS 0xc6000007U
/* Read one fault record: x0 = 1 (record in x1, x2) or 0 (none); x3 = records lost so far. */
#define WARDEN_FN_READ_EVENT 0x0008
#define WARDEN_FID_READ_EVENT 0xc6000008U
/* Donate x2 pages at PA x1 to the page-table pool. */
#define WARDEN_FN_DONATE 0x0009
#define WARDEN_FID_DONATE 0xc6000009U
/* Reclaim x2 donated, unused pages at PA x1. */
#define WARDEN_FN_RECLAIM 0x000a
#define WARDEN_FID_RECLAIM 0xc600000aU
/* Read statistic x1 (`Stat`): x1 = value. */
#define WARDEN_FN_STAT 0x000b
#define WARDEN_FID_STAT 0xc600000bU
/*
 * Map x3 descriptors at host PA x2 in domain x1 with prot x4, all or nothing: x1 = entries, x2 =
 * bytes.
 */
#define WARDEN_FN_MAP_BATCH 0x000c
#define WARDEN_FID_MAP_BATCH 0xc600000cU
/* Unmap x3 descriptors at host PA x2 in domain x1, one invalidation: x1 = entries, x2 = bytes. */
#define WARDEN_FN_UNMAP_BATCH 0x000d
#define WARDEN_FID_UNMAP_BATCH 0xc600000dU

/* ---- Results: x0 = WARDEN_SUCCESS or a negative WARDEN_E_* code ---- */
#define WARDEN_SUCCESS 0
/* Unknown function ID or unsupported call (SMCCC NOT_SUPPORTED). */
#define WARDEN_E_NOT_SUPPORTED (-1)
/* A reserved argument value or reserved bits set (e.g. a field wider than it may be). */
#define WARDEN_E_INVALID_PARAMETER (-3)
/* The domain ID names no live domain (never allocated, freed, or stale). */
#define WARDEN_E_BAD_DOMAIN (-4)
/* The StreamID is not one the device tree's iommu-map gives this SMMU. */
#define WARDEN_E_BAD_SID (-5)
/* An IOVA, PA or size is not aligned to the page size it goes with. */
#define WARDEN_E_MISALIGNED (-6)
/* A size computation or an address range wraps around 2^64. */
#define WARDEN_E_OVERFLOW (-7)
/* The IOVA range does not fit in the domain's input address size. */
#define WARDEN_E_OUT_OF_RANGE_IOVA (-8)
/* The PA range does not fit in the SMMU's output address size. */
#define WARDEN_E_OUT_OF_RANGE_PA (-9)
/* The PA range is not host memory (a hole, or MMIO that devices may not reach). */
#define WARDEN_E_NOT_HOST_MEMORY (-10)
/* The PA range includes memory that belongs to the hypervisor. */
#define WARDEN_E_HYP_MEMORY (-11)
/* The PA range includes memory the host donated to the hypervisor. */
#define WARDEN_E_DONATED_MEMORY (-12)
/*
 * The object is in use: a domain still attached, or memory still DMA-mapped or used as page table.
 */
#define WARDEN_E_BUSY (-13)
/* The page-table pool is short: x1 = how many more pages the host should donate. */
#define WARDEN_E_NOMEM (-14)
/* Part of the IOVA range is not mapped (nothing was changed). */
#define WARDEN_E_NOT_MAPPED (-15)
/* Part of the IOVA range is already mapped (nothing was changed). */
#define WARDEN_E_ALREADY_MAPPED (-16)
/* The prot argument has unknown bits, no access bit, or does not fit the memory type. */
#define WARDEN_E_BAD_PROT (-17)
/* The page size is not one of the supported sizes (4 KiB, 2 MiB, 1 GiB). */
#define WARDEN_E_BAD_PGSIZE (-18)
/* The SMMU did not complete a command in time (the hyp keeps the affected memory pinned). */
#define WARDEN_E_TIMEOUT (-19)
/* The domain kind is not one of `DomainKind`. */
#define WARDEN_E_BAD_KIND (-20)
/* The page is not donated memory (reclaim of something never donated). */
#define WARDEN_E_NOT_DONATED (-21)
/* A page's DMA mapping count would overflow. */
#define WARDEN_E_COUNT_OVERFLOW (-22)
/* A page count of zero, or larger than the call allows. */
#define WARDEN_E_BAD_COUNT (-23)
/* The SMMU reported an error other than a timeout. */
#define WARDEN_E_HW_ERROR (-24)
/* The statistic ID is unknown. */
#define WARDEN_E_BAD_STAT (-25)
/* The host-identity domain cannot be freed, mapped or unmapped by the host. */
#define WARDEN_E_IMMUTABLE_DOMAIN (-26)
/* The operation needs a paging domain (map, unmap, iova_to_phys on a blocked domain). */
#define WARDEN_E_WRONG_DOMAIN_KIND (-27)
/* A hypervisor limit would be exceeded (number of domains, donated pages). */
#define WARDEN_E_LIMIT (-28)
/* An internal invariant check failed; the call changed nothing it could undo. Please report. */
#define WARDEN_E_INTERNAL (-29)

/* ---- Domains ---- */
/* A translating domain: starts empty, filled with map/unmap. */
#define WARDEN_DOMAIN_PAGING 0
/* A blocking domain: every DMA of an attached StreamID aborts (and is reported). */
#define WARDEN_DOMAIN_BLOCKED 1
#define WARDEN_DOMAIN_ID_HOST_IDENTITY 0 /* built in, fixed */

/* ---- prot bits (same values as Linux's IOMMU_*) ---- */
#define WARDEN_PROT_READ 1
#define WARDEN_PROT_WRITE 2
#define WARDEN_PROT_CACHE 4
#define WARDEN_PROT_NOEXEC 8
#define WARDEN_PROT_MMIO 16 /* MSI doorbells only; not with CACHE */
#define WARDEN_PROT_PRIV 32 /* accepted, ignored */
#define WARDEN_PROT_ALL 63

/* ---- Page sizes ---- */
#define WARDEN_PGSIZE_4K 0x1000ULL
#define WARDEN_PGSIZE_2M 0x200000ULL
#define WARDEN_PGSIZE_1G 0x40000000ULL
#define WARDEN_PGSIZE_BITMAP 0x40201000ULL
#define WARDEN_PAGE_SIZE 0x1000ULL

/* ---- VERSION call: x1 = version | features, x2 = WARDEN_PGSIZE_BITMAP, x3 = limits ---- */
#define WARDEN_VERSION_MINOR_SHIFT 0 /* 16 bits */
#define WARDEN_VERSION_MAJOR_SHIFT 16 /* 16 bits */
#define WARDEN_VERSION_FEATURES_SHIFT 32 /* 32 bits */
#define WARDEN_FEAT_RANGE_INVALIDATION 0x1ULL
#define WARDEN_FEAT_EVENTS 0x2ULL
#define WARDEN_FEAT_SPLIT_UNMAP 0x4ULL
#define WARDEN_FEAT_MAP_BATCH 0x8ULL
#define WARDEN_FEAT_UNMAP_BATCH 0x10ULL
#define WARDEN_LIMITS_MAX_DOMAINS_SHIFT 0 /* 16 bits */
#define WARDEN_LIMITS_IOVA_BITS_SHIFT 16 /* 8 bits */
#define WARDEN_LIMITS_PA_BITS_SHIFT 24 /* 8 bits */
#define WARDEN_LIMITS_VMID_BITS_SHIFT 32 /* 8 bits */
#define WARDEN_LIMITS_MAX_DONATED_SHIFT 40 /* 24 bits */
#define WARDEN_LIMITS_MASK_8 0xffULL
#define WARDEN_LIMITS_MASK_16 0xffffULL
#define WARDEN_LIMITS_MASK_24 0xffffffULL

/* ---- READ_EVENT call: x0 = 1 (record) or 0, x1 = IOVA, x2 = sid|reason|flags, x3 = lost ---- */
#define WARDEN_EVENT_SID_SHIFT 0 /* 32 bits */
#define WARDEN_EVENT_REASON_SHIFT 32 /* 8 bits */
#define WARDEN_EVENT_FLAGS_SHIFT 48 /* 16 bits */
#define WARDEN_EVENT_FLAG_WRITE 0x1ULL
#define WARDEN_EVENT_FLAG_INSTR 0x2ULL
#define WARDEN_EVENT_FLAG_PRIV 0x4ULL
#define WARDEN_EVENT_FLAG_STAGE2 0x8ULL
#define WARDEN_EVENT_FLAG_IOVA_VALID 0x10ULL
#define WARDEN_EVENT_REASON_BAD_STREAMID 0x2ULL
#define WARDEN_EVENT_REASON_BAD_STE 0x4ULL
#define WARDEN_EVENT_REASON_STREAM_DISABLED 0x6ULL
#define WARDEN_EVENT_REASON_TRANSLATION 0x10ULL
#define WARDEN_EVENT_REASON_ADDR_SIZE 0x11ULL
#define WARDEN_EVENT_REASON_ACCESS 0x12ULL
#define WARDEN_EVENT_REASON_PERMISSION 0x13ULL
#define WARDEN_EVENT_REASON_GERROR 0xffULL

/* ---- MAP_BATCH call: x1 = domain, x2 = PA of the descriptors, x3 = count, x4 = prot ---- */
#define WARDEN_MAP_BATCH_MAX_ENTRIES 64
#define WARDEN_MAP_BATCH_ENTRY_SIZE 24 /* u64 IOVA, PA, length */
#define WARDEN_MAP_BATCH_ALIGN 8
#define WARDEN_MAP_BATCH_NO_ENTRY 0xffffffffffffffffULL

/* ---- UNMAP_BATCH call: x1 = domain, x2 = PA of the descriptors, x3 = count ---- */
#define WARDEN_UNMAP_BATCH_MAX_ENTRIES 64
#define WARDEN_UNMAP_BATCH_ENTRY_SIZE 16 /* u64 IOVA, length */

/* ---- STAT call: x1 = stat id, result in x1 ---- */
/* Allocated domains (host-identity not counted). */
#define WARDEN_STAT_DOMAINS_IN_USE 0
/* Maximum number of allocatable domains. */
#define WARDEN_STAT_DOMAINS_MAX 1
/* Pages in the page-table pool (hyp carve-out part plus donated pages). */
#define WARDEN_STAT_POOL_TOTAL_PAGES 2
/* Free pages in the page-table pool. */
#define WARDEN_STAT_POOL_FREE_PAGES 3
/* Pages the host has donated and not reclaimed. */
#define WARDEN_STAT_DONATED_PAGES 4
/* Donated pages not in use as page tables (reclaimable). */
#define WARDEN_STAT_DONATED_FREE_PAGES 5
/* StreamIDs attached to a domain other than host-identity. */
#define WARDEN_STAT_ATTACHED_SIDS 6
/*
 * Fault records lost: dropped because the hyp's event ring was full, plus one per SMMU event-queue
 */
#define WARDEN_STAT_EVENTS_LOST 7
/* SMMU commands issued (from the SMMU driver). */
#define WARDEN_STAT_SMMU_COMMANDS 8
/* SMMU CMD_SYNCs issued (from the SMMU driver). */
#define WARDEN_STAT_SMMU_SYNCS 9
/* TLB invalidations requested (range or VMID-wide, each with its sync). */
#define WARDEN_STAT_INVALIDATIONS 10
/* Warden calls handled (all functions). */
#define WARDEN_STAT_CALLS_TOTAL 11
/* Warden calls that returned an error. */
#define WARDEN_STAT_ERRORS_TOTAL 12
/*
 * 4 KiB pages currently DMA-mapped, summed over paging domains (the GIC emulation's pins, which use
 */
#define WARDEN_STAT_MAPPED_PAGES 13
/* Page-table pages in use by domains (including host-identity). */
#define WARDEN_STAT_TABLE_PAGES_IN_USE 14
/* Hash of the hyp's never-changing memory (text, rodata, canary pages), computed on each call. */
#define WARDEN_STAT_HYP_INTEGRITY 15
/* The HYP_INTEGRITY hash as computed at boot, once the canary pages were filled. */
#define WARDEN_STAT_HYP_INTEGRITY_BOOT 16
/*
 * Host exceptions the hypervisor did not handle since boot: synchronous ones (a trapped instruction
 */
#define WARDEN_STAT_HOST_TRAPS_UNHANDLED 17
/* Host requests the GIC emulation refused: ITS commands replaced by a `SYNC` (unknown opcode, a */
#define WARDEN_STAT_GIC_REFUSED 18
/*
 * Bytes of RAM the hypervisor keeps for itself: the fixed carve-out plus the part sized from the
 * machine
 */
#define WARDEN_STAT_HYP_MEMORY_BYTES 19
/*
 * Command-queue waits: acquisitions of the SMMU driver's lock that found it taken, plus lock-free
 */
#define WARDEN_STAT_CMDQ_LOCK_WAITS 20
/*
 * Spins of those waits: reads of the taken lock, lost compare-and-swaps and polls while waiting for
 */
#define WARDEN_STAT_CMDQ_LOCK_SPINS 21
/* Reads of the SMMU's `CMDQ_CONS` by CPUs waiting, without the lock, for their batch's CMD_SYNC. */
#define WARDEN_STAT_SYNC_POLLS 22
/*
 * Acquisitions of a domain's lock that found it taken (another CPU in the same domain), all
 * domains.
 */
#define WARDEN_STAT_DOMAIN_LOCK_WAITS 23
/* Reads of a taken domain lock while waiting for it, summed over all waits and domains. */
#define WARDEN_STAT_DOMAIN_LOCK_SPINS 24
#define WARDEN_STAT_CALLS_BASE 0x100ULL

/* ---- Names and Linux errnos ---- */
/* The ABI name of a Warden status ("SUCCESS", "BAD_DOMAIN", ...), for log lines. */
static inline const char *warden_strerror(long status)
{
	switch (status) {
	case WARDEN_SUCCESS:
		return "SUCCESS";
	case WARDEN_E_NOT_SUPPORTED:
		return "NOT_SUPPORTED";
	case WARDEN_E_INVALID_PARAMETER:
		return "INVALID_PARAMETER";
	case WARDEN_E_BAD_DOMAIN:
		return "BAD_DOMAIN";
	case WARDEN_E_BAD_SID:
		return "BAD_SID";
	case WARDEN_E_MISALIGNED:
		return "MISALIGNED";
	case WARDEN_E_OVERFLOW:
		return "OVERFLOW";
	case WARDEN_E_OUT_OF_RANGE_IOVA:
		return "OUT_OF_RANGE_IOVA";
	case WARDEN_E_OUT_OF_RANGE_PA:
		return "OUT_OF_RANGE_PA";
	case WARDEN_E_NOT_HOST_MEMORY:
		return "NOT_HOST_MEMORY";
	case WARDEN_E_HYP_MEMORY:
		return "HYP_MEMORY";
	case WARDEN_E_DONATED_MEMORY:
		return "DONATED_MEMORY";
	case WARDEN_E_BUSY:
		return "BUSY";
	case WARDEN_E_NOMEM:
		return "NOMEM";
	case WARDEN_E_NOT_MAPPED:
		return "NOT_MAPPED";
	case WARDEN_E_ALREADY_MAPPED:
		return "ALREADY_MAPPED";
	case WARDEN_E_BAD_PROT:
		return "BAD_PROT";
	case WARDEN_E_BAD_PGSIZE:
		return "BAD_PGSIZE";
	case WARDEN_E_TIMEOUT:
		return "TIMEOUT";
	case WARDEN_E_BAD_KIND:
		return "BAD_KIND";
	case WARDEN_E_NOT_DONATED:
		return "NOT_DONATED";
	case WARDEN_E_COUNT_OVERFLOW:
		return "COUNT_OVERFLOW";
	case WARDEN_E_BAD_COUNT:
		return "BAD_COUNT";
	case WARDEN_E_HW_ERROR:
		return "HW_ERROR";
	case WARDEN_E_BAD_STAT:
		return "BAD_STAT";
	case WARDEN_E_IMMUTABLE_DOMAIN:
		return "IMMUTABLE_DOMAIN";
	case WARDEN_E_WRONG_DOMAIN_KIND:
		return "WRONG_DOMAIN_KIND";
	case WARDEN_E_LIMIT:
		return "LIMIT";
	case WARDEN_E_INTERNAL:
		return "INTERNAL";
	default:
		return "UNKNOWN";
	}
}

/* The lower-case name of statistic @id ("domains_in_use", ...), NULL if unknown. */
static inline const char *warden_stat_name(unsigned long long id)
{
	switch (id) {
	case WARDEN_STAT_DOMAINS_IN_USE:
		return "domains_in_use";
	case WARDEN_STAT_DOMAINS_MAX:
		return "domains_max";
	case WARDEN_STAT_POOL_TOTAL_PAGES:
		return "pool_total_pages";
	case WARDEN_STAT_POOL_FREE_PAGES:
		return "pool_free_pages";
	case WARDEN_STAT_DONATED_PAGES:
		return "donated_pages";
	case WARDEN_STAT_DONATED_FREE_PAGES:
		return "donated_free_pages";
	case WARDEN_STAT_ATTACHED_SIDS:
		return "attached_sids";
	case WARDEN_STAT_EVENTS_LOST:
		return "events_lost";
	case WARDEN_STAT_SMMU_COMMANDS:
		return "smmu_commands";
	case WARDEN_STAT_SMMU_SYNCS:
		return "smmu_syncs";
	case WARDEN_STAT_INVALIDATIONS:
		return "invalidations";
	case WARDEN_STAT_CALLS_TOTAL:
		return "calls_total";
	case WARDEN_STAT_ERRORS_TOTAL:
		return "errors_total";
	case WARDEN_STAT_MAPPED_PAGES:
		return "mapped_pages";
	case WARDEN_STAT_TABLE_PAGES_IN_USE:
		return "table_pages_in_use";
	case WARDEN_STAT_HYP_INTEGRITY:
		return "hyp_integrity";
	case WARDEN_STAT_HYP_INTEGRITY_BOOT:
		return "hyp_integrity_boot";
	case WARDEN_STAT_HOST_TRAPS_UNHANDLED:
		return "host_traps_unhandled";
	case WARDEN_STAT_GIC_REFUSED:
		return "gic_refused";
	case WARDEN_STAT_HYP_MEMORY_BYTES:
		return "hyp_memory_bytes";
	case WARDEN_STAT_CMDQ_LOCK_WAITS:
		return "cmdq_lock_waits";
	case WARDEN_STAT_CMDQ_LOCK_SPINS:
		return "cmdq_lock_spins";
	case WARDEN_STAT_SYNC_POLLS:
		return "sync_polls";
	case WARDEN_STAT_DOMAIN_LOCK_WAITS:
		return "domain_lock_waits";
	case WARDEN_STAT_DOMAIN_LOCK_SPINS:
		return "domain_lock_spins";
	default:
		return NULL;
	}
}

/* The lower-case name of function number @fn ("version", ...), NULL if unknown. */
static inline const char *warden_fn_name(unsigned int fn)
{
	switch (fn) {
	case WARDEN_FN_VERSION:
		return "version";
	case WARDEN_FN_DOMAIN_ALLOC:
		return "domain_alloc";
	case WARDEN_FN_DOMAIN_FREE:
		return "domain_free";
	case WARDEN_FN_ATTACH:
		return "attach";
	case WARDEN_FN_DETACH:
		return "detach";
	case WARDEN_FN_MAP_PAGES:
		return "map_pages";
	case WARDEN_FN_UNMAP_PAGES:
		return "unmap_pages";
	case WARDEN_FN_IOVA_TO_PHYS:
		return "iova_to_phys";
	case WARDEN_FN_READ_EVENT:
		return "read_event";
	case WARDEN_FN_DONATE:
		return "donate";
	case WARDEN_FN_RECLAIM:
		return "reclaim";
	case WARDEN_FN_STAT:
		return "stat";
	case WARDEN_FN_MAP_BATCH:
		return "map_batch";
	case WARDEN_FN_UNMAP_BATCH:
		return "unmap_batch";
	default:
		return NULL;
	}
}

#ifdef __KERNEL__
#include <linux/errno.h>

/* The Linux errno for a Warden status: 0 for WARDEN_SUCCESS, -EIO if unknown. */
static inline int warden_errno(long status)
{
	switch (status) {
	case WARDEN_SUCCESS:
		return 0;
	case WARDEN_E_NOT_SUPPORTED:
		return -EOPNOTSUPP;
	case WARDEN_E_INVALID_PARAMETER:
		return -EINVAL;
	case WARDEN_E_BAD_DOMAIN:
		return -EINVAL;
	case WARDEN_E_BAD_SID:
		return -ENODEV;
	case WARDEN_E_MISALIGNED:
		return -EINVAL;
	case WARDEN_E_OVERFLOW:
		return -EINVAL;
	case WARDEN_E_OUT_OF_RANGE_IOVA:
		return -EINVAL;
	case WARDEN_E_OUT_OF_RANGE_PA:
		return -EINVAL;
	case WARDEN_E_NOT_HOST_MEMORY:
		return -EPERM;
	case WARDEN_E_HYP_MEMORY:
		return -EPERM;
	case WARDEN_E_DONATED_MEMORY:
		return -EPERM;
	case WARDEN_E_BUSY:
		return -EBUSY;
	case WARDEN_E_NOMEM:
		return -ENOMEM;
	case WARDEN_E_NOT_MAPPED:
		return -ENOENT;
	case WARDEN_E_ALREADY_MAPPED:
		return -EEXIST;
	case WARDEN_E_BAD_PROT:
		return -EINVAL;
	case WARDEN_E_BAD_PGSIZE:
		return -EINVAL;
	case WARDEN_E_TIMEOUT:
		return -ETIMEDOUT;
	case WARDEN_E_BAD_KIND:
		return -EINVAL;
	case WARDEN_E_NOT_DONATED:
		return -EINVAL;
	case WARDEN_E_COUNT_OVERFLOW:
		return -EOVERFLOW;
	case WARDEN_E_BAD_COUNT:
		return -EINVAL;
	case WARDEN_E_HW_ERROR:
		return -EIO;
	case WARDEN_E_BAD_STAT:
		return -EINVAL;
	case WARDEN_E_IMMUTABLE_DOMAIN:
		return -EINVAL;
	case WARDEN_E_WRONG_DOMAIN_KIND:
		return -EINVAL;
	case WARDEN_E_LIMIT:
		return -ENOSPC;
	case WARDEN_E_INTERNAL:
		return -EIO;
	default:
		return -EIO;
	}
}
#endif /* __KERNEL__ */

#endif /* WARDEN_ABI_H */
