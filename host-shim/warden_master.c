// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * Masters: the devices behind a Warden SMMU node, and the domain their StreamIDs are in.
 * probe_device records a device's StreamIDs (each once) in host-identity, where the hyp keeps
 * every SID that no shim instance has moved; release_device puts them back there. The
 * probe-ordering policy (a device whose driver is already bound keeps direct DMA) lives in
 * def_domain_type. Attach moves every SID of a master into the hyp domain behind an
 * iommu_domain: the static identity (the hyp's host-identity) and blocked domains are defined
 * here, paging domains in warden_iommu.c (allocation, free) and warden_map.c (map/unmap).
 */
#define pr_fmt(fmt) "warden: " fmt

#include <linux/device.h>
#include <linux/iommu.h>
#include <linux/of_iommu.h>
#include <linux/overflow.h>
#include <linux/pci.h>
#include <linux/platform_device.h>
#include <linux/slab.h>

#include "warden.h"

int warden_of_xlate(struct device *dev, const struct of_phandle_args *args)
{
	if (args->args_count != 1)
		return -EINVAL;
	return iommu_fwspec_add_ids(dev, args->args, 1);
}

/*
 * The instance the SMMU node @fwnode was probed as (its platform device's drvdata), or NULL. The
 * core calls probe_device only while that instance's iommu_device is registered, and remove
 * unregisters it before freeing.
 */
static struct warden_smmu *warden_smmu_get_by_fwnode(struct fwnode_handle *fwnode)
{
	struct device *dev = bus_find_device_by_fwnode(&platform_bus_type, fwnode);
	struct warden_smmu *smmu;

	if (!dev)
		return NULL;
	smmu = dev_get_drvdata(dev);
	put_device(dev);
	return smmu && smmu->iommu.fwnode == fwnode ? smmu : NULL;
}

struct iommu_device *warden_probe_device(struct device *dev)
{
	struct iommu_fwspec *fwspec = dev_iommu_fwspec_get(dev);
	struct warden_master *master;
	struct warden_smmu *smmu;
	unsigned int i, j, n = 0;

	if (!fwspec || !fwspec->num_ids)
		return ERR_PTR(-ENODEV);
	smmu = warden_smmu_get_by_fwnode(fwspec->iommu_fwnode);
	if (!smmu)
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
	/*
	 * Every SID starts (or, after a previous shim instance, was left) in the hyp's
	 * host-identity domain.
	 */
	master->domain = &warden_identity_domain;
	/*
	 * Probe-ordering policy: a driver already bound means the device has been doing direct DMA
	 * with physical addresses through host-identity; moving it to a translated domain under the
	 * driver's feet would break it. It keeps IOMMU_DOMAIN_IDENTITY (def_domain_type). During a
	 * driver's own probe (dma_configure), device_is_bound() is still false, so newly bound
	 * devices get translated DMA domains.
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

void warden_release_device(struct device *dev)
{
	struct warden_master *master = dev_iommu_priv_get(dev);
	struct warden_smmu *smmu;

	if (!master)
		return;
	smmu = master->smmu;
	mutex_lock(&smmu->lock);
	/* Back to host-identity: after release the device does direct DMA (or is re-probed). */
	if (master->domain != &warden_identity_domain) {
		int ret = warden_master_set_domain(master, &warden_identity_domain);

		/*
		 * Release cannot fail: the SIDs stay where the hyp has them (set_domain named
		 * them).
		 */
		if (ret)
			dev_err(dev, "release: its SIDs could not go back to host-identity (%d)\n",
				ret);
	}
	list_del(&master->node);
	mutex_unlock(&smmu->lock);
	kfree(master);
}

struct iommu_group *warden_device_group(struct device *dev)
{
	if (dev_is_pci(dev))
		return pci_device_group(dev);
	return generic_device_group(dev);
}

int warden_def_domain_type(struct device *dev)
{
	struct warden_master *master = dev_iommu_priv_get(dev);

	if (master && master->bound_at_probe)
		return IOMMU_DOMAIN_IDENTITY;
	/* the kernel's default: DMA (strict or lazy), or identity with iommu.passthrough=1 */
	return 0;
}

void warden_get_resv_regions(struct device *dev, struct list_head *head)
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

/* ---- attach: a master's SIDs into a domain ---- */

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

/* "host-identity", "blocked" or "paging": the kind of domain @domain is, for log lines. */
const char *warden_domain_name(struct iommu_domain *domain)
{
	if (domain == &warden_identity_domain)
		return "host-identity";
	if (domain == &warden_blocked_domain)
		return "blocked";
	return "paging";
}

/*
 * Moves every SID of @master to @domain. On a failure the SIDs already moved go back to the
 * master's previous domain, so the master stays wholly in one domain. Caller holds smmu->lock.
 */
int warden_master_set_domain(struct warden_master *master, struct iommu_domain *domain)
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
		dev_err(master->dev, "attaching SID %#x to the %s domain failed: %s\n",
			master->sids[i], warden_domain_name(domain), warden_strerror(status));
		for (j = 0; j < i; j++) {
			long undo = warden_sid_set(smmu, master->sids[j], old);

			if (undo != WARDEN_SUCCESS)
				dev_err(master->dev,
					"restoring SID %#x to its %s domain failed: %s\n",
					master->sids[j], warden_domain_name(old),
					warden_strerror(undo));
		}
		if (status == WARDEN_E_NOMEM)
			return -ENOMEM;
		return status == WARDEN_E_LIMIT ? -ENOSPC : -ENODEV;
	}
	master->domain = domain;
	return 0;
}

int warden_attach_dev(struct iommu_domain *domain, struct device *dev)
{
	struct warden_master *master = dev_iommu_priv_get(dev);
	int ret;

	if (!master)
		return -ENODEV;
	/*
	 * Only the two static domains and this driver's paging domains (same default ops) can be
	 * attached.
	 */
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

/*
 * IOMMU_DOMAIN_IDENTITY: the hyp's built-in host-identity domain (all host RAM 1:1); attach =
 * DETACH.
 */
struct iommu_domain warden_identity_domain = {
	.type = IOMMU_DOMAIN_IDENTITY,
	.ops = &warden_identity_ops,
};

static const struct iommu_domain_ops warden_blocked_ops = {
	.attach_dev = warden_attach_dev,
};

/*
 * IOMMU_DOMAIN_BLOCKED: one hyp BLOCKED domain shared by every blocked master (every DMA aborts).
 */
struct iommu_domain warden_blocked_domain = {
	.type = IOMMU_DOMAIN_BLOCKED,
	.ops = &warden_blocked_ops,
};
