//! The fault ring: READ_EVENT order and the lost count, fed by real faults of the fake SMMU.

use super::*;
use warden_smmu::event::event_id::F_TRANSLATION;

#[test]
fn events_ring_and_lost_count() {
    let h = harness();
    let w = &h.w;
    assert_eq!(call(w, Function::ReadEvent, &[]), [0, 0, 0, 0]);
    // Six DMA writes by StreamIDs 0x100.. to IOVAs host-identity does not map (below the doorbell): six
    // translation faults in the SMMU's event queue.
    for i in 0..6u32 {
        assert_eq!(
            h.translate(0x100 + i, 0x1000 * u64::from(i), true),
            Translation::Fault(F_TRANSLATION)
        );
    }
    let flags = abi::EVENT_FLAG_WRITE | abi::EVENT_FLAG_IOVA_VALID | abi::EVENT_FLAG_STAGE2;
    // Ring capacity 4: the first call moves four (the ring's room) and pops one; the other two wait in the
    // SMMU's queue until there is room, so none is lost.
    let r = call(w, Function::ReadEvent, &[]);
    assert_eq!(r[0], 1);
    assert_eq!(r[1], 0);
    assert_eq!(
        r[2],
        0x100 | u64::from(F_TRANSLATION) << 32 | flags << 48,
        "{:#x}",
        r[2]
    );
    assert_eq!(r[3], 0);
    for i in 1u32..6 {
        let r = call(w, Function::ReadEvent, &[]);
        assert_eq!(
            (r[0], r[1], r[2] & 0xffff_ffff, r[3]),
            (1, 0x1000 * u64::from(i), 0x100 + u64::from(i), 0)
        );
    }
    assert_eq!(call(w, Function::ReadEvent, &[]), [0, 0, 0, 0]);
    // Records pushed into the ring directly (`record_event`) past its capacity are lost and counted.
    for i in 0..5u32 {
        w.record_event(FaultRecord {
            sid: StreamId(0x109 + i),
            iova: 0x9000,
            reason: abi::EVENT_REASON_TRANSLATION as u8,
            flags: flags as u16,
        });
    }
    for i in 0..4u64 {
        let r = call(w, Function::ReadEvent, &[]);
        assert_eq!((r[0], r[2] & 0xffff_ffff, r[3]), (1, 0x109 + i, 1));
    }
    assert_eq!(call(w, Function::ReadEvent, &[]), [0, 0, 0, 1]);
    assert_eq!(stat(w, Stat::EventsLost), 1);
}
