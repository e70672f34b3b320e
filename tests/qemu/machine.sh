#!/bin/sh
# The default machine scripts rely on: virtio-blk and NVMe scratch disks (512 MiB, empty, writable), QEMU's edu
# device, busybox with devmem/dd/sha256sum, and the project's modules under /lib/modules/$(uname -r)/extra/.
# modes: hyp native
# timeout: 120
. /warden/tests/lib.sh
for app in devmem dd sha256sum; do
    command -v $app >/dev/null || fail "busybox lacks $app"
done
ls /lib/modules/$(uname -r)/extra/*.ko || fail "no modules in extra/"
# Devices may wait for an IOMMU driver before they bind (deferred probe): give them time.
wait_for /dev/vda 30 || fail "no virtio-blk disk /dev/vda"
wait_for /dev/nvme0n1 30 || fail "no NVMe disk /dev/nvme0n1"
for d in vda nvme0n1; do
    sectors=$(cat /sys/block/$d/size)
    [ "$sectors" -ge $((512 * 2048)) ] || fail "/dev/$d has only $sectors sectors"
    # Fresh disks read as zeros; a write reads back.
    [ "$(dd if=/dev/$d bs=4096 count=16 2>/dev/null | sha256sum | cut -d' ' -f1)" = \
      "$(dd if=/dev/zero bs=4096 count=16 2>/dev/null | sha256sum | cut -d' ' -f1)" ] || fail "/dev/$d is not empty"
    dd if=/proc/cpuinfo of=/tmp/pattern bs=4096 count=1 conv=sync 2>/dev/null
    dd if=/tmp/pattern of=/dev/$d bs=4096 seek=100 oflag=direct 2>/dev/null || fail "write to /dev/$d failed"
    echo 3 > /proc/sys/vm/drop_caches
    dd if=/dev/$d of=/tmp/back bs=4096 skip=100 count=1 iflag=direct 2>/dev/null || fail "read of /dev/$d failed"
    cmp /tmp/pattern /tmp/back || fail "/dev/$d did not read back what was written"
    echo "/dev/$d: $sectors sectors, write/read-back OK"
done
edu=
for dev in /sys/bus/pci/devices/*; do
    [ "$(cat $dev/vendor):$(cat $dev/device)" = "0x1234:0x11e8" ] && edu=$dev
done
[ -n "$edu" ] || fail "no edu PCI device (1234:11e8)"
echo "edu at ${edu##*/}"
no_oops
echo "machine OK"
