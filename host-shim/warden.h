/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * The shim's internal types, shared by warden_main.c (discovery, platform driver, lifecycle, the
 * release attribute), warden_fault.c (fault reporting), warden_debugfs.c (debugfs),
 * warden_iommu.c (the iommu_ops table; paging domain allocation, free, capable, iova_to_phys),
 * warden_map.c (the paging domains' hot path: map/unmap, iotlb_sync_map, the lazy queue),
 * warden_master.c (masters: probe/release/of_xlate/device_group, attach, the identity and blocked
 * domains) and warden_donate.c (page donation, hyp domains).
 */
#ifndef WARDEN_H
#define WARDEN_H

#include <linux/atomic.h>
#include <linux/iommu.h>
#include <linux/list.h>
#include <linux/io-pgtable.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>

#include "warden_abi.h"
#include "warden_hvc.h"

/*
 * The IOVA window iommu-dma uses for MSI doorbells (IOMMU_RESV_SW_MSI), as Linux's own SMMU drivers
 * do.
 */
#define WARDEN_MSI_IOVA_BASE 0x8000000UL
#define WARDEN_MSI_IOVA_LENGTH 0x100000UL

/* Donation and reclaim count 4 KiB hyp pages; a kernel page is a whole number of them. */
static_assert(PAGE_SIZE % WARDEN_PAGE_SIZE == 0);
#define WARDEN_HYP_PAGES_PER_PAGE ((unsigned long)(PAGE_SIZE / WARDEN_PAGE_SIZE))

/*
 * Page donation: at most this many top-up rounds per call, each donating at most this many 4 KiB
 * pages.
 */
#define WARDEN_TOPUP_RETRIES 8
#define WARDEN_TOPUP_MAX_PAGES 1024UL
/*
 * Pages donated per top-up at least (the hyp usually asks for 1-3): amortises the NOMEM round
 * trips.
 */
#define WARDEN_TOPUP_MIN_PAGES 16UL
/*
 * Largest block (as an allocation order) one donation allocates; smaller orders are tried on
 * failure.
 */
#define WARDEN_TOPUP_MAX_ORDER 4
/* Runs a top-up sets aside and replaces when the hyp refuses them as still DMA-mapped (BUSY). */
#define WARDEN_TOPUP_BUSY_RUNS 8

/* Linux's IOMMU_* prot bits are the ABI's WARDEN_PROT_* bits, one for one. */
static_assert(IOMMU_READ == WARDEN_PROT_READ);
static_assert(IOMMU_WRITE == WARDEN_PROT_WRITE);
static_assert(IOMMU_CACHE == WARDEN_PROT_CACHE);
static_assert(IOMMU_NOEXEC == WARDEN_PROT_NOEXEC);
static_assert(IOMMU_MMIO == WARDEN_PROT_MMIO);
static_assert(IOMMU_PRIV == WARDEN_PROT_PRIV);
#define WARDEN_PAGE_SHIFT 12
static_assert(WARDEN_PAGE_SIZE == 1UL << WARDEN_PAGE_SHIFT);

/** struct warden_info - what the VERSION call reported. */
struct warden_info {
	u16 major;
	u16 minor;
	u32 features;
	/*
	 * Page sizes the hyp maps (WARDEN_PGSIZE_* bits), intersected with what this module knows.
	 */
	u64 pgsize_bitmap;
	u16 max_domains;
	u8 iova_bits;
	u8 pa_bits;
	u8 vmid_bits;
	u32 max_donated_pages;
};

/** struct warden_chunk - one run of physically contiguous pages donated to the hyp. */
struct warden_chunk {
	struct list_head node;
	unsigned long pfn;
	/* Kernel pages in the run (each split to order 0, so each can be freed on its own). */
	unsigned int nr_pages;
};

/** struct warden_smmu - the one paravirtual SMMU instance (the platform device). */
struct warden_smmu {
	struct device *dev;
	struct iommu_device iommu;
	/* iommu_device_sysfs_add / iommu_device_register done and not yet undone. */
	bool sysfs_added;
	bool registered;
	/* DMA to this SMMU's masters is cache coherent (the node's dma-coherent). */
	bool coherent;

	/* The hyp BLOCKED domain all blocked masters share (allocated at probe). */
	u64 blocked_id;
	bool have_blocked;

	/*
	 * Protects @masters and each master's @domain. Taken inside the iommu core's group mutex.
	 */
	struct mutex lock;
	struct list_head masters;

	/* Protects @donations and the page counters (taken in atomic context by map/unmap). */
	spinlock_t donate_lock;
	struct list_head donations;
	unsigned long donated_pages; /* 4 KiB hyp pages currently donated by this instance */
	/* hyp pages that could not be reclaimed at teardown (never freed) */
	unsigned long leaked_pages;

	atomic_t live_domains;        /* paging domains allocated in the hyp and not freed */
	atomic64_t map_calls;
	atomic64_t unmap_calls;
	atomic64_t topups;
	atomic64_t deferred_maps;      /* map_pages runs recorded for the next iotlb_sync_map */
	atomic64_t batch_calls;        /* MAP_BATCH calls */
	atomic64_t shadow_hits;        /* iova_to_phys answered from a domain's shadow */
	atomic64_t shadow_fallbacks;   /* iova_to_phys answered by an IOVA_TO_PHYS hypercall */
	/* domains whose shadow became unusable (an unmap of it went wrong) */
	atomic64_t shadow_lost;
	/* map_pages sent at once (MAP_PAGES): every pending slot in use */
	atomic64_t pending_full;
	/* unmap_pages queued for a lazy (flush-queue) domain's next UNMAP_BATCH */
	atomic64_t lazy_unmaps;
	atomic64_t unmap_batch_calls;  /* UNMAP_BATCH calls */
	/* queued unmaps an UNMAP_BATCH failure sent one by one (UNMAP_PAGES) */
	atomic64_t lazy_fallbacks;
	/* donations refused because a page was still DMA-mapped (queued unmap) */
	atomic64_t donate_busy;

	/*
	 * Fault reporting: a delayed work drains READ_EVENT; the event IRQ (if any) only kicks it.
	 */
	struct delayed_work event_work;
	/* READ_ONCE/WRITE_ONCE: the work item clears it, the IRQ handler reads it */
	bool events_enabled;
	bool stopping;
	int event_irq;
	u64 events_lost_seen;
	atomic64_t faults_reported;

	struct dentry *debugfs;
};

/** struct warden_master - one device behind the SMMU (dev_iommu_priv). */
struct warden_master {
	struct list_head node; /* in warden_smmu.masters */
	struct device *dev;
	struct warden_smmu *smmu;
	/* The domain the hyp has this master's SIDs in (identity, blocked, or a warden_domain). */
	struct iommu_domain *domain;
	/*
	 * A driver was bound (doing direct DMA through host-identity) when the shim first saw the
	 * device.
	 */
	bool bound_at_probe;
	unsigned int num_sids;
	u32 sids[] __counted_by(num_sids);
};

/* Deferred map_pages runs a paging domain holds at most (a bit each in an unsigned long). */
#define WARDEN_PENDING_RUNS 64
static_assert(WARDEN_PENDING_RUNS <= BITS_PER_LONG);

/** struct warden_run - one deferred map_pages run (IOVA and PA contiguous). */
struct warden_run {
	u64 iova;
	u64 pa;
	u64 len;
	u32 pgsize;
	int prot;
	gfp_t gfp;
};

/** struct warden_batch_desc - one descriptor of MAP_BATCH, as the hyp reads it (little-endian). */
struct warden_batch_desc {
	u64 iova;
	u64 pa;
	u64 len;
};

static_assert(sizeof(struct warden_batch_desc) == WARDEN_MAP_BATCH_ENTRY_SIZE);
static_assert(WARDEN_MAP_BATCH_MAX_ENTRIES * WARDEN_MAP_BATCH_ENTRY_SIZE <= WARDEN_PAGE_SIZE);

/*
 * Descriptor pages, one per CPU and context level (task, softirq, hardirq, NMI:
 * interrupt_context_level()), since map operations also run in interrupt context. A user fills its
 * page and hands it to the hyp with preemption off (warden_desc_get/put in warden_map.c), never
 * across anything that sleeps: no other task can run on the CPU meanwhile, and an interrupt that
 * maps on top of it uses its own level's page, so interrupts stay on. NULL until
 * warden_batch_init() succeeded (then warden_batch_ready is true).
 */
#define WARDEN_DESC_LEVELS 4
/** struct warden_desc_pages - one CPU's MAP_BATCH descriptor pages, one per context level. */
struct warden_desc_pages {
	struct warden_batch_desc *page[WARDEN_DESC_LEVELS];
};

/* Unmaps a lazy domain queues at most before it sends them (one UNMAP_BATCH). */
#define WARDEN_LAZY_ENTRIES WARDEN_UNMAP_BATCH_MAX_ENTRIES

/** struct warden_lazy_entry - one queued unmap: an UNMAP_BATCH descriptor (little-endian). */
struct warden_lazy_entry {
	u64 iova;
	u64 len;
};

static_assert(sizeof(struct warden_lazy_entry) == WARDEN_UNMAP_BATCH_ENTRY_SIZE);
static_assert(WARDEN_LAZY_ENTRIES * WARDEN_UNMAP_BATCH_ENTRY_SIZE <= WARDEN_PAGE_SIZE);

/**
 * struct warden_domain - a paging domain, backed by a hyp PAGING domain.
 *
 * @shadow: with the module parameter iova_shadow (default off), a translation shadow for
 *          iova_to_phys without a hypercall: an io-pgtable (ARM_64_LPAE_S1, the native driver's
 *          format and iova_to_phys), never walked by hardware, no TLB ops. map_pages maps it before
 *          the hyp hears of the run; unmaps remove from the hyp first, then the same bytes from the
 *          shadow; so it always holds everything the hyp has mapped (plus runs still pending).
 *          Lock-free for disjoint ranges, like the native driver's tables. NULL when off or if it
 *          could not be set up: iova_to_phys is then an IOVA_TO_PHYS hypercall.
 * @shadow_ok: the shadow is trusted; turns false for good if an unmap of it went wrong
 *             (iova_to_phys then asks the hyp: the shadow never answers with a stale PA).
 * @runs: map_pages runs not yet given to the hyp: slot i holds one if bit i of @used is set, under
 *        @pending_lock; each iotlb_sync_map(iova, size) claims (@claimed) the ones inside [iova,
 *        iova + size), sends them with one MAP_BATCH and frees them; a claimed slot is only read by
 *        its flush. When every slot is used, map_pages maps directly (MAP_PAGES).
 * @lazy: unmaps iommu-dma's flush queue deferred (IOMMU_DOMAIN_DMA_FQ: unmap_pages with a queued
 *        gather), @lazy_n of them, under @lazy_lock: already out of the shadow (if there is one),
 *        still mapped in the hyp (their pages DMA-counted, so not donatable) until flush_iotlb_all
 *        or a full queue sends them with one UNMAP_BATCH.
 */
struct warden_domain {
	struct iommu_domain domain;
	struct warden_smmu *smmu;
	u64 id;
	struct io_pgtable_ops *shadow;
	bool shadow_ok;
	spinlock_t pending_lock; /* guards @used and @claimed (see @runs) */
	unsigned long used;
	unsigned long claimed;
	struct warden_run runs[WARDEN_PENDING_RUNS];
	spinlock_t lazy_lock; /* guards @lazy_n and @lazy's entries */
	unsigned int lazy_n;
	/* a page of its own (the UNMAP_BATCH array); NULL: unmaps are synchronous */
	struct warden_lazy_entry *lazy;
};

static inline struct warden_domain *to_warden_domain(struct iommu_domain *domain)
{
	return container_of(domain, struct warden_domain, domain);
}

/* warden_main.c */
extern struct warden_info warden_info;

/* warden_fault.c */
struct platform_device;
void warden_events_init(struct warden_smmu *smmu);
void warden_events_start(struct warden_smmu *smmu, struct platform_device *pdev);
const char *warden_events_mode(const struct warden_smmu *smmu);
void warden_events_stop(struct warden_smmu *smmu);

/* warden_debugfs.c */
void warden_debugfs_init(struct warden_smmu *smmu);
void warden_debugfs_exit(struct warden_smmu *smmu);

/* warden_iommu.c */
extern const struct iommu_ops warden_iommu_ops;
DECLARE_PER_CPU(struct warden_desc_pages, warden_desc_pages);
extern bool warden_batch_ready;
int warden_batch_init(void);
void warden_batch_exit(void);

/* warden_map.c: the paging domains' iommu_domain_ops on the hot path */
int warden_map_pages(struct iommu_domain *domain, unsigned long iova, phys_addr_t paddr,
		     size_t pgsize, size_t pgcount, int prot, gfp_t gfp, size_t *mapped);
size_t warden_unmap_pages(struct iommu_domain *domain, unsigned long iova, size_t pgsize,
			  size_t pgcount, struct iommu_iotlb_gather *gather);
int warden_iotlb_sync_map(struct iommu_domain *domain, unsigned long iova, size_t size);
void warden_flush_iotlb_all(struct iommu_domain *domain);
void warden_iotlb_sync(struct iommu_domain *domain, struct iommu_iotlb_gather *gather);

/* warden_donate.c */
int warden_topup(struct warden_smmu *smmu, u64 need, gfp_t gfp);
void warden_reclaim_all(struct warden_smmu *smmu);
int warden_alloc_hyp_domain(struct warden_smmu *smmu, u64 kind, u64 *id);
int warden_free_hyp_domain(struct warden_smmu *smmu, u64 id);

/* warden_master.c: the iommu_ops for masters, and attach */
int warden_master_set_domain(struct warden_master *master, struct iommu_domain *domain);
int warden_attach_dev(struct iommu_domain *domain, struct device *dev);
extern struct iommu_domain warden_identity_domain;
extern struct iommu_domain warden_blocked_domain;
const char *warden_domain_name(struct iommu_domain *domain);
int warden_of_xlate(struct device *dev, const struct of_phandle_args *args);
struct iommu_device *warden_probe_device(struct device *dev);
void warden_release_device(struct device *dev);
struct iommu_group *warden_device_group(struct device *dev);
int warden_def_domain_type(struct device *dev);
void warden_get_resv_regions(struct device *dev, struct list_head *head);

#endif /* WARDEN_H */
