#!/bin/sh
# Boot to userspace with both CPUs of the default machine online (under the hypervisor: secondaries come up
# through the hyp's PSCI CPU_ON relay).
# modes: hyp native
# timeout: 120
. /warden/tests/lib.sh
echo "mode $WARDEN_MODE, kernel $(uname -r)"
online=$(cat /sys/devices/system/cpu/online)
echo "CPUs online: $online"
[ "$online" = "0-1" ] || fail "expected CPUs 0-1 online, got '$online'"
n=$(grep -c '^processor' /proc/cpuinfo)
[ "$n" = 2 ] || fail "expected 2 processors in /proc/cpuinfo, got $n"
[ -d /proc/device-tree ] || fail "no /proc/device-tree"
no_oops
echo "boot OK"
