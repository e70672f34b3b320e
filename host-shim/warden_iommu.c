// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * The iommu_ops Linux 6.12 calls (the table), and the cold side of paging domains (backed by hyp
 * domains): allocation (with the translation shadow and the lazy queue page) and free, capable,
 * iova_to_phys, and the per-CPU MAP_BATCH descriptor pages' setup. Their hot path (map/unmap,
 * iotlb_sync_map, the lazy queue's flush) is warden_map.c's; masters, attach and the
 * identity/blocked domains are warden_master.c's; page donations and hyp domains warden_donate.c's.
 */
#define pr_fmt(fmt) "warden: " fmt

#include <linux/bitops.h>
#include <linux/device.h>
#include <linux/gfp.h>
#include <linux/io-pgtable.h>
#include <linux/iommu.h>
#include <linux/mm.h>
#include <linux/percpu.h>
#include <linux/slab.h>

#include "warden.h"

/*
 * Off by default: measured, the shadow's io-pgtable work at EL1 costs a map + unmap pair more
 * instructions than the IOVA_TO_PHYS round trip it saves per dma_unmap_page (host-shim/README.md,
 * "Translation shadow"). Read-only: a domain has a shadow from its birth or never.
 */
static bool iova_shadow;
module_param(iova_shadow, bool, 0444);
MODULE_PARM_DESC(iova_shadow, "Keep a translation shadow of each paging domain and answer iova_to_phys from it instead of IOVA_TO_PHYS (default off)");
static bool lazy_unmap = true;
module_param(lazy_unmap, bool, 0444);
MODULE_PARM_DESC(lazy_unmap, "Offer lazy (flush-queue) domains: queue their unmaps and send them with UNMAP_BATCH");

/* The MAP_BATCH descriptor pages (see struct warden_desc_pages) and whether they are set up. */
DEFINE_PER_CPU(struct warden_desc_pages, warden_desc_pages);
bool warden_batch_ready;

/**
 * warden_batch_init() - allocate the per-CPU MAP_BATCH descriptor pages (if the hyp has MAP_BATCH).
 *
 * Return: 0; without memory or without FEAT_MAP_BATCH, deferral stays off and every map is a
 * MAP_PAGES.
 */
int warden_batch_init(void)
{
	unsigned int cpu, level;

	if (!(warden_info.features & WARDEN_FEAT_MAP_BATCH))
		return 0;
	for_each_possible_cpu(cpu) {
		for (level = 0; level < WARDEN_DESC_LEVELS; level++) {
			struct warden_batch_desc *page = (void *)get_zeroed_page(GFP_KERNEL);

			if (!page) {
				warden_batch_exit();
				pr_warn("no memory for MAP_BATCH descriptor pages: every map is one MAP_PAGES\n");
				return 0;
			}
			per_cpu_ptr(&warden_desc_pages, cpu)->page[level] = page;
		}
	}
	warden_batch_ready = true;
	return 0;
}

/** warden_batch_exit() - free the descriptor pages (no domain may be mapping any more). */
void warden_batch_exit(void)
{
	unsigned int cpu, level;

	warden_batch_ready = false;
	for_each_possible_cpu(cpu) {
		struct warden_desc_pages *pages = per_cpu_ptr(&warden_desc_pages, cpu);

		for (level = 0; level < WARDEN_DESC_LEVELS; level++) {
			free_page((unsigned long)pages->page[level]);
			pages->page[level] = NULL;
		}
	}
}

/* ---- paging domains ---- */

static struct iommu_domain *warden_domain_alloc_paging(struct device *dev)
{
	struct warden_master *master = dev_iommu_priv_get(dev);
	struct io_pgtable_cfg cfg;
	struct warden_smmu *smmu;
	struct warden_domain *wd;
	int ret;

	if (!master)
		return ERR_PTR(-ENODEV);
	smmu = master->smmu;
	wd = kzalloc(sizeof(*wd), GFP_KERNEL);
	if (!wd)
		return ERR_PTR(-ENOMEM);
	ret = warden_alloc_hyp_domain(smmu, WARDEN_DOMAIN_PAGING, &wd->id);
	if (ret) {
		kfree(wd);
		return ERR_PTR(ret);
	}
	wd->smmu = smmu;
	spin_lock_init(&wd->pending_lock);
	spin_lock_init(&wd->lazy_lock);
	/*
	 * The queue of a lazy domain (only used when iommu-dma hands over queued unmaps); without
	 * it, synchronous.
	 */
	if (lazy_unmap && (warden_info.features & WARDEN_FEAT_UNMAP_BATCH))
		wd->lazy = (void *)get_zeroed_page(GFP_KERNEL);
	cfg = (struct io_pgtable_cfg) {
		.pgsize_bitmap = warden_info.pgsize_bitmap,
		.ias = warden_info.iova_bits,
		.oas = 48,
		/* only the CPU walks it: no cache maintenance, no DMA mapping */
		.coherent_walk = true,
		.tlb = NULL,		/* nothing caches it: no TLB maintenance */
		.iommu_dev = smmu->dev,
	};
	if (iova_shadow)
		wd->shadow = alloc_io_pgtable_ops(ARM_64_LPAE_S1, &cfg, wd);
	if (wd->shadow && cfg.pgsize_bitmap != warden_info.pgsize_bitmap) {
		free_io_pgtable_ops(wd->shadow);
		wd->shadow = NULL;
	}
	if (iova_shadow && !wd->shadow)
		dev_warn_once(smmu->dev, "no io-pgtable translation shadow (IOVA bits %u, page sizes %#llx): iova_to_phys asks the hyp\n",
			      warden_info.iova_bits, warden_info.pgsize_bitmap);
	wd->shadow_ok = !!wd->shadow;
	wd->domain.pgsize_bitmap = warden_info.pgsize_bitmap;
	wd->domain.geometry.aperture_start = 0;
	wd->domain.geometry.aperture_end = (dma_addr_t)(BIT_ULL(warden_info.iova_bits) - 1);
	wd->domain.geometry.force_aperture = true;
	atomic_inc(&smmu->live_domains);
	return &wd->domain;
}

static void warden_domain_free(struct iommu_domain *domain)
{
	struct warden_domain *wd = to_warden_domain(domain);

	/* The core detached every device first, so the hyp domain is attached to no SID. */
	if (!warden_free_hyp_domain(wd->smmu, wd->id))
		atomic_dec(&wd->smmu->live_domains);
	/*
	 * Pending runs (none should be left: every map was synced or unrolled) never reached the
	 * hyp.
	 */
	if (wd->shadow)
		free_io_pgtable_ops(wd->shadow);
	/*
	 * Queued lazy unmaps need no UNMAP_BATCH: DOMAIN_FREE invalidated the whole VMID before it
	 * dropped every page's count (and if it failed, the pages stay pinned in the hyp).
	 */
	free_page((unsigned long)wd->lazy);
	kfree(wd);
}

/*
 * An IOVA_TO_PHYS hypercall (iommu-dma asks before every dma_unmap_page). With iova_shadow=1,
 * paging domains answer from the shadow with io-pgtable's own walk instead (what the native driver
 * answers with; no hypercall); the hyp stays the authority, the shadow only mirrors what map_pages
 * gave it, and a lost shadow falls back to IOVA_TO_PHYS.
 */
static phys_addr_t warden_iova_to_phys(struct iommu_domain *domain, dma_addr_t iova)
{
	struct warden_domain *wd = to_warden_domain(domain);
	struct warden_ret r;

	if (READ_ONCE(wd->shadow_ok)) {
		atomic64_inc(&wd->smmu->shadow_hits);
		return wd->shadow->iova_to_phys(wd->shadow, iova);
	}
	atomic64_inc(&wd->smmu->shadow_fallbacks);
	r = warden_call2(WARDEN_FID_IOVA_TO_PHYS, wd->id, iova);
	if (r.status != WARDEN_SUCCESS)
		return 0;
	/*
	 * Translation granules are >= 4 KiB, so the offset within the page passes through
	 * unchanged.
	 */
	return (r.x1 & ~(WARDEN_PAGE_SIZE - 1)) | (iova & (WARDEN_PAGE_SIZE - 1));
}

static bool warden_capable(struct device *dev, enum iommu_cap cap)
{
	struct warden_master *master = dev_iommu_priv_get(dev);

	switch (cap) {
	case IOMMU_CAP_CACHE_COHERENCY:
		/*
		 * IOMMU_CACHE maps as Normal write-back; coherent if the SMMU node says
		 * dma-coherent.
		 */
		return master && master->smmu->coherent;
	case IOMMU_CAP_NOEXEC:
		return true;
	case IOMMU_CAP_DEFERRED_FLUSH:
		/*
		 * iommu-dma may make DMA domains lazy (flush queue): their unmaps are queued for
		 * UNMAP_BATCH.
		 */
		return lazy_unmap && (warden_info.features & WARDEN_FEAT_UNMAP_BATCH);
	default:
		return false;
	}
}

const struct iommu_ops warden_iommu_ops = {
	.identity_domain = &warden_identity_domain,
	.blocked_domain = &warden_blocked_domain,
	.capable = warden_capable,
	.domain_alloc_paging = warden_domain_alloc_paging,
	.probe_device = warden_probe_device,
	.release_device = warden_release_device,
	.device_group = warden_device_group,
	.of_xlate = warden_of_xlate,
	.get_resv_regions = warden_get_resv_regions,
	.def_domain_type = warden_def_domain_type,
	.pgsize_bitmap = WARDEN_PGSIZE_BITMAP,
	.owner = THIS_MODULE,
	.default_domain_ops = &(const struct iommu_domain_ops) {
		.attach_dev = warden_attach_dev,
		.map_pages = warden_map_pages,
		.unmap_pages = warden_unmap_pages,
		.flush_iotlb_all = warden_flush_iotlb_all,
		.iotlb_sync = warden_iotlb_sync,
		.iotlb_sync_map = warden_iotlb_sync_map,
		.iova_to_phys = warden_iova_to_phys,
		.free = warden_domain_free,
	},
};
