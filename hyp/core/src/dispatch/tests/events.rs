//! The fault ring: READ_EVENT order and the lost count.

use super::*;

#[test]
fn events_ring_and_lost_count() {
    let h = harness();
    let w = &h.w;
    assert_eq!(call(w, Function::ReadEvent, &[]), [0, 0, 0, 0]);
    let rec = |i: u32| FaultRecord {
        sid: 0x100 + i,
        iova: 0x1000 * u64::from(i),
        reason: abi::EVENT_REASON_TRANSLATION as u8,
        flags: (abi::EVENT_FLAG_WRITE | abi::EVENT_FLAG_IOVA_VALID) as u16,
    };
    for i in 0..6 {
        w.backend().events.lock().unwrap().push_back(rec(i));
    }
    // Ring capacity 4: the first call drains all six, keeps four, loses two.
    let r = call(w, Function::ReadEvent, &[]);
    assert_eq!(r[0], 1);
    assert_eq!(r[1], 0);
    assert_eq!(r[2], 0x100 | 0x10 << 32 | 0x11 << 48);
    assert_eq!(r[3], 2);
    for i in 1u32..4 {
        let r = call(w, Function::ReadEvent, &[]);
        assert_eq!(
            (r[0], r[1], r[2] & 0xffff_ffff),
            (1, 0x1000 * u64::from(i), 0x100 + u64::from(i))
        );
    }
    w.record_event(rec(9));
    assert_eq!(call(w, Function::ReadEvent, &[])[2] & 0xffff_ffff, 0x109);
    assert_eq!(call(w, Function::ReadEvent, &[]), [0, 0, 0, 2]);
    assert_eq!(stat(w, Stat::EventsLost), 2);
}
