//! Several CPUs at once.

use super::*;

static_assertions::assert_impl_all!(W: Sync, Send);

/// Several CPUs at once: each thread maps and unmaps in its own domain, two threads share one domain (disjoint
/// IOVAs), one thread moves StreamIDs between domains, one donates and reclaims pages the others map. Afterwards
/// the tables, counts and stats must match what each thread knows it left behind.
#[test]
fn concurrent_calls_keep_invariants() {
    let h = harness_with(512, 8, 256);
    let w = &h.w;
    let own: Vec<u64> = (0..3).map(|_| alloc_paging(w)).collect();
    let shared = alloc_paging(w);
    let blocked = res(w, Function::DomainAlloc, &[1]).unwrap();
    let left: Vec<BTreeMap<(u64, u64), u64>> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for t in 0..5u64 {
            let dom = if t < 3 { own[t as usize] } else { shared };
            handles.push(s.spawn(move || {
                let mut mine = BTreeMap::new();
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                for _ in 0..400 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Threads 3 and 4 share a domain: disjoint IOVA halves.
                    let iova = ((t % 2) << 30) + (x % 64) * K4;
                    let pa = host((x >> 8) % 512 * K4);
                    if let std::collections::btree_map::Entry::Occupied(e) = mine.entry((dom, iova))
                    {
                        assert_eq!(res(w, Function::UnmapPages, &[dom, iova, K4, 1]), Ok(K4));
                        e.remove();
                    } else {
                        match res(w, Function::MapPages, &[dom, iova, pa, K4, 1, RW]) {
                            Ok(_) => {
                                mine.insert((dom, iova), pa);
                            }
                            // The donor thread may hold that page right now.
                            Err(Error::DonatedMemory) => {}
                            Err(e) => panic!("map: {e:?}"),
                        }
                    }
                }
                mine
            }));
        }
        s.spawn(move || {
            for i in 0..300u64 {
                let sid = i % 16;
                let target = [own[0], shared, blocked, 0][(i % 4) as usize];
                assert_eq!(res(w, Function::Attach, &[sid, target]), Ok(0));
            }
        });
        s.spawn(move || {
            for i in 0..200u64 {
                let pa = host((i * 7) % 512 * K4);
                match res(w, Function::Donate, &[pa, 1]) {
                    Ok(_) => assert_eq!(res(w, Function::Reclaim, &[pa, 1]).map(|_| ()), Ok(())),
                    Err(Error::Busy) => {}
                    Err(e) => panic!("donate: {e:?}"),
                }
            }
        });
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
    for m in &left {
        for (&(dom, iova), &pa) in m {
            assert_eq!(res(w, Function::IovaToPhys, &[dom, iova]), Ok(pa));
            *counts.entry(pa).or_default() += 1;
        }
    }
    for (&pa, &c) in &counts {
        assert_eq!(
            w.ownership().state(pa),
            crate::ownership::PageState::Host {
                kind: MemKind::Ram,
                count: c
            }
        );
    }
    assert_eq!(
        stat(w, Stat::MappedPages),
        counts.values().map(|&c| u64::from(c)).sum::<u64>()
    );
    assert_eq!(stat(w, Stat::DonatedPages), 0);
    assert!(host_unmapped(w).is_empty());
    // Every StreamID's STE matches the domain the table says it is in.
    for sid in 0..16u32 {
        let dom = w.sid_domain(sid).unwrap();
        let written = ste(w, sid);
        let expect = match dom {
            0 => ste_for(w, w.identity_ste()),
            d if d == blocked => ste_for(w, SteConfig::Blocked),
            d => {
                let c = written.s2_config().unwrap_or_else(|| panic!("sid {sid}"));
                assert_ne!(written, ste_for(w, SteConfig::Blocked), "sid {sid}");
                assert_eq!(u64::from(c.vmid.0), (d & 0xffff) + 1);
                written
            }
        };
        assert_eq!(written, expect);
    }
}
