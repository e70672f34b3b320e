// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * The paging domains' hot path, in one translation unit so that the compiler can inline the static
 * helpers every call uses: map_pages (deferred runs), iotlb_sync_map (MAP_BATCH), unmap_pages
 * (UNMAP_PAGES, or a flush-queue domain's lazy queue), flush_iotlb_all (UNMAP_BATCH), iotlb_sync,
 * the translation shadow (iova_shadow=1) and the pending runs. The hyp validates every argument,
 * owns the page tables and the SMMU, and invalidates the SMMU's TLBs itself before an unmap
 * returns. The cold side (alloc, free, capable, iova_to_phys, the iommu_ops table) is in
 * warden_iommu.c.
 */
#define pr_fmt(fmt) "warden: " fmt

#include <linux/bitops.h>
#include <linux/gfp.h>
#include <linux/io-pgtable.h>
#include <linux/iommu.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/percpu.h>
#include <linux/preempt.h>

#include "warden.h"

static bool map_batch = true;
module_param(map_batch, bool, 0644);
MODULE_PARM_DESC(map_batch, "Defer map_pages to iotlb_sync_map and send each mapping operation with one MAP_BATCH");

/*
 * This CPU's descriptor page for the current context; preemption stays off until warden_desc_put().
 */
static struct warden_batch_desc *warden_desc_get(void)
{
	preempt_disable();
	return this_cpu_ptr(&warden_desc_pages)->page[interrupt_context_level()];
}

static void warden_desc_put(void)
{
	preempt_enable();
}

/* ---- translation shadow ---- */

/* The shadow no longer matches the hyp: iova_to_phys asks the hyp (IOVA_TO_PHYS) for good. */
static void warden_shadow_lose(struct warden_domain *wd, u64 iova)
{
	if (!xchg(&wd->shadow_ok, false))
		return;
	atomic64_inc(&wd->smmu->shadow_lost);
	pr_warn_ratelimited("domain %llu: translation shadow lost at IOVA %#llx; iova_to_phys asks the hyp from now on\n",
			    wd->id, iova);
}

/*
 * Removes [iova, iova + len) from the shadow, in pages of @pgsize (what the core unmaps with, or
 * what the run was mapped with; 4 KiB if that does not divide @len). Called only for bytes the
 * shadow holds (it holds all the hyp has mapped): anything else loses the shadow rather than leave
 * a stale entry. Returns true when the shadow is in use and held (and no longer holds) every byte
 * of the range.
 */
static bool warden_shadow_unmap(struct warden_domain *wd, u64 iova, u64 pgsize, u64 len)
{
	struct io_pgtable_ops *ops = wd->shadow;
	u64 done = 0;

	if (!len || !READ_ONCE(wd->shadow_ok))
		return false;
	if (len % pgsize || iova % pgsize)
		pgsize = WARDEN_PAGE_SIZE;
	while (done < len) {
		/* One call unmaps at most up to the end of one table; no TLB ops, no gather. */
		size_t n = ops->unmap_pages(ops, iova + done, pgsize, (len - done) / pgsize, NULL);

		if (!n) {
			warden_shadow_lose(wd, iova + done);
			return false;
		}
		done += n;
	}
	return true;
}

/*
 * Maps [iova, iova + len) -> pa into the shadow in pages of @pgsize, before the hyp hears of it.
 * Returns 0, or the io-pgtable's error (-ENOMEM: a table page could not be allocated) with nothing
 * left mapped.
 */
static int warden_shadow_map(struct warden_domain *wd, u64 iova, u64 pa, u64 pgsize, u64 len,
			     int prot, gfp_t gfp)
{
	struct io_pgtable_ops *ops = wd->shadow;
	u64 done = 0;

	if (!READ_ONCE(wd->shadow_ok))
		return 0;
	if (!(prot & (IOMMU_READ | IOMMU_WRITE))) {
		/* io-pgtable maps nothing without access, the hyp may: the shadow would miss it. */
		warden_shadow_lose(wd, iova);
		return 0;
	}
	while (done < len) {
		size_t mapped = 0;
		int ret = ops->map_pages(ops, iova + done, pa + done, pgsize, (len - done) / pgsize,
					 prot, gfp, &mapped);

		done += mapped;
		if (ret || !mapped) {
			warden_shadow_unmap(wd, iova, pgsize, done);
			return ret ?: -EIO;
		}
	}
	return 0;
}

static bool warden_lazy_flush(struct warden_domain *wd);

/*
 * MAP_PAGES for [iova, iova + total) -> paddr: one call in the normal case. The hyp may map less
 * (SUCCESS with fewer bytes in x1: continue after them) or ask for pages (NOMEM with the shortfall
 * in x1: donate and repeat the call; the ABI's errors change nothing, so the repeat starts where
 * the last success ended). Every iteration either advances or spends one of WARDEN_TOPUP_RETRIES
 * top-ups, so the loop is bounded. The caller mapped the shadow already; *done is the bytes mapped.
 */
static int warden_map_direct(struct warden_domain *wd, u64 iova, u64 paddr, u64 pgsize, u64 total,
			     int prot, gfp_t gfp, u64 *done_out)
{
	u64 done = 0;
	int topups = 0, ret = 0;

	while (done < total) {
		struct warden_ret r;

		atomic64_inc(&wd->smmu->map_calls);
		r = warden_call(WARDEN_FID_MAP_PAGES, wd->id, iova + done, paddr + done, pgsize,
				(total - done) / pgsize, (u64)prot & WARDEN_PROT_ALL);
		if (r.status == WARDEN_SUCCESS) {
			if (!r.x1 || r.x1 > total - done || r.x1 % pgsize) {
				pr_err_ratelimited("MAP_PAGES reported %llu bytes of %llu (page size %llu)\n",
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
		/*
		 * An IOVA still queued for a lazy unmap (iommu-dma never reuses one before its
		 * flush): send, retry.
		 */
		if (r.status == WARDEN_E_ALREADY_MAPPED && warden_lazy_flush(wd))
			continue;
		pr_err_ratelimited("MAP_PAGES(domain %llu, IOVA %#llx, PA %#llx, %llu x %#llx, prot %#x) failed: %s\n",
				   wd->id, iova + done, paddr + done, (total - done) / pgsize,
				   pgsize, prot, warden_strerror(r.status));
		ret = warden_errno(r.status);
		break;
	}
	*done_out = done;
	return ret;
}

/*
 * Deferral. In Linux 6.12 ops->map_pages is only called by __iommu_map, whose two callers end the
 * same way: iommu_map() calls iotlb_sync_map(iova, size) right after a successful __iommu_map of
 * [iova, iova + size), and iommu_map_sg() calls it once for [iova, iova + mapped) after mapping
 * every segment (IOVA-contiguous from iova). When a map_pages fails, neither calls iotlb_sync_map:
 * __iommu_map and iommu_map_sg unmap what was mapped so far (iommu_unmap), and an iotlb_sync_map
 * that fails is followed by iommu_unmap of its whole range. So with deferral on, map_pages maps the
 * shadow (if any) and records the run in a free slot of the domain's fixed array (no allocation; it
 * reports the run mapped; with every slot in use it sends it at once, MAP_PAGES),
 * iotlb_sync_map claims every run inside its range and sends them with one MAP_BATCH (one MAP_PAGES
 * when there is one run) before the core returns to its caller, and unmap_pages first drops runs
 * that are still pending (they never reached the hyp). Concurrent mappers in one domain own
 * disjoint IOVA ranges (the DMA API's IOVA allocator; VFIO and iommufd refuse overlapping maps), so
 * each iotlb_sync_map takes exactly its own runs, never another mapper's half-built set. If the
 * flush fails, the shim unmaps what it had sent of that range and takes every run out of the
 * shadow, so the core's own unroll (iommu_unmap of the range) finds nothing mapped.
 */
static bool warden_run_add(struct warden_domain *wd, u64 iova, u64 pa, u64 pgsize, u64 len,
			   int prot, gfp_t gfp);

int warden_map_pages(struct iommu_domain *domain, unsigned long iova, phys_addr_t paddr,
		     size_t pgsize, size_t pgcount, int prot, gfp_t gfp, size_t *mapped)
{
	struct warden_domain *wd = to_warden_domain(domain);
	u64 total, done = 0;
	int ret;

	if (check_mul_overflow((u64)pgsize, (u64)pgcount, &total) || !total || pgsize > U32_MAX)
		return -EINVAL;
	/*
	 * The shadow's tables span the domain's IOVA bits; the hyp refuses anything beyond them
	 * anyway.
	 */
	if ((u64)iova + total < iova || ((u64)iova + total - 1) >> warden_info.iova_bits)
		return -ERANGE;
	/*
	 * Shadow first: a NOMEM fails the map here, before any hypercall (the core unrolls what it
	 * mapped).
	 */
	ret = warden_shadow_map(wd, iova, paddr, pgsize, total, prot, gfp);
	if (ret)
		return ret;
	if (READ_ONCE(map_batch) && warden_batch_ready) {
		if (warden_run_add(wd, iova, paddr, pgsize, total, prot, gfp)) {
			atomic64_inc(&wd->smmu->deferred_maps);
			*mapped += total;
			return 0;
		}
		atomic64_inc(&wd->smmu->pending_full);
	}
	ret = warden_map_direct(wd, iova, paddr, pgsize, total, prot, gfp, &done);
	if (ret)
		warden_shadow_unmap(wd, iova + done, pgsize, total - done);
	*mapped += done;
	return ret;
}

/*
 * One UNMAP_PAGES call; the hyp has cleared the entries, invalidated the SMMU TLBs and waited for
 * the CMD_SYNC before it returns, so the range is unreachable by the time this returns. Then the
 * same bytes leave the shadow (in pages of @shadow_pgsize; 0: they left it already). Returns the
 * bytes the hyp unmapped, 0 for "not mapped".
 */
static u64 warden_unmap_hyp(struct warden_domain *wd, u64 iova, u64 pgsize, u64 pgcount,
			    u64 shadow_pgsize)
{
	int topups;

	for (topups = 0; topups <= WARDEN_TOPUP_RETRIES; topups++) {
		struct warden_ret r;

		atomic64_inc(&wd->smmu->unmap_calls);
		r = warden_call(WARDEN_FID_UNMAP_PAGES, wd->id, iova, pgsize, pgcount, 0, 0);
		if (r.status == WARDEN_SUCCESS) {
			u64 n = min_t(u64, r.x1, pgsize * pgcount);

			if (shadow_pgsize)
				warden_shadow_unmap(wd, iova, shadow_pgsize, n);
			return n;
		}
		/* Splitting a block needs table pages; unmap may run in atomic context. */
		if (r.status == WARDEN_E_NOMEM && !warden_topup(wd->smmu, r.x1, GFP_ATOMIC))
			continue;
		if (r.status != WARDEN_E_NOT_MAPPED)
			pr_err_ratelimited("UNMAP_PAGES(domain %llu, IOVA %#llx, %llu x %#llx) failed: %s\n",
					   wd->id, iova, pgcount, pgsize,
					   warden_strerror(r.status));
		return 0;
	}
	return 0;
}

/* Takes the lowest free pending slot (under pending_lock; the caller checked that one is free). */
static unsigned int warden_run_slot(struct warden_domain *wd)
{
	unsigned int i = ffz(wd->used);

	lockdep_assert_held(&wd->pending_lock);
	__set_bit(i, &wd->used);
	return i;
}

/* Records a run for the next iotlb_sync_map of its range; false when every slot is in use. */
static bool warden_run_add(struct warden_domain *wd, u64 iova, u64 pa, u64 pgsize, u64 len,
			   int prot, gfp_t gfp)
{
	unsigned long flags;
	bool added = false;

	spin_lock_irqsave(&wd->pending_lock, flags);
	if (~wd->used) {
		wd->runs[warden_run_slot(wd)] = (struct warden_run){
			.iova = iova,
			.pa = pa,
			.len = len,
			.pgsize = pgsize,
			.prot = prot,
			.gfp = gfp,
		};
		added = true;
	}
	spin_unlock_irqrestore(&wd->pending_lock, flags);
	return added;
}

/*
 * Drops the pending (never sent, not being sent) part of [iova, end) that starts at iova, and
 * returns its length; 0 if no pending run covers iova. *hyp_len is lowered to where the first
 * pending run inside the range starts.
 */
static u64 warden_pending_take(struct warden_domain *wd, u64 iova, u64 end, u64 *hyp_len)
{
	unsigned long flags, pending;
	unsigned int i;
	u64 taken = 0;

	spin_lock_irqsave(&wd->pending_lock, flags);
	pending = wd->used & ~wd->claimed;
	for_each_set_bit(i, &pending, WARDEN_PENDING_RUNS) {
		struct warden_run *p = &wd->runs[i];
		u64 pend = p->iova + p->len;

		if (pend <= iova || p->iova >= end)
			continue;
		if (p->iova > iova) {
			*hyp_len = min(*hyp_len, p->iova - iova);
			continue;
		}
		taken = min(pend, end) - iova;
		if (p->iova == iova && taken == p->len) {
			__clear_bit(i, &wd->used);
		} else if (p->iova == iova) {
			p->iova += taken;
			p->pa += taken;
			p->len -= taken;
		} else {
			if (pend > end) {
				struct warden_run *tail;

				/* The run's tail stays pending in a slot of its own. */
				if (!~wd->used) {
					taken = 0;
					break;
				}
				tail = &wd->runs[warden_run_slot(wd)];
				*tail = *p;
				tail->iova = end;
				tail->pa = p->pa + (end - p->iova);
				tail->len = pend - end;
			}
			p->len = iova - p->iova;
		}
		break;
	}
	spin_unlock_irqrestore(&wd->pending_lock, flags);
	return taken;
}

/*
 * Lazy (flush-queue) domains. iommu-dma in IOMMU_DOMAIN_DMA_FQ mode (iommu.strict=0, or a group's
 * type DMA-FQ) passes unmap_pages a gather marked queued: it will not reuse the IOVA, nor report
 * the unmap done to anyone who could hand the IOVA out again, before it has called flush_iotlb_all
 * (from its flush-queue timer, at most IOVA_FQ_TIMEOUT later, or when its queue fills). Such an
 * unmap leaves the shadow (if any) at once and is queued in the domain's @lazy page; the queue goes
 * to the hyp with one UNMAP_BATCH when it fills or at flush_iotlb_all, and the hyp clears every
 * range, invalidates once, and only then drops the pages' DMA counts. Until then the range stays
 * mapped in the hyp and its pages stay counted: a device can still reach them (as natively, where
 * the PTE is gone but the IOTLB may keep it until the flush), and the hyp refuses to take them as
 * donations (BUSY), so no page a device can reach ever becomes the hyp's.
 */

/*
 * Sends the queued unmaps of @wd (caller holds lazy_lock) with one UNMAP_BATCH, donating and
 * repeating on NOMEM (block splits); on any other failure each entry goes alone (UNMAP_PAGES; the
 * shadow no longer holds them). Empties the queue.
 */
static void warden_lazy_send_locked(struct warden_domain *wd)
{
	unsigned int n = wd->lazy_n, i;
	struct warden_ret r;
	int topups = 0;

	lockdep_assert_held(&wd->lazy_lock);
	if (!n)
		return;
	for (;;) {
		atomic64_inc(&wd->smmu->unmap_batch_calls);
		r = warden_call(WARDEN_FID_UNMAP_BATCH, wd->id, virt_to_phys(wd->lazy), n, 0, 0, 0);
		if (r.status == WARDEN_SUCCESS && r.x1 == n)
			break;
		if (r.status == WARDEN_E_NOMEM && topups++ < WARDEN_TOPUP_RETRIES &&
		    !warden_topup(wd->smmu, r.x1, GFP_ATOMIC))
			continue;
		pr_err_ratelimited("UNMAP_BATCH(domain %llu, %u ranges from IOVA %#llx) failed at descriptor %lld: %s; unmapping one by one\n",
				   wd->id, n, wd->lazy[0].iova, (long long)r.x2,
				   warden_strerror(r.status));
		for (i = 0; i < n; i++) {
			atomic64_inc(&wd->smmu->lazy_fallbacks);
			warden_unmap_hyp(wd, wd->lazy[i].iova, WARDEN_PAGE_SIZE,
					 wd->lazy[i].len / WARDEN_PAGE_SIZE, 0);
		}
		break;
	}
	wd->lazy_n = 0;
}

/* Sends @wd's queued unmaps now; false if there were none. */
static bool warden_lazy_flush(struct warden_domain *wd)
{
	unsigned long flags;
	bool any;

	if (!READ_ONCE(wd->lazy_n))
		return false;
	spin_lock_irqsave(&wd->lazy_lock, flags);
	any = wd->lazy_n;
	warden_lazy_send_locked(wd);
	spin_unlock_irqrestore(&wd->lazy_lock, flags);
	return any;
}

/*
 * Queues [iova, iova + len) for @wd's next UNMAP_BATCH (merged with the last entry when adjacent),
 * sending the queue when it is full. False when it cannot: no queue, or the domain has a shadow
 * (which holds everything the hyp has mapped) and it did not hold the whole range; the caller then
 * unmaps at once. Without a shadow the range is queued as iommu-dma gives it (it unmaps only what
 * it mapped); should a queued range not be mapped in full, the hyp refuses the UNMAP_BATCH and
 * every entry goes alone (UNMAP_PAGES, counted in lazy_fallbacks).
 */
static bool warden_lazy_add(struct warden_domain *wd, u64 iova, u64 pgsize, u64 len)
{
	struct warden_lazy_entry *last;
	unsigned long flags;

	if (!wd->lazy || (wd->shadow && !warden_shadow_unmap(wd, iova, pgsize, len)))
		return false;
	spin_lock_irqsave(&wd->lazy_lock, flags);
	last = wd->lazy_n ? &wd->lazy[wd->lazy_n - 1] : NULL;
	if (last && last->iova + last->len == iova) {
		last->len += len;
	} else if (last && iova + len == last->iova) {
		last->iova = iova;
		last->len += len;
	} else {
		wd->lazy[wd->lazy_n++] = (struct warden_lazy_entry){ .iova = iova, .len = len };
		if (wd->lazy_n == WARDEN_LAZY_ENTRIES)
			warden_lazy_send_locked(wd);
	}
	spin_unlock_irqrestore(&wd->lazy_lock, flags);
	atomic64_inc(&wd->smmu->lazy_unmaps);
	return true;
}

/*
 * Returns the bytes unmapped from iova on (the core calls again for any remainder and treats 0 as
 * "nothing there"): a pending run's part is just forgotten (and leaves the shadow); a queued (lazy)
 * unmap of what the hyp has is queued; anything else is one UNMAP_PAGES, then the same bytes leave
 * the shadow.
 */
size_t warden_unmap_pages(struct iommu_domain *domain, unsigned long iova, size_t pgsize,
			  size_t pgcount, struct iommu_iotlb_gather *gather)
{
	struct warden_domain *wd = to_warden_domain(domain);
	u64 total, hyp_len;

	if (check_mul_overflow((u64)pgsize, (u64)pgcount, &total) || !total)
		return 0;
	hyp_len = total;
	if (READ_ONCE(wd->used)) {
		u64 n = warden_pending_take(wd, iova, (u64)iova + total, &hyp_len);

		if (n) {
			warden_shadow_unmap(wd, iova, pgsize, n);
			return n;
		}
	}
	if (hyp_len != total)
		return warden_unmap_hyp(wd, iova, WARDEN_PAGE_SIZE, hyp_len / WARDEN_PAGE_SIZE,
					pgsize);
	if (iommu_iotlb_gather_queued(gather) && warden_lazy_add(wd, iova, pgsize, total))
		return total;
	return warden_unmap_hyp(wd, iova, pgsize, pgcount, pgsize);
}

/*
 * Sends the claimed runs @mine (slots only this flush touches until it frees them): one MAP_PAGES
 * for a single run, else MAP_BATCH calls of up to WARDEN_MAP_BATCH_MAX_ENTRIES runs of one prot
 * (one call for a dma_map_sg). Top-ups use the gfp map_pages was given (iotlb_sync_map runs in the
 * same context). On failure what was sent is unmapped from the hyp, and every run leaves the
 * shadow.
 */
static int warden_flush(struct warden_domain *wd, unsigned long mine)
{
	unsigned long todo = mine, sent = 0;
	int ret = 0, topups = 0;
	unsigned int i;

	if (hweight_long(mine) == 1) {
		struct warden_run *p = &wd->runs[__ffs(mine)];
		u64 done;

		ret = warden_map_direct(wd, p->iova, p->pa, WARDEN_PAGE_SIZE, p->len, p->prot,
					p->gfp, &done);
		if (ret) {
			if (done)
				warden_unmap_hyp(wd, p->iova, WARDEN_PAGE_SIZE,
						 done / WARDEN_PAGE_SIZE, p->pgsize);
			warden_shadow_unmap(wd, p->iova + done, p->pgsize, p->len - done);
		}
		return ret;
	}
	while (todo) {
		struct warden_run *first = &wd->runs[__ffs(todo)];
		unsigned long batch = 0;
		struct warden_batch_desc *d;
		unsigned int n = 0;
		struct warden_ret r;

		d = warden_desc_get();
		for_each_set_bit(i, &todo, WARDEN_PENDING_RUNS) {
			struct warden_run *p = &wd->runs[i];

			if (p->prot != first->prot)
				continue;
			d[n].iova = p->iova;
			d[n].pa = p->pa;
			d[n].len = p->len;
			__set_bit(i, &batch);
			if (++n == WARDEN_MAP_BATCH_MAX_ENTRIES)
				break;
		}
		r = warden_call(WARDEN_FID_MAP_BATCH, wd->id, virt_to_phys(d), n,
				(u64)first->prot & WARDEN_PROT_ALL, 0, 0);
		warden_desc_put();
		atomic64_inc(&wd->smmu->batch_calls);
		if (r.status == WARDEN_SUCCESS && r.x1 == n) {
			/* All or nothing: every descriptor of the batch is mapped. */
			todo &= ~batch;
			sent |= batch;
			continue;
		}
		if (r.status == WARDEN_E_NOMEM && topups++ < WARDEN_TOPUP_RETRIES) {
			ret = warden_topup(wd->smmu, r.x1, first->gfp);
			if (!ret)
				continue;
		} else if (r.status == WARDEN_E_ALREADY_MAPPED && warden_lazy_flush(wd)) {
			continue;
		} else if (r.status == WARDEN_SUCCESS) {
			pr_err_ratelimited("MAP_BATCH reported %llu of %u descriptors\n", r.x1, n);
			ret = -EIO;
		} else {
			pr_err_ratelimited("MAP_BATCH(domain %llu, %u runs from IOVA %#llx, prot %#x) failed at descriptor %lld: %s\n",
					   wd->id, n, first->iova, first->prot, (long long)r.x2,
					   warden_strerror(r.status));
			ret = warden_errno(r.status);
		}
		break;
	}
	if (!ret)
		return 0;
	/* Roll back: the core's own unroll (iommu_unmap of the range) then finds nothing mapped. */
	for_each_set_bit(i, &mine, WARDEN_PENDING_RUNS) {
		struct warden_run *p = &wd->runs[i];

		if (!test_bit(i, &sent))
			warden_shadow_unmap(wd, p->iova, p->pgsize, p->len);
		else if (warden_unmap_hyp(wd, p->iova, WARDEN_PAGE_SIZE, p->len / WARDEN_PAGE_SIZE,
					  p->pgsize) != p->len)
			pr_err_ratelimited("domain %llu: rolling back IOVA %#llx (+%#llx) failed\n",
					   wd->id, p->iova, p->len);
	}
	return ret;
}

/*
 * The end of a mapping operation: sends its runs (see the deferral comment above warden_map_pages).
 */
int warden_iotlb_sync_map(struct iommu_domain *domain, unsigned long iova, size_t size)
{
	struct warden_domain *wd = to_warden_domain(domain);
	unsigned long flags, pending, mine = 0;
	u64 end = (u64)iova + size;
	unsigned int i;
	int ret;

	if (!READ_ONCE(wd->used))
		return 0;
	spin_lock_irqsave(&wd->pending_lock, flags);
	pending = wd->used & ~wd->claimed;
	for_each_set_bit(i, &pending, WARDEN_PENDING_RUNS) {
		struct warden_run *p = &wd->runs[i];

		if (p->iova >= iova && p->iova + p->len <= end)
			__set_bit(i, &mine);
	}
	wd->claimed |= mine;
	spin_unlock_irqrestore(&wd->pending_lock, flags);
	if (!mine)
		return 0;
	ret = warden_flush(wd, mine);
	spin_lock_irqsave(&wd->pending_lock, flags);
	wd->used &= ~mine;
	wd->claimed &= ~mine;
	spin_unlock_irqrestore(&wd->pending_lock, flags);
	return ret;
}

/*
 * TLB maintenance is the hyp's: UNMAP_PAGES and UNMAP_BATCH return only after the SMMU invalidated
 * and completed a CMD_SYNC (and only then drop the pages' counts), and MAP_PAGES only fills entries
 * that were invalid, which the SMMU never caches. flush_iotlb_all is iommu-dma's flush-queue flush:
 * it sends the lazy queue. iotlb_sync follows unmaps that were not queued, which were synchronous:
 * nothing to do.
 */
void warden_flush_iotlb_all(struct iommu_domain *domain)
{
	warden_lazy_flush(to_warden_domain(domain));
}

void warden_iotlb_sync(struct iommu_domain *domain, struct iommu_iotlb_gather *gather)
{
}
