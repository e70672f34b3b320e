// SPDX-License-Identifier: GPL-2.0
/*
 * warden_probe: a test-only misc device, /dev/warden_probe, whose mmap maps the physical page given as the
 * mmap offset (offset = physical address, page aligned) into the calling process with remap_pfn_range.
 *
 * The point: a process can touch an arbitrary physical address, and if that access is refused (for example the
 * Warden hypervisor's host stage-2 does not map the page and injects an external abort), the abort hits that
 * process as SIGBUS instead of the kernel. Only for test machines: it needs CAP_SYS_RAWIO and bypasses every
 * kernel check on physical memory.
 */
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>

static int warden_probe_mmap(struct file *file, struct vm_area_struct *vma)
{
	unsigned long size = vma->vm_end - vma->vm_start;

	if (!capable(CAP_SYS_RAWIO))
		return -EPERM;
	/* Device-nGnRnE: no speculation, no caching, every access reaches the bus as issued. */
	vma->vm_page_prot = pgprot_noncached(vma->vm_page_prot);
	return remap_pfn_range(vma, vma->vm_start, vma->vm_pgoff, size, vma->vm_page_prot);
}

static const struct file_operations warden_probe_fops = {
	.owner = THIS_MODULE,
	.mmap = warden_probe_mmap,
};

static struct miscdevice warden_probe_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "warden_probe",
	.fops = &warden_probe_fops,
	.mode = 0600,
};

static int __init warden_probe_init(void)
{
	return misc_register(&warden_probe_dev);
}

static void __exit warden_probe_exit(void)
{
	misc_deregister(&warden_probe_dev);
}

module_init(warden_probe_init);
module_exit(warden_probe_exit);
MODULE_DESCRIPTION("Warden test probe: map any physical page into a process");
MODULE_LICENSE("GPL");
