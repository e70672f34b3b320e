// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * The pages warden.ko gives the hyp and takes back: top-ups of the hyp's page-table pool (DONATE,
 * in physically contiguous runs where memory allows), the reclaim of every donated page at release
 * and unload (RECLAIM, with pages the hyp still uses retried and, if still busy, logged and
 * leaked), and the hyp domains (DOMAIN_ALLOC/FREE) behind the paging domains and the blocked
 * domain (identity is the hyp's built-in host-identity).
 */
#define pr_fmt(fmt) "warden: " fmt

#include <linux/device.h>
#include <linux/gfp.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/slab.h>

#include "warden.h"
/* ---- page donation ---- */

static void warden_free_run(unsigned long pfn, unsigned int nr_pages)
{
	unsigned int i;

	for (i = 0; i < nr_pages; i++)
		__free_page(pfn_to_page(pfn + i));
}

static int warden_topup_runs(struct warden_smmu *smmu, u64 need, gfp_t alloc_gfp,
			     struct list_head *busy);

/**
 * warden_topup() - donate @need 4 KiB pages (capped at WARDEN_TOPUP_MAX_PAGES) to the hyp's pool,
 *                  and more, up to WARDEN_TOPUP_MIN_PAGES, if memory allows (fewer NOMEM round
 *                  trips).
 * @smmu: the instance that records the donation.
 * @need: pages the hyp asked for (the x1 of its NOMEM).
 * @gfp: how the pages may be allocated (map_pages passes the caller's; atomic callers get
 * GFP_ATOMIC).
 *
 * Pages are allocated in runs of up to 2^WARDEN_TOPUP_MAX_ORDER kernel pages (smaller when memory
 * is fragmented), each run donated with one DONATE call and recorded so that teardown can reclaim
 * it. A donated page is the hyp's: Linux must never touch or free it until RECLAIM succeeded.
 *
 * A run the hyp refuses with BUSY holds a page that is still DMA-mapped: Linux freed it after an
 * unmap that a lazy domain has queued and not yet sent (the hyp never takes a page a device can
 * still reach). Such a run is kept aside until the top-up ends (so the allocator does not hand it
 * back at once) and another is allocated, at most WARDEN_TOPUP_BUSY_RUNS times.
 *
 * Return: 0, -ENOMEM (no memory), -ENOSPC (the hyp's donation limit) or another errno from DONATE.
 */
int warden_topup(struct warden_smmu *smmu, u64 need, gfp_t gfp)
{
	gfp_t alloc_gfp = gfpflags_allow_blocking(gfp) ? GFP_KERNEL : GFP_ATOMIC;
	struct warden_chunk *chunk, *next;
	LIST_HEAD(busy);
	int ret;

	ret = warden_topup_runs(smmu, need, alloc_gfp, &busy);
	list_for_each_entry_safe(chunk, next, &busy, node) {
		warden_free_run(chunk->pfn, chunk->nr_pages);
		kfree(chunk);
	}
	return ret;
}

/* warden_topup()'s donations; runs refused with BUSY go to @busy (the caller frees them). */
static int warden_topup_runs(struct warden_smmu *smmu, u64 need, gfp_t alloc_gfp,
			     struct list_head *busy)
{
	unsigned long pages, required, donated = 0, flags;
	unsigned int busy_runs = 0;

	need = clamp_t(u64, need, 1, WARDEN_TOPUP_MAX_PAGES);
	/*
	 * What the hyp asked for must be donated; up to WARDEN_TOPUP_MIN_PAGES is extra, best
	 * effort.
	 */
	required = DIV_ROUND_UP(need, WARDEN_HYP_PAGES_PER_PAGE);
	pages = max_t(unsigned long, required,
		      DIV_ROUND_UP(WARDEN_TOPUP_MIN_PAGES, WARDEN_HYP_PAGES_PER_PAGE));
	atomic64_inc(&smmu->topups);
	while (pages) {
		unsigned int order = min_t(unsigned int, ilog2(pages), WARDEN_TOPUP_MAX_ORDER);
		struct warden_chunk *chunk;
		struct warden_ret r;
		struct page *page;

		for (;;) {
			page = alloc_pages(alloc_gfp | __GFP_NOWARN | (order ? __GFP_NORETRY : 0),
					   order);
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
		if (r.status == WARDEN_E_BUSY && busy_runs++ < WARDEN_TOPUP_BUSY_RUNS) {
			atomic64_inc(&smmu->donate_busy);
			list_add_tail(&chunk->node, busy);
			continue;
		}
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

/*
 * Reclaims one run; returns the number of kernel pages that stay with the hyp. Pages refused with
 * BUSY go to @busy (one-page chunks) to be retried once the other runs are back, when it can
 * allocate their record; they are not counted.
 */
static unsigned int warden_reclaim_run(unsigned long pfn, unsigned int nr_pages,
				       struct list_head *busy)
{
	struct warden_ret r;
	unsigned int i, kept = 0;

	r = warden_call2(WARDEN_FID_RECLAIM, PFN_PHYS(pfn),
			 (u64)nr_pages * WARDEN_HYP_PAGES_PER_PAGE);
	if (r.status == WARDEN_SUCCESS) {
		warden_free_run(pfn, nr_pages);
		return 0;
	}
	/*
	 * Part of the run is still a page table (or the call is all-or-nothing): go page by page.
	 */
	for (i = 0; i < nr_pages; i++) {
		struct warden_chunk *retry;

		if (nr_pages > 1)
			r = warden_call2(WARDEN_FID_RECLAIM, PFN_PHYS(pfn + i),
					 WARDEN_HYP_PAGES_PER_PAGE);
		if (r.status == WARDEN_SUCCESS) {
			__free_page(pfn_to_page(pfn + i));
			continue;
		}
		retry = r.status == WARDEN_E_BUSY ? kmalloc(sizeof(*retry), GFP_KERNEL) : NULL;
		if (retry) {
			retry->pfn = pfn + i;
			retry->nr_pages = 1;
			list_add_tail(&retry->node, busy);
			continue;
		}
		pr_warn_ratelimited("page %#llx stays donated: RECLAIM says %s\n",
				    (unsigned long long)PFN_PHYS(pfn + i),
				    warden_strerror(r.status));
		kept++;
	}
	return kept;
}

/*
 * Retries the pages in @busy until a round returns none: a donated page that the hyp uses as the
 * host-identity table of its 2 MiB block is BUSY until the block's other donated pages are back.
 * Returns the kernel pages that stay with the hyp (and frees every record).
 */
static unsigned long warden_reclaim_busy(struct list_head *busy)
{
	struct warden_chunk *chunk, *next;
	unsigned long kept = 0;
	bool progress = true;

	while (progress && !list_empty(busy)) {
		progress = false;
		list_for_each_entry_safe(chunk, next, busy, node) {
			struct warden_ret r = warden_call2(WARDEN_FID_RECLAIM, PFN_PHYS(chunk->pfn),
							   WARDEN_HYP_PAGES_PER_PAGE);

			if (r.status != WARDEN_SUCCESS)
				continue;
			__free_page(pfn_to_page(chunk->pfn));
			list_del(&chunk->node);
			kfree(chunk);
			progress = true;
		}
	}
	list_for_each_entry_safe(chunk, next, busy, node) {
		pr_warn_ratelimited("page %#llx stays donated: RECLAIM says busy\n",
				    (unsigned long long)PFN_PHYS(chunk->pfn));
		list_del(&chunk->node);
		kfree(chunk);
		kept++;
	}
	return kept;
}

/**
 * warden_reclaim_all() - take back every page this instance donated; free those the hyp returns.
 * @smmu: the instance whose donations are reclaimed.
 *
 * Called at teardown, after every domain is freed, when no donated page should still be a page
 * table of a domain. A donated page may still be the host-identity table of its 2 MiB block (the
 * hyp took it when a donation cut that block): RECLAIM says BUSY for it until the block's other
 * donated pages are back, so such pages are retried after all the others. A page the hyp refuses to
 * return is leaked on purpose (never freed to Linux: it is still the hyp's) and counted.
 */
void warden_reclaim_all(struct warden_smmu *smmu)
{
	struct warden_chunk *chunk, *next;
	unsigned long flags, kept = 0, k;
	LIST_HEAD(list);
	LIST_HEAD(busy);

	spin_lock_irqsave(&smmu->donate_lock, flags);
	list_splice_init(&smmu->donations, &list);
	spin_unlock_irqrestore(&smmu->donate_lock, flags);

	list_for_each_entry_safe(chunk, next, &list, node) {
		unsigned int n = warden_reclaim_run(chunk->pfn, chunk->nr_pages, &busy);

		kept += n;
		spin_lock_irqsave(&smmu->donate_lock, flags);
		smmu->donated_pages -=
			(unsigned long)(chunk->nr_pages - n) * WARDEN_HYP_PAGES_PER_PAGE;
		spin_unlock_irqrestore(&smmu->donate_lock, flags);
		list_del(&chunk->node);
		kfree(chunk);
	}
	/*
	 * The BUSY pages were subtracted above as if returned; those still refused are added
	 * back.
	 */
	k = warden_reclaim_busy(&busy);
	if (k) {
		spin_lock_irqsave(&smmu->donate_lock, flags);
		smmu->donated_pages += k * WARDEN_HYP_PAGES_PER_PAGE;
		spin_unlock_irqrestore(&smmu->donate_lock, flags);
		kept += k;
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
