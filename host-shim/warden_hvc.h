/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Issuing Warden hypercalls (SMCCC vendor-hyp calls) and decoding their results.
 *
 * Every Warden call is an SMC64 fast call with the function ID in x0 and up to six arguments in
 * x1..x6; the result is x0 (WARDEN_SUCCESS or a negative WARDEN_E_* code) plus x1..x3 (see
 * warden_abi.h). The calls use SMCCC 1.1's register discipline: the hypervisor preserves x4..x17,
 * so the kernel's arm_smccc_1_1_{hvc,smc} macros (which only read back x0..x3) are exact. Status
 * names and Linux errnos: warden_strerror() and warden_errno(), generated into warden_abi.h.
 */
#ifndef WARDEN_HVC_H
#define WARDEN_HVC_H

#include <linux/arm-smccc.h>
#include <linux/errno.h>
#include <linux/types.h>

#include "warden_abi.h"

/** struct warden_ret - the result registers of one call. */
struct warden_ret {
	/** @status: x0: WARDEN_SUCCESS, a negative WARDEN_E_* code, or 1 (READ_EVENT: a record). */
	long status;
	/** @x1: x1 (call-specific). */
	u64 x1;
	/** @x2: x2 (call-specific). */
	u64 x2;
	/** @x3: x3 (call-specific). */
	u64 x3;
};

/* The SMCCC conduit found at load time (SMC under Warden: the hyp traps SMC with HCR_EL2.TSC). */
extern enum arm_smccc_conduit warden_conduit;

/**
 * warden_call() - issue Warden call @fid with arguments @a1..@a6 (unused ones 0).
 *
 * Safe in any context (atomic included): it is one trapping instruction, and the hypervisor never
 * sleeps. Returns WARDEN_E_NOT_SUPPORTED in .status when no conduit is known.
 */
static inline struct warden_ret warden_call(u32 fid, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5, u64 a6)
{
	struct arm_smccc_res res = { .a0 = (unsigned long)WARDEN_E_NOT_SUPPORTED };

	switch (warden_conduit) {
	case SMCCC_CONDUIT_HVC:
		arm_smccc_1_1_hvc(fid, a1, a2, a3, a4, a5, a6, &res);
		break;
	case SMCCC_CONDUIT_SMC:
		arm_smccc_1_1_smc(fid, a1, a2, a3, a4, a5, a6, &res);
		break;
	default:
		break;
	}
	return (struct warden_ret){
		.status = (long)res.a0,
		.x1 = res.a1,
		.x2 = res.a2,
		.x3 = res.a3,
	};
}

#define warden_call0(fid) warden_call((fid), 0, 0, 0, 0, 0, 0)
#define warden_call1(fid, a1) warden_call((fid), (a1), 0, 0, 0, 0, 0)
#define warden_call2(fid, a1, a2) warden_call((fid), (a1), (a2), 0, 0, 0, 0)

#endif /* WARDEN_HVC_H */
