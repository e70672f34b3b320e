// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * debugfs: /sys/kernel/debug/warden/stats (the hyp's statistics and call counts, then the shim's
 * own counters) and /sys/kernel/debug/warden/masters (each master's SIDs and domain).
 */
#define pr_fmt(fmt) "warden: " fmt

#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/iommu.h>
#include <linux/seq_file.h>

#include "warden.h"

static void warden_show_stat(struct seq_file *s, const char *prefix, const char *name, u64 id)
{
	struct warden_ret r = warden_call1(WARDEN_FID_STAT, id);

	if (r.status == WARDEN_SUCCESS)
		seq_printf(s, "%s%s %llu\n", prefix, name, r.x1);
	else
		seq_printf(s, "%s%s error:%s\n", prefix, name, warden_strerror(r.status));
}

/*
 * "hyp.<stat> <value>" for each hyp statistic, "hyp.calls.<fn> <n>", then the shim's own counters.
 */
static int warden_stats_show(struct seq_file *s, void *unused)
{
	struct warden_smmu *smmu = s->private;
	unsigned long flags, donated, leaked;
	unsigned int i, masters = 0;
	struct warden_master *m;

	/*
	 * The integrity hashes are left out: each read hashes the hyp's image; they are asked for
	 * explicitly.
	 */
	for (i = 0; warden_stat_name(i); i++)
		if (i != WARDEN_STAT_HYP_INTEGRITY && i != WARDEN_STAT_HYP_INTEGRITY_BOOT)
			warden_show_stat(s, "hyp.", warden_stat_name(i), i);
	for (i = 0; warden_fn_name(i); i++)
		warden_show_stat(s, "hyp.calls.", warden_fn_name(i), WARDEN_STAT_CALLS_BASE + i);
	spin_lock_irqsave(&smmu->donate_lock, flags);
	donated = smmu->donated_pages;
	leaked = smmu->leaked_pages;
	spin_unlock_irqrestore(&smmu->donate_lock, flags);
	mutex_lock(&smmu->lock);
	list_for_each_entry(m, &smmu->masters, node)
		masters++;
	mutex_unlock(&smmu->lock);
	seq_printf(s, "shim.registered %d\n", READ_ONCE(smmu->registered));
	seq_printf(s, "shim.masters %u\n", masters);
	seq_printf(s, "shim.paging_domains %d\n", atomic_read(&smmu->live_domains));
	seq_printf(s, "shim.donated_pages %lu\n", donated);
	seq_printf(s, "shim.leaked_pages %lu\n", leaked);
	seq_printf(s, "shim.topups %lld\n", (long long)atomic64_read(&smmu->topups));
	seq_printf(s, "shim.map_calls %lld\n", (long long)atomic64_read(&smmu->map_calls));
	seq_printf(s, "shim.unmap_calls %lld\n", (long long)atomic64_read(&smmu->unmap_calls));
	seq_printf(s, "shim.deferred_maps %lld\n", (long long)atomic64_read(&smmu->deferred_maps));
	seq_printf(s, "shim.batch_calls %lld\n", (long long)atomic64_read(&smmu->batch_calls));
	seq_printf(s, "shim.shadow_hits %lld\n", (long long)atomic64_read(&smmu->shadow_hits));
	seq_printf(s, "shim.shadow_fallbacks %lld\n",
		   (long long)atomic64_read(&smmu->shadow_fallbacks));
	seq_printf(s, "shim.shadow_lost %lld\n", (long long)atomic64_read(&smmu->shadow_lost));
	seq_printf(s, "shim.pending_full %lld\n", (long long)atomic64_read(&smmu->pending_full));
	seq_printf(s, "shim.lazy_unmaps %lld\n", (long long)atomic64_read(&smmu->lazy_unmaps));
	seq_printf(s, "shim.unmap_batch_calls %lld\n",
		   (long long)atomic64_read(&smmu->unmap_batch_calls));
	seq_printf(s, "shim.lazy_fallbacks %lld\n",
		   (long long)atomic64_read(&smmu->lazy_fallbacks));
	seq_printf(s, "shim.donate_busy %lld\n", (long long)atomic64_read(&smmu->donate_busy));
	seq_printf(s, "shim.faults_reported %lld\n",
		   (long long)atomic64_read(&smmu->faults_reported));
	seq_printf(s, "shim.events_lost %llu\n", smmu->events_lost_seen);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(warden_stats);

/* "<device> <SIDs> <domain>" for each master. */
static int warden_masters_show(struct seq_file *s, void *unused)
{
	struct warden_smmu *smmu = s->private;
	struct warden_master *m;
	unsigned int i;

	mutex_lock(&smmu->lock);
	list_for_each_entry(m, &smmu->masters, node) {
		seq_printf(s, "%s", dev_name(m->dev));
		for (i = 0; i < m->num_sids; i++)
			seq_printf(s, "%s%#x", i ? "," : " sid=", m->sids[i]);
		if (m->domain == &warden_identity_domain)
			seq_puts(s, " domain=host-identity");
		else if (m->domain == &warden_blocked_domain)
			seq_puts(s, " domain=blocked");
		else
			seq_printf(s, " domain=paging:%llu",
				   container_of(m->domain, struct warden_domain, domain)->id);
		seq_printf(s, "%s\n", m->bound_at_probe ? " bound-at-probe" : "");
	}
	mutex_unlock(&smmu->lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(warden_masters);

/**
 * warden_debugfs_init() - create /sys/kernel/debug/warden/{stats,masters}.
 * @smmu: the instance they show.
 */
void warden_debugfs_init(struct warden_smmu *smmu)
{
	smmu->debugfs = debugfs_create_dir("warden", NULL);
	debugfs_create_file("stats", 0444, smmu->debugfs, smmu, &warden_stats_fops);
	debugfs_create_file("masters", 0444, smmu->debugfs, smmu, &warden_masters_fops);
}

/**
 * warden_debugfs_exit() - remove the debugfs files (before the instance is freed).
 * @smmu: the instance warden_debugfs_init() was called for (or whose @debugfs is still NULL).
 */
void warden_debugfs_exit(struct warden_smmu *smmu)
{
	debugfs_remove_recursive(smmu->debugfs);
}
