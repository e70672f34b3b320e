// SPDX-License-Identifier: GPL-2.0
/*
 * warden_lazy: checks at insmod, on a device in a lazy (IOMMU_DOMAIN_DMA_FQ) domain under Warden, that a page
 * whose unmap iommu-dma's flush queue still holds cannot be donated to the hypervisor, and can be once the
 * queue was flushed:
 *
 *   insmod warden_lazy.ko [dev=0000:00:02.0]     (default: the first NVMe controller)
 *   -> 0 and "warden_lazy: ok: ..." lines, or an error and the reason in the log.
 *
 * Each attempt maps a fresh page for DMA (dma_map_single), unmaps it (the shim queues the unmap for its next
 * UNMAP_BATCH), and at once asks the hypervisor to take the page (DONATE, raw SMCCC), with interrupts off so
 * that this CPU's flush-queue timer cannot run in between. If the hypervisor counted no UNMAP_BATCH meanwhile
 * (STAT calls of UNMAP_BATCH, read before the unmap and after the DONATE), the unmap was still queued and the
 * DONATE must be refused with BUSY; an attempt that a flush from another CPU overtook proves nothing and is
 * repeated (up to WL_ATTEMPTS). Then, after the flush-queue timeout, the same page must be accepted (DONATE
 * succeeds), and is given back (RECLAIM) and freed.
 */
#define pr_fmt(fmt) "warden_lazy: " fmt

#include <linux/arm-smccc.h>
#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/gfp.h>
#include <linux/iommu.h>
#include <linux/irqflags.h>
#include <linux/module.h>
#include <linux/pci.h>

#include "warden_abi.h"

#define WL_ATTEMPTS 20
/* Longer than iommu-dma's flush-queue timeout (IOVA_FQ_TIMEOUT, 10 ms). */
#define WL_FLUSH_WAIT_MS 100

static char *dev;
module_param(dev, charp, 0444);
MODULE_PARM_DESC(dev, "PCI device in a DMA-FQ domain (default: the first NVMe controller)");

static struct arm_smccc_res wl_call(u32 fid, u64 a1, u64 a2)
{
	struct arm_smccc_res res;

	arm_smccc_1_1_invoke(fid, a1, a2, &res);
	return res;
}

static u64 wl_batches(void)
{
	return wl_call(WARDEN_FID_STAT, WARDEN_STAT_CALLS_BASE + WARDEN_FN_UNMAP_BATCH, 0).a1;
}

static bool wl_under_warden(void)
{
	struct arm_smccc_res r;

	if (arm_smccc_1_1_get_conduit() == SMCCC_CONDUIT_NONE)
		return false;
	r = wl_call(WARDEN_SMCCC_VENDOR_HYP_CALL_UID, 0, 0);
	return (u32)r.a0 == WARDEN_UUID_W0 && (u32)r.a1 == WARDEN_UUID_W1 && (u32)r.a2 == WARDEN_UUID_W2 &&
	       (u32)r.a3 == WARDEN_UUID_W3;
}

/*
 * One attempt on a fresh page: map, unmap, DONATE. Returns 1 (the unmap was still queued and DONATE said BUSY),
 * 0 (a flush overtook it: inconclusive, the page is freed), or a negative errno (DONATE took a page whose unmap
 * no UNMAP_BATCH had sent, or something failed). On 1, *out is the page, for the caller to free.
 */
static int wl_attempt(struct device *d, struct page **out)
{
	struct page *p = alloc_page(GFP_KERNEL | __GFP_ZERO);
	struct arm_smccc_res r;
	unsigned long flags;
	u64 before, after;
	dma_addr_t a;

	if (!p)
		return -ENOMEM;
	a = dma_map_single(d, page_address(p), PAGE_SIZE, DMA_TO_DEVICE);
	if (dma_mapping_error(d, a)) {
		__free_page(p);
		return -ENOMEM;
	}
	local_irq_save(flags);
	before = wl_batches();
	dma_unmap_single(d, a, PAGE_SIZE, DMA_TO_DEVICE);
	r = wl_call(WARDEN_FID_DONATE, page_to_phys(p), PAGE_SIZE / WARDEN_PAGE_SIZE);
	after = wl_batches();
	local_irq_restore(flags);
	if ((long)r.a0 == WARDEN_SUCCESS) {
		/* The hyp owns the page now: it must never go back to Linux without RECLAIM. */
		r = wl_call(WARDEN_FID_RECLAIM, page_to_phys(p), PAGE_SIZE / WARDEN_PAGE_SIZE);
		if ((long)r.a0 != WARDEN_SUCCESS) {
			pr_err("RECLAIM of %pa failed (%ld): the page is leaked\n", &(phys_addr_t){ page_to_phys(p) },
			       (long)r.a0);
			return -EIO;
		}
		__free_page(p);
		if (after == before) {
			pr_err("DONATE took a page whose unmap no UNMAP_BATCH had sent (IOVA %pad)\n", &a);
			return -EPERM;
		}
		return 0;
	}
	if ((long)r.a0 != WARDEN_E_BUSY) {
		pr_err("DONATE of a queued page: %ld, expected BUSY (%d)\n", (long)r.a0, WARDEN_E_BUSY);
		__free_page(p);
		return -EIO;
	}
	if (after != before) {
		/* Refused, but a flush ran meanwhile: consistent, yet not the case this test is about. */
		__free_page(p);
		return 0;
	}
	*out = p;
	return 1;
}

static int __init warden_lazy_init(void)
{
	struct iommu_domain *domain;
	struct pci_dev *pdev = NULL;
	struct page *p = NULL;
	struct arm_smccc_res r;
	struct device *d;
	int i, ret = 0;

	if (!wl_under_warden()) {
		pr_err("not running under the Warden hypervisor\n");
		return -ENODEV;
	}
	if (dev && *dev)
		d = bus_find_device_by_name(&pci_bus_type, NULL, dev);
	else
		d = (pdev = pci_get_class(PCI_CLASS_STORAGE_EXPRESS, NULL)) ? &pdev->dev : NULL;
	if (!d || !d->driver) {
		pr_err("no such PCI device with a driver (%s)\n", dev && *dev ? dev : "first NVMe controller");
		ret = -ENODEV;
		goto out;
	}
	domain = iommu_get_domain_for_dev(d);
	if (!domain || domain->type != IOMMU_DOMAIN_DMA_FQ) {
		pr_err("%s is not in a lazy (DMA-FQ) domain (type %#x)\n", dev_name(d), domain ? domain->type : 0);
		ret = -EINVAL;
		goto out;
	}
	for (i = 0; i < WL_ATTEMPTS; i++) {
		ret = wl_attempt(d, &p);
		if (ret)
			break;
	}
	if (ret < 0)
		goto out;
	if (!ret) {
		pr_err("every one of %d attempts was overtaken by a flush: nothing shown\n", WL_ATTEMPTS);
		ret = -EAGAIN;
		goto out;
	}
	pr_info("ok: DONATE of a page still queued for a lazy unmap refused with BUSY (attempt %d)\n", i + 1);
	msleep(WL_FLUSH_WAIT_MS);
	r = wl_call(WARDEN_FID_DONATE, page_to_phys(p), PAGE_SIZE / WARDEN_PAGE_SIZE);
	if ((long)r.a0 != WARDEN_SUCCESS) {
		pr_err("DONATE after the flush-queue timeout: %ld, expected success\n", (long)r.a0);
		__free_page(p);
		ret = -EIO;
		goto out;
	}
	r = wl_call(WARDEN_FID_RECLAIM, page_to_phys(p), PAGE_SIZE / WARDEN_PAGE_SIZE);
	if ((long)r.a0 != WARDEN_SUCCESS) {
		pr_err("RECLAIM failed (%ld): the page is leaked\n", (long)r.a0);
		ret = -EIO;
		goto out;
	}
	__free_page(p);
	pr_info("ok: after the flush the same page was donated and reclaimed\n");
	ret = 0;
out:
	put_device(d);
	return ret;
}

static void __exit warden_lazy_exit(void)
{
}

module_init(warden_lazy_init);
module_exit(warden_lazy_exit);
MODULE_DESCRIPTION("Warden test: pages queued for a lazy unmap are not donatable until the flush");
MODULE_LICENSE("GPL");
