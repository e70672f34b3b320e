#!/bin/sh
# VFIO on top of the IOMMU driver: edu bound to vfio-pci (type1v2 backend); the vfio_edu program maps buffers
# with VFIO_IOMMU_MAP_DMA, has edu DMA through them and checks the data, then unmaps one and checks the device
# can no longer write it. The IOMMU driver reports exactly that one write fault at IOVA 0x20000 for edu. Then
# edu's MSI, enabled through VFIO_DEVICE_SET_IRQS, must reach its eventfd (device -> IOMMU -> GIC ITS).
# The vfio_edu program is built by xtask from tests/guest/shim/vfio_edu.c into /warden/bin.
# modes: hyp native
# timeout: 240
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
prog=$(command -v vfio_edu) || fail "no vfio_edu program in /warden/bin"
edu_vfio type1
echo "edu $edu in iommu group $group ($(iommu_type $edu))"
before=0
[ "$WARDEN_MODE" = hyp ] && before=$(shim_stat shim.faults_reported)
dmesg -c > /dev/null
"$prog" $edu $group || fail "vfio_edu failed (status $?)"
expect_one_fault "$before" $edu ".* write at IOVA 0x20000" "0x0*20000\$" "writing IOVA 0x20000"
no_oops
echo "VFIO OK"
