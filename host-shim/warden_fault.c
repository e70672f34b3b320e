// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * Fault reporting: a delayed work drains the hyp's event ring (READ_EVENT, up to
 * WARDEN_EVENT_BATCH records per run) every fault_poll_ms, sooner when the SMMU node's "eventq"
 * interrupt fires (the handler only kicks the work), and reports each record with
 * report_iommu_fault() on the master's current domain and a rate-limited log line.
 */
#define pr_fmt(fmt) "warden: " fmt

#include <linux/device.h>
#include <linux/interrupt.h>
#include <linux/iommu.h>
#include <linux/moduleparam.h>
#include <linux/platform_device.h>
#include <linux/workqueue.h>

#include "warden.h"

static unsigned int fault_poll_ms = 100;
module_param(fault_poll_ms, uint, 0644);
MODULE_PARM_DESC(fault_poll_ms, "How often to drain the hypervisor's fault records, in ms (0: only on IRQ)");

static bool event_irq = true;
module_param(event_irq, bool, 0444);
MODULE_PARM_DESC(event_irq, "Also drain fault records when the SMMU node's \"eventq\" interrupt fires");

static const char *warden_reason_str(u64 reason)
{
	switch (reason) {
	case WARDEN_EVENT_REASON_BAD_STREAMID: return "bad StreamID";
	case WARDEN_EVENT_REASON_BAD_STE: return "bad stream table entry";
	case WARDEN_EVENT_REASON_STREAM_DISABLED: return "stream disabled (blocked)";
	case WARDEN_EVENT_REASON_TRANSLATION: return "translation fault (not mapped)";
	case WARDEN_EVENT_REASON_ADDR_SIZE: return "address size fault (beyond the domain)";
	case WARDEN_EVENT_REASON_ACCESS: return "access flag fault";
	case WARDEN_EVENT_REASON_PERMISSION: return "permission fault";
	case WARDEN_EVENT_REASON_GERROR: return "SMMU global error";
	default: return "unknown event";
	}
}

static void warden_report_event(struct warden_smmu *smmu, u64 iova, u64 info)
{
	u32 sid = (u32)(info >> WARDEN_EVENT_SID_SHIFT);
	u64 reason = (info >> WARDEN_EVENT_REASON_SHIFT) & 0xff;
	u64 flags = (info >> WARDEN_EVENT_FLAGS_SHIFT) & 0xffff;
	bool iova_valid = flags & WARDEN_EVENT_FLAG_IOVA_VALID;
	const char *access = flags & WARDEN_EVENT_FLAG_INSTR ? "fetch" :
			     (flags & WARDEN_EVENT_FLAG_WRITE ? "write" : "read");
	struct warden_master *master, *found = NULL;
	unsigned int i;

	atomic64_inc(&smmu->faults_reported);
	if (reason == WARDEN_EVENT_REASON_GERROR) {
		dev_err_ratelimited(smmu->dev, "DMA fault: %s (info %#llx)\n",
				    warden_reason_str(reason), info);
		return;
	}
	/* The lock keeps the master and its domain alive while the fault is reported. */
	mutex_lock(&smmu->lock);
	list_for_each_entry(master, &smmu->masters, node) {
		for (i = 0; i < master->num_sids && master->sids[i] != sid; i++)
			;
		if (i < master->num_sids) {
			found = master;
			break;
		}
	}
	if (!found) {
		mutex_unlock(&smmu->lock);
		dev_err_ratelimited(smmu->dev,
				    "DMA fault: unknown device (SID %#x): %s %s at IOVA %#llx%s\n",
				    sid, warden_reason_str(reason), access, iova,
				    iova_valid ? "" : " (not valid)");
		return;
	}
	dev_err_ratelimited(found->dev, "DMA fault: SID %#x, %s domain: %s %s at IOVA %#llx%s\n",
			    sid, warden_domain_name(found->domain), warden_reason_str(reason),
			    access, iova, iova_valid ? "" : " (not valid)");
	if (found->domain)
		report_iommu_fault(found->domain, found->dev, iova_valid ? iova : 0,
				   flags & WARDEN_EVENT_FLAG_WRITE ?
				   IOMMU_FAULT_WRITE : IOMMU_FAULT_READ);
	mutex_unlock(&smmu->lock);
}

/* Records drained per run before the work yields (and requeues itself at once). */
#define WARDEN_EVENT_BATCH 64

static void warden_event_work(struct work_struct *work)
{
	struct warden_smmu *smmu =
		container_of(to_delayed_work(work), struct warden_smmu, event_work);
	unsigned int n;

	for (n = 0; n < WARDEN_EVENT_BATCH; n++) {
		struct warden_ret r = warden_call0(WARDEN_FID_READ_EVENT);

		if (r.status < 0) {
			dev_err(smmu->dev, "READ_EVENT failed (%s): fault reporting stops\n",
				warden_strerror(r.status));
			WRITE_ONCE(smmu->events_enabled, false);
			return;
		}
		if (r.x3 > smmu->events_lost_seen) {
			dev_warn_ratelimited(smmu->dev,
					     "%llu fault records lost (the hyp's event ring full, or one per SMMU event queue overflow), %llu in all\n",
					     r.x3 - smmu->events_lost_seen, r.x3);
			smmu->events_lost_seen = r.x3;
		}
		if (r.status == 0)
			break;
		warden_report_event(smmu, r.x1, r.x2);
	}
	if (READ_ONCE(smmu->stopping))
		return;
	if (n == WARDEN_EVENT_BATCH)
		queue_delayed_work(system_wq, &smmu->event_work, 1);
	else if (fault_poll_ms)
		queue_delayed_work(system_wq, &smmu->event_work, msecs_to_jiffies(fault_poll_ms));
}

static irqreturn_t warden_event_irq(int irq, void *data)
{
	struct warden_smmu *smmu = data;

	if (READ_ONCE(smmu->events_enabled) && !READ_ONCE(smmu->stopping))
		mod_delayed_work(system_wq, &smmu->event_work, 0);
	return IRQ_HANDLED;
}

/**
 * warden_events_init() - set up the event work (before anything can stop it).
 * @smmu: the instance being probed.
 */
void warden_events_init(struct warden_smmu *smmu)
{
	INIT_DELAYED_WORK(&smmu->event_work, warden_event_work);
}

/**
 * warden_events_start() - start draining fault records, if the hyp reports them (FEAT_EVENTS).
 * @smmu: the instance, registered.
 * @pdev: its platform device; its "eventq" interrupt (if any) kicks the work when event_irq is on.
 */
void warden_events_start(struct warden_smmu *smmu, struct platform_device *pdev)
{
	WRITE_ONCE(smmu->events_enabled, warden_info.features & WARDEN_FEAT_EVENTS);
	if (READ_ONCE(smmu->events_enabled)) {
		int irq = event_irq ? platform_get_irq_byname_optional(pdev, "eventq") : -ENXIO;

		if (irq > 0 && !request_irq(irq, warden_event_irq, 0, "warden-eventq", smmu))
			smmu->event_irq = irq;
		queue_delayed_work(system_wq, &smmu->event_work, 0);
	}
}

/**
 * warden_events_mode() - how faults are reported, for the probe's log line.
 * @smmu: the instance, after warden_events_start().
 *
 * Return: a fixed string, e.g. "eventq IRQ + polling".
 */
const char *warden_events_mode(const struct warden_smmu *smmu)
{
	/* The event work clears it when READ_EVENT fails. */
	if (!READ_ONCE(smmu->events_enabled))
		return "not reported by this hyp";
	if (smmu->event_irq > 0)
		return "eventq IRQ + polling";
	return fault_poll_ms ? "polling" : "polling (fault_poll_ms=0: none!)";
}

/**
 * warden_events_stop() - stop fault reporting: free the interrupt, wait for the work to end.
 * @smmu: the instance being torn down (warden_events_init() was called).
 */
void warden_events_stop(struct warden_smmu *smmu)
{
	WRITE_ONCE(smmu->stopping, true);
	if (smmu->event_irq > 0)
		free_irq(smmu->event_irq, smmu);
	cancel_delayed_work_sync(&smmu->event_work);
}
