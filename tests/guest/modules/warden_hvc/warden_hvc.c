// SPDX-License-Identifier: GPL-2.0
/*
 * warden_hvc: a test-only misc device, /dev/warden_hvc, for raw hypercall tests of the Warden ABI (docs/abi.md)
 * from user space (tests/guest/src/hvc.c, tests/qemu/hvc_*.sh). ioctls (warden_hvc.h):
 *
 * - WARDEN_HVC_CALL: any SMCCC 1.1 call, fid + x1..x6 in, x0..x3 out, through arm_smccc_1_1_invoke (the
 *   conduit PSCI uses: SMC on QEMU virt, trapped by the hypervisor). No check on the function ID: the point is
 *   to send the hypervisor whatever a hostile or buggy host could.
 * - WARDEN_HVC_ALLOC / WARDEN_HVC_FREE: physically contiguous, zeroed-then-filled host pages whose PA the
 *   caller may DONATE. Allocations are module-wide (not per open file), because shell scripts run one process
 *   per step: they live until FREE or rmmod.
 * - WARDEN_HVC_NONZERO: counts the non-zero words of pages of an allocation (through the kernel's linear map),
 *   to check that reclaimed pages come back zeroed. Only for pages the host owns again: reading a donated page
 *   here would be an external abort in the kernel.
 *
 * Freeing (FREE, rmmod) first RECLAIMs every page of the allocation, one page per call: a page that is still
 * donated and cannot be reclaimed (BUSY: the hypervisor holds a page table in it) would fault the kernel when
 * reused, so such an allocation is leaked with a warning instead of being freed.
 *
 * Root only (CAP_SYS_RAWIO), test machines only.
 */
#include <linux/arm-smccc.h>
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/ioctl.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "warden_abi.h"
#include "warden_hvc.h"

struct warden_hvc_alloc {
	struct list_head node;
	void *va;
	phys_addr_t pa;
	unsigned long count;
};

static LIST_HEAD(allocs);
static DEFINE_MUTEX(allocs_lock);

static struct warden_hvc_alloc *find_locked(phys_addr_t pa, unsigned long count)
{
	struct warden_hvc_alloc *a;

	list_for_each_entry(a, &allocs, node) {
		if (pa >= a->pa && count <= a->count && pa + count * PAGE_SIZE <= a->pa + a->count * PAGE_SIZE)
			return a;
	}
	return NULL;
}

/* Reclaims every page of @a (pages that were never donated answer NOT_DONATED); frees it if all came back. */
static void release_locked(struct warden_hvc_alloc *a)
{
	unsigned long i, stuck = 0;

	list_del(&a->node);
	for (i = 0; i < a->count; i++) {
		struct arm_smccc_res res;

		arm_smccc_1_1_invoke(WARDEN_FID_RECLAIM, a->pa + i * PAGE_SIZE, 1, &res);
		/* NOT_SUPPORTED: no hypervisor (a native boot), nothing can be donated. */
		if ((long)res.a0 != 0 && (long)res.a0 != WARDEN_E_NOT_DONATED &&
		    (long)res.a0 != SMCCC_RET_NOT_SUPPORTED)
			stuck++;
	}
	if (stuck) {
		pr_warn("warden_hvc: %lu page(s) at %pa still donated: leaking %lu page(s)\n", stuck, &a->pa,
			a->count);
	} else {
		free_pages_exact(a->va, a->count * PAGE_SIZE);
	}
	kfree(a);
}

static long do_call(void __user *arg)
{
	struct warden_hvc_call c;
	struct arm_smccc_res res;

	if (copy_from_user(&c, arg, sizeof(c)))
		return -EFAULT;
	arm_smccc_1_1_invoke((unsigned long)c.fid, c.x[0], c.x[1], c.x[2], c.x[3], c.x[4], c.x[5], &res);
	c.ret[0] = res.a0;
	c.ret[1] = res.a1;
	c.ret[2] = res.a2;
	c.ret[3] = res.a3;
	return copy_to_user(arg, &c, sizeof(c)) ? -EFAULT : 0;
}

static long do_alloc(void __user *arg)
{
	struct warden_hvc_pages p;
	struct warden_hvc_alloc *a;
	u64 *w;
	unsigned long i;

	if (copy_from_user(&p, arg, sizeof(p)))
		return -EFAULT;
	if (p.count == 0 || p.count > WARDEN_HVC_MAX_PAGES)
		return -EINVAL;
	a = kzalloc(sizeof(*a), GFP_KERNEL);
	if (!a)
		return -ENOMEM;
	a->count = p.count;
	a->va = alloc_pages_exact(a->count * PAGE_SIZE, GFP_KERNEL | __GFP_ZERO);
	if (!a->va) {
		kfree(a);
		return -ENOMEM;
	}
	a->pa = virt_to_phys(a->va);
	w = a->va;
	for (i = 0; i < a->count * PAGE_SIZE / sizeof(u64); i++)
		w[i] = p.fill;
	p.pa = a->pa;
	mutex_lock(&allocs_lock);
	list_add(&a->node, &allocs);
	mutex_unlock(&allocs_lock);
	if (copy_to_user(arg, &p, sizeof(p)))
		return -EFAULT; /* the allocation stays listed: freed on rmmod */
	return 0;
}

static long do_free(void __user *arg)
{
	struct warden_hvc_pages p;
	struct warden_hvc_alloc *a;
	long ret = -ENOENT;

	if (copy_from_user(&p, arg, sizeof(p)))
		return -EFAULT;
	mutex_lock(&allocs_lock);
	a = find_locked(p.pa, 1);
	if (a && a->pa == p.pa) {
		release_locked(a);
		ret = 0;
	}
	mutex_unlock(&allocs_lock);
	return ret;
}

static long do_nonzero(void __user *arg)
{
	struct warden_hvc_pages p;
	struct warden_hvc_alloc *a;
	unsigned long i, n = 0;
	const u64 *w;

	if (copy_from_user(&p, arg, sizeof(p)))
		return -EFAULT;
	if (p.count == 0 || p.count > WARDEN_HVC_MAX_PAGES || p.pa % PAGE_SIZE)
		return -EINVAL;
	mutex_lock(&allocs_lock);
	a = find_locked(p.pa, p.count);
	if (!a) {
		mutex_unlock(&allocs_lock);
		return -ENOENT;
	}
	w = a->va + (p.pa - a->pa);
	for (i = 0; i < p.count * PAGE_SIZE / sizeof(u64); i++)
		n += READ_ONCE(w[i]) != 0;
	mutex_unlock(&allocs_lock);
	p.fill = n;
	return copy_to_user(arg, &p, sizeof(p)) ? -EFAULT : 0;
}

static long warden_hvc_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	if (!capable(CAP_SYS_RAWIO))
		return -EPERM;
	switch (cmd) {
	case WARDEN_HVC_CALL:
		return do_call(uarg);
	case WARDEN_HVC_ALLOC:
		return do_alloc(uarg);
	case WARDEN_HVC_FREE:
		return do_free(uarg);
	case WARDEN_HVC_NONZERO:
		return do_nonzero(uarg);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations warden_hvc_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = warden_hvc_ioctl,
};

static struct miscdevice warden_hvc_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "warden_hvc",
	.fops = &warden_hvc_fops,
	.mode = 0600,
};

static int __init warden_hvc_init(void)
{
	return misc_register(&warden_hvc_dev);
}

static void __exit warden_hvc_exit(void)
{
	struct warden_hvc_alloc *a, *tmp;

	misc_deregister(&warden_hvc_dev);
	mutex_lock(&allocs_lock);
	list_for_each_entry_safe(a, tmp, &allocs, node)
		release_locked(a);
	mutex_unlock(&allocs_lock);
}

module_init(warden_hvc_init);
module_exit(warden_hvc_exit);
MODULE_DESCRIPTION("Warden test: raw hypercalls and donatable pages from user space");
MODULE_LICENSE("GPL");
