// SPDX-License-Identifier: GPL-2.0
/*
 * warden_trap: a test-only module that executes, on request, an instruction the Warden hypervisor traps
 * (tests/qemu/trap_undef.sh). Writing a kind's name to /sys/module/warden_trap/parameters/run runs it once in a
 * new kthread and waits for that thread for up to 2 s:
 *
 * - sysreg_read:  mrs of L2CTLR_EL1 (S3_1_C11_C0_2), implementation defined: trapped by HCR_EL2.TIDCP;
 * - sysreg_write: msr of CPUACTLR_EL1 (S3_1_C15_C2_0), implementation defined (a "chicken bit" register);
 * - hvc_imm:      HVC #1 with x0 = Warden's VERSION function ID (SMCCC calls use immediate 0);
 * - smc_imm:      SMC #1, the same.
 *
 * The hypervisor answers the first two with an undefined-instruction exception, which oopses (and ends) only
 * the kthread: the write then fails with ETIMEDOUT and `survived` stays 0. The last two return: their x0 is in
 * `last_x0` and the write succeeds. Root only, test machines only.
 */
#include <linux/completion.h>
#include <linux/jiffies.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "warden_abi.h"

static long last_x0;
module_param(last_x0, long, 0444);
MODULE_PARM_DESC(last_x0, "x0 after the last hvc_imm/smc_imm run");
static int survived;
module_param(survived, int, 0444);
MODULE_PARM_DESC(survived, "1 if the last run's kthread got past its instruction");

static DEFINE_MUTEX(run_lock);

struct trap_run {
	long (*fn)(void);
	long x0;
	struct completion done;
};

static noinline long warden_trap_sysreg_read(void)
{
	unsigned long v;

	asm volatile("mrs %0, s3_1_c11_c0_2" : "=r"(v));
	return v;
}

static noinline long warden_trap_sysreg_write(void)
{
	asm volatile("msr s3_1_c15_c2_0, xzr" ::: "memory");
	return 0;
}

static noinline long warden_trap_hvc_imm(void)
{
	register unsigned long x0 asm("x0") = WARDEN_FID_VERSION;

	asm volatile("hvc #1" : "+r"(x0) : : "x1", "x2", "x3", "memory");
	return x0;
}

static noinline long warden_trap_smc_imm(void)
{
	register unsigned long x0 asm("x0") = WARDEN_FID_VERSION;

	asm volatile("smc #1" : "+r"(x0) : : "x1", "x2", "x3", "memory");
	return x0;
}

static const struct {
	const char *name;
	long (*fn)(void);
} kinds[] = {
	{ "sysreg_read", warden_trap_sysreg_read },
	{ "sysreg_write", warden_trap_sysreg_write },
	{ "hvc_imm", warden_trap_hvc_imm },
	{ "smc_imm", warden_trap_smc_imm },
};

static int trap_thread(void *arg)
{
	struct trap_run *r = arg;

	r->x0 = r->fn();
	complete(&r->done);
	return 0;
}

/*
 * One run. The run's state is freed only when its thread completed: a thread that oopsed never touches it
 * again, so it is leaked (a few bytes per oops, test machines only).
 */
static int run_set(const char *val, const struct kernel_param *kp)
{
	struct task_struct *t;
	struct trap_run *r;
	size_t i;
	int ret = -EINVAL;

	for (i = 0; i < ARRAY_SIZE(kinds); i++)
		if (sysfs_streq(val, kinds[i].name))
			break;
	if (i == ARRAY_SIZE(kinds))
		return -EINVAL;
	r = kzalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	r->fn = kinds[i].fn;
	init_completion(&r->done);
	mutex_lock(&run_lock);
	survived = 0;
	t = kthread_run(trap_thread, r, "warden_trap/%s", kinds[i].name);
	if (IS_ERR(t)) {
		ret = PTR_ERR(t);
		kfree(r);
	} else if (wait_for_completion_timeout(&r->done, 2 * HZ)) {
		survived = 1;
		last_x0 = r->x0;
		kfree(r);
		ret = 0;
	} else {
		pr_info("warden_trap: %s: the thread did not come back\n", kinds[i].name);
		ret = -ETIMEDOUT;
	}
	mutex_unlock(&run_lock);
	return ret;
}

static const struct kernel_param_ops run_ops = {
	.set = run_set,
};
module_param_cb(run, &run_ops, NULL, 0200);
MODULE_PARM_DESC(run, "kind to execute: sysreg_read, sysreg_write, hvc_imm, smc_imm");

MODULE_DESCRIPTION("Warden test: execute instructions the hypervisor traps");
MODULE_LICENSE("GPL");
