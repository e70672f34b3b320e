#!/bin/sh
# Without the Warden hypervisor (plain Linux at EL1), loading warden.ko is refused with a clear message and
# -ENODEV, repeatably, and the system keeps working: disks bind and do I/O, nothing oopses.
# modes: native
# timeout: 240
# expect-log(native): not running under the Warden hypervisor; refusing to load
. /warden/tests/lib.sh
ko=/lib/modules/$(uname -r)/extra/warden.ko
[ -e "$ko" ] || fail "no $ko in the initramfs"
for attempt in 1 2; do
    if insmod "$ko" 2>/tmp/insmod.err; then
        fail "insmod warden.ko succeeded without the hypervisor (attempt $attempt)"
    fi
    echo "insmod attempt $attempt: $(cat /tmp/insmod.err)"
    grep -q "No such device" /tmp/insmod.err || fail "expected ENODEV (No such device) from insmod"
done
grep -q "^warden " /proc/modules && fail "warden is listed in /proc/modules after a refused load"
msg=$(dmesg | grep "warden: " | tail -n 1)
echo "kernel log: $msg"
echo "$msg" | grep -q "not running under the Warden hypervisor; refusing to load" ||
    fail "no clear refusal message in the kernel log"
# The system keeps working: the disks are there and a write reads back.
wait_for /dev/vda 30 || fail "no /dev/vda"
wait_for /dev/nvme0n1 30 || fail "no /dev/nvme0n1"
dd if=/proc/cpuinfo of=/tmp/pattern bs=4096 count=1 conv=sync 2>/dev/null
for d in vda nvme0n1; do
    dd if=/tmp/pattern of=/dev/$d bs=4096 seek=7 oflag=direct 2>/dev/null || fail "write to /dev/$d failed"
    echo 3 > /proc/sys/vm/drop_caches
    dd if=/dev/$d of=/tmp/back bs=4096 skip=7 count=1 iflag=direct 2>/dev/null || fail "read of /dev/$d failed"
    cmp /tmp/pattern /tmp/back || fail "/dev/$d did not read back what was written"
done
no_oops
echo "shim refuses natively OK"
