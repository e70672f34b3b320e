// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * warden.ko: makes the Warden hypervisor the kernel's IOMMU.
 *
 * Load: find Warden through SMCCC (vendor-hyp Call UID = the Warden UUID, VERSION major = the ABI
 * major this module speaks) or refuse with -ENODEV; then bind the platform driver to the
 * device-tree node the hyp relabelled WARDEN_DT_COMPATIBLE (the SMMU node: same phandle, so every
 * iommu-map still points at it) and register an iommu_device for it (warden_iommu.c holds the
 * iommu_ops), start fault reporting (warden_fault.c) and create the debugfs files
 * (warden_debugfs.c).
 *
 * Unload: every probed device holds a reference on this module (the iommu core's
 * try_module_get(ops->owner)), so rmmod is refused while the iommu_device is registered. Writing 1
 * to the iommu device's sysfs attribute /sys/class/iommu/warden/release unregisters it: every
 * device goes back to host-identity and every domain is freed; it is refused (-EBUSY, naming the
 * devices) while a device with a driver bound is in a translated or blocked domain, or a group is
 * owned by VFIO. After that, rmmod reclaims the donated pages and frees the blocked domain. See
 * README.md.
 *
 * Lifetime: the instance (struct warden_smmu) is reached only through its devices (the platform
 * device's drvdata, the iommu device's drvdata, a master's @smmu), never through a global; it is
 * freed by remove after the iommu device and its sysfs attributes are gone (device removal waits
 * for running attribute callbacks).
 */
#define pr_fmt(fmt) "warden: " fmt

#include <linux/arm-smccc.h>
#include <linux/device.h>
#include <linux/iommu.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/of.h>
#include <linux/of_address.h>
#include <linux/platform_device.h>
#include <linux/slab.h>

#include "warden.h"

enum arm_smccc_conduit warden_conduit = SMCCC_CONDUIT_NONE;
struct warden_info warden_info;

/* Serialises release against probe/remove; guards @warden_probed. */
static DEFINE_MUTEX(warden_lifecycle_lock);
/* A node was probed and not removed (only one paravirtual SMMU is supported). */
static bool warden_probed;

/* ---- discovery ---- */

/*
 * KVM's vendor-hyp UID (28b46fb6-2ec5-11e9-a9ca-4b564d003a74), to say which hypervisor was found
 * instead.
 */
static const u32 kvm_uid[4] = { 0xb66fb428U, 0xe911c52eU, 0x564bcaa9U, 0x743a004dU };
static const u32 warden_uid[4] = { WARDEN_UUID_W0, WARDEN_UUID_W1, WARDEN_UUID_W2, WARDEN_UUID_W3 };

static int warden_discover(void)
{
	struct warden_ret r;
	u32 uid[4];
	u64 limits;

	warden_conduit = arm_smccc_1_1_get_conduit();
	if (warden_conduit == SMCCC_CONDUIT_NONE) {
		pr_err("no SMCCC 1.1 conduit (firmware SMCCC version %#x): this kernel is not running under the Warden hypervisor; refusing to load\n",
		       arm_smccc_get_version());
		return -ENODEV;
	}
	r = warden_call0(WARDEN_SMCCC_VENDOR_HYP_CALL_UID);
	uid[0] = (u32)r.status;
	uid[1] = (u32)r.x1;
	uid[2] = (u32)r.x2;
	uid[3] = (u32)r.x3;
	if (memcmp(uid, warden_uid, sizeof(uid))) {
		if (r.status == WARDEN_E_NOT_SUPPORTED || uid[0] == (u32)SMCCC_RET_NOT_SUPPORTED)
			pr_err("the vendor-hyp Call UID query is not supported (%s conduit): this kernel is not running under the Warden hypervisor; refusing to load\n",
			       warden_conduit == SMCCC_CONDUIT_HVC ? "HVC" : "SMC");
		else
			pr_err("vendor-hyp UID is %08x %08x %08x %08x%s, not Warden's %08x %08x %08x %08x: this kernel is not running under the Warden hypervisor; refusing to load\n",
			       uid[0], uid[1], uid[2], uid[3],
			       memcmp(uid, kvm_uid, sizeof(uid)) ? "" : " (KVM)",
			       warden_uid[0], warden_uid[1], warden_uid[2], warden_uid[3]);
		return -ENODEV;
	}
	r = warden_call0(WARDEN_FID_VERSION);
	if (r.status != WARDEN_SUCCESS) {
		pr_err("running under Warden, but its VERSION call failed (%s); refusing to load\n",
		       warden_strerror(r.status));
		return -ENODEV;
	}
	warden_info.major = (r.x1 >> WARDEN_VERSION_MAJOR_SHIFT) & 0xffff;
	warden_info.minor = (r.x1 >> WARDEN_VERSION_MINOR_SHIFT) & 0xffff;
	warden_info.features = (u32)(r.x1 >> WARDEN_VERSION_FEATURES_SHIFT);
	if (warden_info.major != WARDEN_ABI_VERSION_MAJOR) {
		pr_err("the hypervisor speaks Warden ABI %u.%u, this module speaks %u.%u (majors differ); refusing to load\n",
		       warden_info.major, warden_info.minor, WARDEN_ABI_VERSION_MAJOR,
		       WARDEN_ABI_VERSION_MINOR);
		return -ENODEV;
	}
	warden_info.pgsize_bitmap = r.x2 & WARDEN_PGSIZE_BITMAP;
	limits = r.x3;
	warden_info.max_domains = (limits >> WARDEN_LIMITS_MAX_DOMAINS_SHIFT) &
				  WARDEN_LIMITS_MASK_16;
	warden_info.iova_bits = (limits >> WARDEN_LIMITS_IOVA_BITS_SHIFT) & WARDEN_LIMITS_MASK_8;
	warden_info.pa_bits = (limits >> WARDEN_LIMITS_PA_BITS_SHIFT) & WARDEN_LIMITS_MASK_8;
	warden_info.vmid_bits = (limits >> WARDEN_LIMITS_VMID_BITS_SHIFT) & WARDEN_LIMITS_MASK_8;
	warden_info.max_donated_pages = (limits >> WARDEN_LIMITS_MAX_DONATED_SHIFT) &
					WARDEN_LIMITS_MASK_24;
	if (!(warden_info.pgsize_bitmap & WARDEN_PGSIZE_4K) || warden_info.iova_bits < 32 ||
	    warden_info.iova_bits > 52) {
		pr_err("Warden ABI %u.%u reports unusable limits (page sizes %#llx, %u IOVA bits); refusing to load\n",
		       warden_info.major, warden_info.minor, r.x2, warden_info.iova_bits);
		return -ENODEV;
	}
	pr_info("Warden hypervisor found: ABI %u.%u (module %u.%u), features %#x, page sizes %#llx, %u IOVA bits, %u PA bits, %u domains, %u donated pages max\n",
		warden_info.major, warden_info.minor, WARDEN_ABI_VERSION_MAJOR,
		WARDEN_ABI_VERSION_MINOR, warden_info.features, warden_info.pgsize_bitmap,
		warden_info.iova_bits, warden_info.pa_bits, warden_info.max_domains,
		warden_info.max_donated_pages);
	return 0;
}

/* ---- release (the step before rmmod) ---- */

/*
 * Unregisters the iommu_device: the core releases every master (release_device: back to
 * host-identity) and frees every default domain. Its sysfs device (with the release attribute)
 * stays until teardown. Caller holds warden_lifecycle_lock.
 */
static void warden_unregister(struct warden_smmu *smmu)
{
	if (smmu->registered) {
		iommu_device_unregister(&smmu->iommu);
		WRITE_ONCE(smmu->registered, false);
	}
}

/*
 * Releases every master unless one is in use: refused (-EBUSY, naming the device) while a master
 * outside host-identity has a driver bound (the driver holds IOVAs that would turn into physical
 * addresses) or is being bound or unbound right now, or while its group is owned by a user such as
 * VFIO.
 *
 * The device lock of every translated master is held (trylock: never waits, so no lock-order
 * problem) from the check until the masters are released, so no driver can bind to one of them in
 * between. Core calls are made with smmu->lock dropped (the core's group mutex ranks above it).
 * Caller holds warden_lifecycle_lock.
 */
static int warden_release(struct warden_smmu *smmu)
{
	struct warden_master *m;
	struct device **devs;
	u8 *state; /* bit 0: translated, bit 1: device lock held */
	unsigned int n = 0, i, busy = 0;

	mutex_lock(&smmu->lock);
	list_for_each_entry(m, &smmu->masters, node)
		n++;
	devs = kcalloc(n ?: 1, sizeof(*devs), GFP_KERNEL);
	state = kcalloc(n ?: 1, sizeof(*state), GFP_KERNEL);
	if (!devs || !state) {
		mutex_unlock(&smmu->lock);
		kfree(devs);
		kfree(state);
		return -ENOMEM;
	}
	i = 0;
	list_for_each_entry(m, &smmu->masters, node) {
		devs[i] = get_device(m->dev);
		state[i] = m->domain != &warden_identity_domain;
		i++;
	}
	mutex_unlock(&smmu->lock);

	for (i = 0; i < n; i++) {
		struct iommu_group *group;

		if (state[i] & 1) {
			if (!device_trylock(devs[i])) {
				dev_err(devs[i], "cannot release: a driver is being bound or unbound; retry\n");
				busy++;
				continue;
			}
			state[i] |= 2;
			if (devs[i]->driver) {
				dev_err(devs[i], "cannot release: driver %s is bound and uses a translated domain; unbind it first\n",
					devs[i]->driver->name);
				busy++;
				continue;
			}
		}
		group = iommu_group_get(devs[i]);
		if (group && iommu_group_dma_owner_claimed(group)) {
			dev_err(devs[i], "cannot release: its IOMMU group is owned by a user (VFIO?); close it first\n");
			busy++;
		}
		iommu_group_put(group);
	}
	if (!busy)
		warden_unregister(smmu);
	for (i = 0; i < n; i++) {
		if (state[i] & 2)
			device_unlock(devs[i]);
		put_device(devs[i]);
	}
	kfree(devs);
	kfree(state);
	return busy ? -EBUSY : 0;
}

static struct warden_smmu *warden_smmu_from_sysfs(struct device *dev)
{
	return container_of(dev_to_iommu_device(dev), struct warden_smmu, iommu);
}

/*
 * /sys/class/iommu/warden/release: writing 1 (any kstrtobool "true") releases every device (see
 * warden_release); reading says whether that was done (1) or the IOMMU is still registered (0). The
 * callback runs with the attribute active, so the instance cannot be freed under it (teardown
 * removes the attribute first, which waits for it); it only tries the lifecycle lock, as that
 * teardown holds it while removing.
 */
static ssize_t release_store(struct device *dev, struct device_attribute *attr, const char *buf,
			     size_t count)
{
	struct warden_smmu *smmu = warden_smmu_from_sysfs(dev);
	bool yes;
	int ret;

	ret = kstrtobool(buf, &yes);
	if (ret)
		return ret;
	if (!yes)
		return count;
	if (!mutex_trylock(&warden_lifecycle_lock))
		return restart_syscall();
	ret = 0;
	if (smmu->registered) {
		ret = warden_release(smmu);
		if (!ret)
			dev_info(smmu->dev,
				 "released: every device is back in host-identity; rmmod warden may proceed\n");
	}
	mutex_unlock(&warden_lifecycle_lock);
	return ret ?: count;
}

static ssize_t release_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", !READ_ONCE(warden_smmu_from_sysfs(dev)->registered));
}
static DEVICE_ATTR_RW(release);

static struct attribute *warden_sysfs_attrs[] = {
	&dev_attr_release.attr,
	NULL,
};

static const struct attribute_group warden_sysfs_group = {
	.attrs = warden_sysfs_attrs,
};

static const struct attribute_group *warden_sysfs_groups[] = {
	&warden_sysfs_group,
	NULL,
};

/* ---- platform driver ---- */

/* Undoes probe (caller holds warden_lifecycle_lock); the caller then frees @smmu. */
static void warden_teardown(struct warden_smmu *smmu)
{
	warden_events_stop(smmu);
	warden_debugfs_exit(smmu);
	warden_unregister(smmu);
	if (smmu->sysfs_added) {
		/*
		 * Waits for a running release_store/show (which only trylock
		 * warden_lifecycle_lock).
		 */
		iommu_device_sysfs_remove(&smmu->iommu);
		smmu->sysfs_added = false;
	}
	if (atomic_read(&smmu->live_domains))
		dev_err(smmu->dev, "%d paging domains still allocated at teardown\n",
			atomic_read(&smmu->live_domains));
	if (smmu->have_blocked && !warden_free_hyp_domain(smmu, smmu->blocked_id))
		smmu->have_blocked = false;
	warden_reclaim_all(smmu);
	warden_probed = false;
}

static int warden_probe(struct platform_device *pdev)
{
	struct device *dev = &pdev->dev;
	struct warden_smmu *smmu;
	int ret;

	mutex_lock(&warden_lifecycle_lock);
	if (warden_probed) {
		dev_err(dev, "a second %s node: only one paravirtual SMMU is supported\n",
			WARDEN_DT_COMPATIBLE);
		ret = -EBUSY;
		goto out_unlock;
	}
	smmu = kzalloc(sizeof(*smmu), GFP_KERNEL);
	if (!smmu) {
		ret = -ENOMEM;
		goto out_unlock;
	}
	smmu->dev = dev;
	mutex_init(&smmu->lock);
	INIT_LIST_HEAD(&smmu->masters);
	spin_lock_init(&smmu->donate_lock);
	INIT_LIST_HEAD(&smmu->donations);
	warden_events_init(smmu);
	smmu->coherent = of_dma_is_coherent(dev->of_node);
	platform_set_drvdata(pdev, smmu);

	warden_probed = true;
	ret = warden_alloc_hyp_domain(smmu, WARDEN_DOMAIN_BLOCKED, &smmu->blocked_id);
	if (ret) {
		dev_err(dev, "cannot allocate the hyp's blocked domain (%d)\n", ret);
		goto err_teardown;
	}
	smmu->have_blocked = true;

	ret = iommu_device_sysfs_add(&smmu->iommu, dev, warden_sysfs_groups, "warden");
	if (ret)
		goto err_teardown;
	smmu->sysfs_added = true;
	/*
	 * Probes every device whose fwspec names this node (none before the first client driver
	 * binds).
	 */
	ret = iommu_device_register(&smmu->iommu, &warden_iommu_ops, dev);
	if (ret) {
		dev_err(dev, "iommu_device_register failed (%d)\n", ret);
		goto err_teardown;
	}
	WRITE_ONCE(smmu->registered, true);

	warden_debugfs_init(smmu);
	warden_events_start(smmu, pdev);
	dev_info(dev, "Warden paravirtual SMMU: IOMMU registered (%s DMA, faults: %s)\n",
		 smmu->coherent ? "coherent" : "non-coherent", warden_events_mode(smmu));
	mutex_unlock(&warden_lifecycle_lock);
	return 0;

err_teardown:
	warden_teardown(smmu);
	platform_set_drvdata(pdev, NULL);
	kfree(smmu);
out_unlock:
	mutex_unlock(&warden_lifecycle_lock);
	return ret;
}

static void warden_remove(struct platform_device *pdev)
{
	struct warden_smmu *smmu = platform_get_drvdata(pdev);

	if (!smmu)
		return;
	/*
	 * Reached from rmmod only (bind attributes are suppressed), and rmmod only gets here with
	 * no module reference left, i.e. no master probed: unregistering cannot pull a domain from
	 * under a driver.
	 */
	mutex_lock(&warden_lifecycle_lock);
	warden_teardown(smmu);
	mutex_unlock(&warden_lifecycle_lock);
	platform_set_drvdata(pdev, NULL);
	kfree(smmu);
}

static const struct of_device_id warden_of_match[] = {
	{ .compatible = WARDEN_DT_COMPATIBLE },
	{ }
};
MODULE_DEVICE_TABLE(of, warden_of_match);

static struct platform_driver warden_driver = {
	.driver = {
		.name = WARDEN_MODULE_NAME,
		.of_match_table = warden_of_match,
		.suppress_bind_attrs = true,
	},
	.remove = warden_remove,
};

static int __init warden_init(void)
{
	int ret = warden_discover();

	if (ret)
		return ret;
	warden_batch_init();
	/*
	 * Synchronous, no deferral: the module refuses to load when the node is missing or probing
	 * fails.
	 */
	ret = platform_driver_probe(&warden_driver, warden_probe);
	if (ret == -ENODEV)
		pr_err("Warden found, but no usable \"%s\" node in the device tree; refusing to load\n",
		       WARDEN_DT_COMPATIBLE);
	if (ret)
		warden_batch_exit();
	return ret;
}

static void __exit warden_exit(void)
{
	platform_driver_unregister(&warden_driver);
	warden_batch_exit();
}

module_init(warden_init);
module_exit(warden_exit);

MODULE_DESCRIPTION("Warden hypervisor paravirtual IOMMU (host shim)");
MODULE_AUTHOR("The Warden authors");
MODULE_LICENSE("Dual MIT/GPL");
