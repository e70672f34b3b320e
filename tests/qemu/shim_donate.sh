#!/bin/sh
# Page donation and reclaim: VFIO maps 1500 pages 2 MiB apart (one page table each, more than the hyp's pool
# holds), so the shim must answer NOMEM with DONATE; edu reads the last page. The release is refused while
# vfio-pci holds edu in a translated domain; after unbinding, release + rmmod reclaim every donated page
# (the hyp reports 0 donated pages after a reload, and no page was leaked).
# The vfio_edu program is built by xtask from tests/guest/shim/vfio_edu.c into /warden/bin.
# modes: hyp
# timeout: 300
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
prog=$(command -v vfio_edu) || fail "no vfio_edu program in /warden/bin"
edu_vfio type1
"$prog" $edu $group 1500 || fail "vfio_edu failed"
grep "^hyp.pool\|^hyp.donated\|^shim.donated\|^shim.topups\|^hyp.calls.donate" $SHIM_STATS
[ "$(shim_stat shim.donated_pages)" -gt 0 ] || fail "no page was donated"
[ "$(shim_stat hyp.donated_pages)" = "$(shim_stat shim.donated_pages)" ] || fail "hyp and shim disagree on donations"
echo 1 > /sys/class/iommu/warden/release && fail "release accepted while vfio-pci holds edu"
pci_unbind vfio-pci $edu || fail "unbind edu"
for b in $(pci_driver_devs nvme); do pci_unbind nvme $b || fail "unbind $b"; done
for b in $(pci_driver_devs virtio-pci); do pci_unbind virtio-pci $b || fail "unbind $b"; done
shim_unload || fail "release/rmmod failed"
dmesg | grep "could not be reclaimed" && fail "donated pages were leaked"
shim_load || fail "reload failed"
[ "$(shim_stat hyp.donated_pages)" = 0 ] || fail "pages still donated after the unload"
no_oops
echo "donation OK"
