#!/bin/sh
# Negative control of STAT HYP_INTEGRITY (the hash the adversarial tests compare with its boot value): booted
# with warden.test=canary-flip, the hyp changes one bit of one canary word right after recording the boot hash.
# HYP_INTEGRITY must then differ from HYP_INTEGRITY_BOOT, every time it is asked (it is computed on each call, not
# cached), so an unchanged hash in the other tests means the memory really was unchanged.
# modes: hyp
# timeout: 120
# append: warden.noshim warden.test=canary-flip
# expect-log(hyp): warden.test=canary-flip: canary word at 0x40100000 changed after the boot hash
. /warden/tests/lib.sh
. /warden/tests/hvc_lib.sh
expect 0 $STAT $STAT_HYP_INTEGRITY_BOOT
boot=$x1
i=0
while [ $i -lt 3 ]; do
    expect 0 $STAT $STAT_HYP_INTEGRITY
    [ "$x1" != "$boot" ] || fail "HYP_INTEGRITY $x1 = boot value after the hyp changed a canary word"
    [ -z "$now" ] || [ "$x1" = "$now" ] || fail "HYP_INTEGRITY unstable: $x1, then $now"
    now=$x1
    i=$((i + 1))
done
echo "ATTACK: negative control: one canary bit flipped by the hyp after boot: detected (HYP_INTEGRITY $now != boot $boot)"
no_oops
echo "adv integrity control OK"
