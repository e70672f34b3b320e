// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * warden_iommu.c - the iommu_ops Linux 6.12 calls: masters (probe/release/of_xlate/device_group), domains
 * (static identity and blocked, paging domains backed by hyp domains), attach, map/unmap/iova_to_phys, and the
 * page donations that keep the hyp's page-table pool topped up.
 *
 * Every operation on the hardware is a hypercall; the hyp validates each argument, owns the page tables and
 * the SMMU, and invalidates the SMMU's TLBs itself before an unmap returns. The shim only keeps the book-keeping
 * Linux needs (which SIDs a device has, which domain they are in) and the list of pages it donated.
 */
#define pr_fmt(fmt) "warden: " fmt

#include <linux/device.h>
#include <linux/gfp.h>
#include <linux/iommu.h>
#include <linux/mm.h>
#include <linux/of_iommu.h>
#include <linux/overflow.h>
#include <linux/pci.h>
#include <linux/slab.h>

#include "warden.h"

/* Linux's IOMMU_* prot bits are the ABI's WARDEN_PROT_* bits, one for one. */
static_assert(IOMMU_READ == WARDEN_PROT_READ);
static_assert(IOMMU_WRITE == WARDEN_PROT_WRITE);
static_assert(IOMMU_CACHE == WARDEN_PROT_CACHE);
static_assert(IOMMU_NOEXEC == WARDEN_PROT_NOEXEC);
static_assert(IOMMU_MMIO == WARDEN_PROT_MMIO);
static_assert(IOMMU_PRIV == WARDEN_PROT_PRIV);
/* Donation and reclaim count 4 KiB hyp pages; a kernel page is a whole number of them. */
static_assert(PAGE_SIZE % WARDEN_PAGE_SIZE == 0);
#define WARDEN_HYP_PAGES_PER_PAGE ((unsigned long)(PAGE_SIZE / WARDEN_PAGE_SIZE))

static inline struct warden_domain *to_warden_domain(struct iommu_domain *domain)
{
	return container_of(domain, struct warden_domain, domain);
}

/* ---- page donation ---- */

static void warden_free_run(unsigned long pfn, unsigned int nr_pages)
{
	unsigned int i;

	for (i = 0; i < nr_pages; i++)
		__free_page(pfn_to_page(pfn + i));
}

/**
 * warden_topup() - donate @need 4 KiB pages (capped at WARDEN_TOPUP_MAX_PAGES) to the hyp's pool, and more,
 *                  up to WARDEN_TOPUP_MIN_PAGES, if memory allows (fewer NOMEM round trips).
 * @smmu: the instance that records the donation.
 * @need: pages the hyp asked for (the x1 of its NOMEM).
 * @gfp: how the pages may be allocated (map_pages passes the caller's; atomic callers get GFP_ATOMIC).
 *
 * Pages are allocated in runs of up to 2^WARDEN_TOPUP_MAX_ORDER kernel pages (smaller when memory is
 * fragmented), each run donated with one DONATE call and recorded so that teardown can reclaim it. A donated
 * page is the hyp's: Linux must never touch or free it until RECLAIM succeeded.
 *
 * Return: 0, -ENOMEM (no memory), -ENOSPC (the hyp's donation limit) or another errno from DONATE.
 */
int warden_topup(struct warden_smmu *smmu, u64 need, gfp_t gfp)
{
	unsigned long pages, required, donated = 0, flags;
	gfp_t alloc_gfp = gfpflags_allow_blocking(gfp) ? GFP_KERNEL : GFP_ATOMIC;

	need = clamp_t(u64, need, 1, WARDEN_TOPUP_MAX_PAGES);
	/* What the hyp asked for must be donated; up to WARDEN_TOPUP_MIN_PAGES is extra, best effort. */
	required = DIV_ROUND_UP(need, WARDEN_HYP_PAGES_PER_PAGE);
	pages = max_t(unsigned long, required, DIV_ROUND_UP(WARDEN_TOPUP_MIN_PAGES, WARDEN_HYP_PAGES_PER_PAGE));
	atomic64_inc(&smmu->topups);
	while (pages) {
		unsigned int order = min_t(unsigned int, ilog2(pages), WARDEN_TOPUP_MAX_ORDER);
		struct warden_chunk *chunk;
		struct warden_ret r;
		struct page *page;

		for (;;) {
			page = alloc_pages(alloc_gfp | __GFP_NOWARN | (order ? __GFP_NORETRY : 0), order);
			if (page || !order)
				break;
			order--;
		}
		if (!page)
			return donated >= required ? 0 : -ENOMEM;
		chunk = kmalloc(sizeof(*chunk), alloc_gfp);
		if (!chunk) {
			__free_pages(page, order);
			return donated >= required ? 0 : -ENOMEM;
		}
		if (order)
			split_page(page, order);
		chunk->pfn = page_to_pfn(page);
		chunk->nr_pages = 1U << order;
		r = warden_call2(WARDEN_FID_DONATE, page_to_phys(page),
				 (u64)chunk->nr_pages * WARDEN_HYP_PAGES_PER_PAGE);
		if (r.status != WARDEN_SUCCESS) {
			/* The hyp changed nothing: the pages are still ours. */
			warden_free_run(chunk->pfn, chunk->nr_pages);
			kfree(chunk);
			if (donated >= required)
				return 0;
			pr_warn_ratelimited("donating %u pages failed: %s\n",
					    1U << order, warden_strerror(r.status));
			return warden_errno(r.status);
		}
		spin_lock_irqsave(&smmu->donate_lock, flags);
		list_add_tail(&chunk->node, &smmu->donations);
		smmu->donated_pages += (unsigned long)chunk->nr_pages * WARDEN_HYP_PAGES_PER_PAGE;
		spin_unlock_irqrestore(&smmu->donate_lock, flags);
		donated += chunk->nr_pages;
		pages -= min_t(unsigned long, pages, chunk->nr_pages);
	}
	return 0;
}

/* Reclaims one run; returns the number of kernel pages that stay with the hyp. */
static unsigned int warden_reclaim_run(unsigned long pfn, unsigned int nr_pages)
{
	struct warden_ret r;
	unsigned int i, kept = 0;

	r = warden_call2(WARDEN_FID_RECLAIM, PFN_PHYS(pfn), (u64)nr_pages * WARDEN_HYP_PAGES_PER_PAGE);
	if (r.status == WARDEN_SUCCESS) {
		warden_free_run(pfn, nr_pages);
		return 0;
	}
	/* Part of the run is still a page table (or the call is all-or-nothing): go page by page. */
	for (i = 0; i < nr_pages; i++) {
		if (nr_pages > 1)
			r = warden_call2(WARDEN_FID_RECLAIM, PFN_PHYS(pfn + i), WARDEN_HYP_PAGES_PER_PAGE);
		if (r.status == WARDEN_SUCCESS) {
			__free_page(pfn_to_page(pfn + i));
		} else {
			pr_warn_ratelimited("page %#llx stays donated: RECLAIM says %s\n",
					    (unsigned long long)PFN_PHYS(pfn + i), warden_strerror(r.status));
			kept++;
		}
	}
	return kept;
}

/**
 * warden_reclaim_all() - take back every page this instance donated; free those the hyp returns.
 * @smmu: the instance whose donations are reclaimed.
 *
 * Called at teardown, after every domain is freed, when no donated page should still be a page table. A page
 * the hyp refuses to return is leaked on purpose (never freed to Linux: it is still the hyp's) and counted.
 */
void warden_reclaim_all(struct warden_smmu *smmu)
{
	struct warden_chunk *chunk, *next;
	unsigned long flags, kept = 0;
	LIST_HEAD(list);

	spin_lock_irqsave(&smmu->donate_lock, flags);
	list_splice_init(&smmu->donations, &list);
	spin_unlock_irqrestore(&smmu->donate_lock, flags);

	list_for_each_entry_safe(chunk, next, &list, node) {
		unsigned int k = warden_reclaim_run(chunk->pfn, chunk->nr_pages);

		kept += k;
		spin_lock_irqsave(&smmu->donate_lock, flags);
		smmu->donated_pages -= (unsigned long)(chunk->nr_pages - k) * WARDEN_HYP_PAGES_PER_PAGE;
		spin_unlock_irqrestore(&smmu->donate_lock, flags);
		list_del(&chunk->node);
		kfree(chunk);
	}
	if (kept) {
		spin_lock_irqsave(&smmu->donate_lock, flags);
		smmu->leaked_pages += kept * WARDEN_HYP_PAGES_PER_PAGE;
		spin_unlock_irqrestore(&smmu->donate_lock, flags);
		pr_err("%lu donated pages could not be reclaimed; they stay with the hypervisor (leaked)\n",
		       kept * WARDEN_HYP_PAGES_PER_PAGE);
	}
}

/* ---- hyp domains ---- */

/**
 * warden_alloc_hyp_domain() - allocate a hyp domain, topping up the pool if the hyp asks.
 * @smmu: the instance (for donations).
 * @kind: WARDEN_DOMAIN_PAGING or WARDEN_DOMAIN_BLOCKED.
 * @id: where the new domain's ID goes.
 *
 * Return: 0 or an errno.
 */
int warden_alloc_hyp_domain(struct warden_smmu *smmu, u64 kind, u64 *id)
{
	int tries;

	for (tries = 0; tries <= WARDEN_TOPUP_RETRIES; tries++) {
		struct warden_ret r = warden_call1(WARDEN_FID_DOMAIN_ALLOC, kind);
		int ret;

		if (r.status == WARDEN_SUCCESS) {
			*id = r.x1;
			return 0;
		}
		if (r.status != WARDEN_E_NOMEM) {
			pr_warn_ratelimited("DOMAIN_ALLOC(kind %llu) failed: %s\n", kind,
					    warden_strerror(r.status));
			return warden_errno(r.status);
		}
		ret = warden_topup(smmu, r.x1, GFP_KERNEL);
		if (ret)
			return ret;
	}
	return -ENOMEM;
}

/**
 * warden_free_hyp_domain() - free a hyp domain (it must be attached to no SID).
 * @smmu: the instance (for log lines).
 * @id: the domain.
 *
 * Return: 0 or an errno (the hyp domain is then leaked, and said so).
 */
int warden_free_hyp_domain(struct warden_smmu *smmu, u64 id)
{
	struct warden_ret r = warden_call1(WARDEN_FID_DOMAIN_FREE, id);

	if (r.status != WARDEN_SUCCESS) {
		dev_err(smmu->dev, "DOMAIN_FREE(%llu) failed: %s (the hyp domain is leaked)\n", id,
			warden_strerror(r.status));
		return warden_errno(r.status);
	}
	return 0;
}

/* ---- attach ---- */

/* Puts one SID into the hyp domain that backs @domain. Tops up the pool if the hyp asks. */
static long warden_sid_set(struct warden_smmu *smmu, u32 sid, struct iommu_domain *domain)
{
	int tries;

	for (tries = 0; tries <= WARDEN_TOPUP_RETRIES; tries++) {
		struct warden_ret r;

		if (domain == &warden_identity_domain)
			r = warden_call1(WARDEN_FID_DETACH, sid);
		else if (domain == &warden_blocked_domain)
			r = warden_call2(WARDEN_FID_ATTACH, sid, smmu->blocked_id);
		else
			r = warden_call2(WARDEN_FID_ATTACH, sid, to_warden_domain(domain)->id);
		if (r.status != WARDEN_E_NOMEM)
			return r.status;
		if (warden_topup(smmu, r.x1, GFP_KERNEL))
			return r.status;
	}
	return WARDEN_E_NOMEM;
}

static const char *warden_domain_name(struct iommu_domain *domain)
{
	if (domain == &warden_identity_domain)
		return "host-identity";
	if (domain == &warden_blocked_domain)
		return "blocked";
	return "paging";
}

/*
 * Moves every SID of @master to @domain. On a failure the SIDs already moved go back to the master's previous
 * domain, so the master stays wholly in one domain. Caller holds smmu->lock.
 */
static int warden_master_set_domain(struct warden_master *master, struct iommu_domain *domain)
{
	struct warden_smmu *smmu = master->smmu;
	struct iommu_domain *old = master->domain;
	unsigned int i, j;
	long status;

	lockdep_assert_held(&smmu->lock);
	if (domain == &warden_blocked_domain && !smmu->have_blocked)
		return -ENODEV;
	for (i = 0; i < master->num_sids; i++) {
		status = warden_sid_set(smmu, master->sids[i], domain);
		if (status == WARDEN_SUCCESS)
			continue;
		dev_err(master->dev, "attaching SID %#x to the %s domain failed: %s\n", master->sids[i],
			warden_domain_name(domain), warden_strerror(status));
		for (j = 0; j < i; j++) {
			long undo = warden_sid_set(smmu, master->sids[j], old);

			if (undo != WARDEN_SUCCESS)
				dev_err(master->dev, "restoring SID %#x to its %s domain failed: %s\n",
					master->sids[j], warden_domain_name(old), warden_strerror(undo));
		}
		return status == WARDEN_E_NOMEM ? -ENOMEM : (status == WARDEN_E_LIMIT ? -ENOSPC : -ENODEV);
	}
	master->domain = domain;
	return 0;
}

static int warden_attach_dev(struct iommu_domain *domain, struct device *dev)
{
	struct warden_master *master = dev_iommu_priv_get(dev);
	int ret;

	if (!master)
		return -ENODEV;
	/* Only the two static domains and this driver's paging domains (same default ops) can be attached. */
	if (domain != &warden_identity_domain && domain != &warden_blocked_domain &&
	    (domain->ops != warden_iommu_ops.default_domain_ops ||
	     to_warden_domain(domain)->smmu != master->smmu))
		return -EINVAL;
	mutex_lock(&master->smmu->lock);
	ret = warden_master_set_domain(master, domain);
	mutex_unlock(&master->smmu->lock);
	return ret;
}

static const struct iommu_domain_ops warden_identity_ops = {
	.attach_dev = warden_attach_dev,
};

/* IOMMU_DOMAIN_IDENTITY: the hyp's built-in host-identity domain (all host RAM 1:1); attach = DETACH. */
struct iommu_domain warden_identity_domain = {
	.type = IOMMU_DOMAIN_IDENTITY,
	.ops = &warden_identity_ops,
};

static const struct iommu_domain_ops warden_blocked_ops = {
	.attach_dev = warden_attach_dev,
};

/* IOMMU_DOMAIN_BLOCKED: one hyp BLOCKED domain shared by every blocked master (every DMA aborts). */
struct iommu_domain warden_blocked_domain = {
	.type = IOMMU_DOMAIN_BLOCKED,
	.ops = &warden_blocked_ops,
};

/* ---- paging domains ---- */

static struct iommu_domain *warden_domain_alloc_paging(struct device *dev)
{
	struct warden_smmu *smmu = warden_smmu_instance;
	struct warden_domain *wd;
	int ret;

	if (!smmu)
		return ERR_PTR(-ENODEV);
	wd = kzalloc(sizeof(*wd), GFP_KERNEL);
	if (!wd)
		return ERR_PTR(-ENOMEM);
	ret = warden_alloc_hyp_domain(smmu, WARDEN_DOMAIN_PAGING, &wd->id);
	if (ret) {
		kfree(wd);
		return ERR_PTR(ret);
	}
	wd->smmu = smmu;
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
	kfree(wd);
}

/*
 * One MAP_PAGES call maps the whole request in the normal case. The hyp may map less (SUCCESS with fewer bytes
 * in x1: continue after them) or ask for pages (NOMEM with the shortfall in x1: donate and repeat the call; the
 * ABI's errors change nothing, so the repeat starts where the last success ended). Every iteration either
 * advances or spends one of WARDEN_TOPUP_RETRIES top-ups, so the loop is bounded.
 */
static int warden_map_pages(struct iommu_domain *domain, unsigned long iova, phys_addr_t paddr,
			    size_t pgsize, size_t pgcount, int prot, gfp_t gfp, size_t *mapped)
{
	struct warden_domain *wd = to_warden_domain(domain);
	u64 total, done = 0;
	int topups = 0, ret = 0;

	if (check_mul_overflow((u64)pgsize, (u64)pgcount, &total) || !pgsize)
		return -EINVAL;
	while (done < total) {
		struct warden_ret r;

		atomic64_inc(&wd->smmu->map_calls);
		r = warden_call(WARDEN_FID_MAP_PAGES, wd->id, iova + done, paddr + done, pgsize,
				(total - done) / pgsize, (u64)prot & WARDEN_PROT_ALL);
		if (r.status == WARDEN_SUCCESS) {
			if (!r.x1 || r.x1 > total - done || r.x1 % pgsize) {
				pr_err_ratelimited("MAP_PAGES reported %llu bytes of %llu (page size %zu)\n",
						   r.x1, total - done, pgsize);
				ret = -EIO;
				break;
			}
			done += r.x1;
			continue;
		}
		if (r.status == WARDEN_E_NOMEM && topups++ < WARDEN_TOPUP_RETRIES) {
			ret = warden_topup(wd->smmu, r.x1, gfp);
			if (ret)
				break;
			continue;
		}
		pr_err_ratelimited("MAP_PAGES(domain %llu, IOVA %#llx, PA %#llx, %zu x %#zx, prot %#x) failed: %s\n",
				   wd->id, (u64)iova + done, (u64)paddr + done, (size_t)((total - done) / pgsize),
				   pgsize, prot, warden_strerror(r.status));
		ret = warden_errno(r.status);
		break;
	}
	*mapped += done;
	return ret;
}

/*
 * One UNMAP_PAGES call; the hyp has cleared the entries, invalidated the SMMU TLBs and waited for the
 * CMD_SYNC before it returns, so the range is unreachable by the time this returns. Returns the bytes the hyp
 * unmapped (the core calls again for any remainder and treats 0 as "nothing there").
 */
static size_t warden_unmap_pages(struct iommu_domain *domain, unsigned long iova, size_t pgsize,
				 size_t pgcount, struct iommu_iotlb_gather *gather)
{
	struct warden_domain *wd = to_warden_domain(domain);
	u64 total;
	int topups;

	if (check_mul_overflow((u64)pgsize, (u64)pgcount, &total) || !total)
		return 0;
	for (topups = 0; topups <= WARDEN_TOPUP_RETRIES; topups++) {
		struct warden_ret r;

		atomic64_inc(&wd->smmu->unmap_calls);
		r = warden_call(WARDEN_FID_UNMAP_PAGES, wd->id, iova, pgsize, pgcount, 0, 0);
		if (r.status == WARDEN_SUCCESS)
			return min_t(u64, r.x1, total);
		/* Splitting a block needs table pages; unmap may run in atomic context. */
		if (r.status == WARDEN_E_NOMEM && !warden_topup(wd->smmu, r.x1, GFP_ATOMIC))
			continue;
		if (r.status != WARDEN_E_NOT_MAPPED)
			pr_err_ratelimited("UNMAP_PAGES(domain %llu, IOVA %#lx, %zu x %#zx) failed: %s\n",
					   wd->id, iova, pgcount, pgsize, warden_strerror(r.status));
		return 0;
	}
	return 0;
}

static phys_addr_t warden_iova_to_phys(struct iommu_domain *domain, dma_addr_t iova)
{
	struct warden_domain *wd = to_warden_domain(domain);
	struct warden_ret r = warden_call2(WARDEN_FID_IOVA_TO_PHYS, wd->id, iova);

	if (r.status != WARDEN_SUCCESS)
		return 0;
	/* Translation granules are >= 4 KiB, so the offset within the page passes through unchanged. */
	return (r.x1 & ~(WARDEN_PAGE_SIZE - 1)) | (iova & (WARDEN_PAGE_SIZE - 1));
}

/*
 * TLB maintenance is the hyp's, and it is synchronous: UNMAP_PAGES returns only after the SMMU invalidated
 * the range and completed a CMD_SYNC (and only then drops its ownership counts), and MAP_PAGES only fills
 * entries that were invalid, which the SMMU never caches. Nothing is ever queued in an iotlb_gather, so there
 * is nothing to flush here: these are deliberate no-ops. (Lazy mode, iommu.strict=0, still works: iommu-dma's
 * flush queue only delays IOVA reuse, and the unmaps it batches were already invalidated.)
 */
static void warden_flush_iotlb_all(struct iommu_domain *domain)
{
}

static void warden_iotlb_sync(struct iommu_domain *domain, struct iommu_iotlb_gather *gather)
{
}

/* ---- masters ---- */

static int warden_of_xlate(struct device *dev, const struct of_phandle_args *args)
{
	if (args->args_count != 1)
		return -EINVAL;
	return iommu_fwspec_add_ids(dev, args->args, 1);
}

static struct iommu_device *warden_probe_device(struct device *dev)
{
	struct iommu_fwspec *fwspec = dev_iommu_fwspec_get(dev);
	struct warden_smmu *smmu = warden_smmu_instance;
	struct warden_master *master;
	unsigned int i, j, n = 0;

	if (!smmu || !fwspec || fwspec->iommu_fwnode != smmu->iommu.fwnode || !fwspec->num_ids)
		return ERR_PTR(-ENODEV);
	master = kzalloc(struct_size(master, sids, fwspec->num_ids), GFP_KERNEL);
	if (!master)
		return ERR_PTR(-ENOMEM);
	master->num_sids = fwspec->num_ids;
	/* PCI DMA aliases can repeat a StreamID: keep each once. */
	for (i = 0; i < fwspec->num_ids; i++) {
		for (j = 0; j < n && master->sids[j] != fwspec->ids[i]; j++)
			;
		if (j == n)
			master->sids[n++] = fwspec->ids[i];
	}
	master->num_sids = n;
	master->dev = dev;
	master->smmu = smmu;
	/* Every SID starts (or, after a previous shim instance, was left) in the hyp's host-identity domain. */
	master->domain = &warden_identity_domain;
	/*
	 * Probe-ordering policy: a driver already bound means the device has been doing direct DMA with physical
	 * addresses through host-identity; moving it to a translated domain under the driver's feet would break
	 * it. It keeps IOMMU_DOMAIN_IDENTITY (def_domain_type). During a driver's own probe (dma_configure),
	 * device_is_bound() is still false, so newly bound devices get translated DMA domains.
	 */
	master->bound_at_probe = device_is_bound(dev);
	if (master->bound_at_probe)
		dev_info(dev, "driver %s already bound: keeps direct DMA (host-identity); rebind it to translate\n",
			 dev->driver ? dev->driver->name : "?");
	mutex_lock(&smmu->lock);
	list_add_tail(&master->node, &smmu->masters);
	mutex_unlock(&smmu->lock);
	dev_iommu_priv_set(dev, master);
	return &smmu->iommu;
}

static void warden_release_device(struct device *dev)
{
	struct warden_master *master = dev_iommu_priv_get(dev);
	struct warden_smmu *smmu;

	if (!master)
		return;
	smmu = master->smmu;
	mutex_lock(&smmu->lock);
	/* Back to host-identity: after release the device does direct DMA (or is re-probed). */
	if (master->domain != &warden_identity_domain)
		warden_master_set_domain(master, &warden_identity_domain);
	list_del(&master->node);
	mutex_unlock(&smmu->lock);
	kfree(master);
}

static struct iommu_group *warden_device_group(struct device *dev)
{
	if (dev_is_pci(dev))
		return pci_device_group(dev);
	return generic_device_group(dev);
}

static int warden_def_domain_type(struct device *dev)
{
	struct warden_master *master = dev_iommu_priv_get(dev);

	if (master && master->bound_at_probe)
		return IOMMU_DOMAIN_IDENTITY;
	return 0; /* the kernel's default: DMA (strict or lazy), or identity with iommu.passthrough=1 */
}

static void warden_get_resv_regions(struct device *dev, struct list_head *head)
{
	struct iommu_resv_region *region;
	int prot = IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_MMIO;

	region = iommu_alloc_resv_region(WARDEN_MSI_IOVA_BASE, WARDEN_MSI_IOVA_LENGTH, prot,
					 IOMMU_RESV_SW_MSI, GFP_KERNEL);
	if (!region)
		return;
	list_add_tail(&region->list, head);
	/* Reserved-memory regions the device tree attaches to the device (none on QEMU virt). */
	of_iommu_get_resv_regions(dev, head);
}

static bool warden_capable(struct device *dev, enum iommu_cap cap)
{
	struct warden_master *master = dev_iommu_priv_get(dev);

	switch (cap) {
	case IOMMU_CAP_CACHE_COHERENCY:
		/* IOMMU_CACHE maps as Normal write-back; coherent if the SMMU node says dma-coherent. */
		return master && master->smmu->coherent;
	case IOMMU_CAP_NOEXEC:
		return true;
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
		.iova_to_phys = warden_iova_to_phys,
		.free = warden_domain_free,
	},
};
