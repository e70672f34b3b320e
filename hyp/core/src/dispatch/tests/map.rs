//! MAP_PAGES argument errors (each changes nothing) and a map/unmap round trip.

use super::*;

#[test]
fn map_argument_errors_change_nothing() {
    let (h, d) = paging_harness();
    let w = &h.w;
    let b = res(w, Function::DomainAlloc, &[1]).unwrap();
    let pa = host(0);
    let cases: &[(&[u64], Error)] = &[
        (&[d, 0, pa, 0, 1, RW], Error::BadPgsize),
        (&[d, 0, pa, 0x2000, 1, RW], Error::BadPgsize),
        (&[d, 0, pa, 3 << 20, 1, RW], Error::BadPgsize),
        (&[d, 0, pa, u64::MAX, 1, RW], Error::BadPgsize),
        (&[d, 0, pa, K4, 0, RW], Error::BadCount),
        (&[d, 0, pa, K4, 1, 0], Error::BadProt),
        (&[d, 0, pa, K4, 1, abi::PROT_NOEXEC], Error::BadProt),
        (&[d, 0, pa, K4, 1, RW | 1 << 6], Error::BadProt),
        (&[d, 0, pa, K4, 1, RW | 1 << 63], Error::BadProt),
        (
            &[d, 0, pa, K4, 1, RW | abi::PROT_MMIO | abi::PROT_CACHE],
            Error::BadProt,
        ),
        (&[d, 0, pa, K4, 1, RW | abi::PROT_MMIO], Error::BadProt),
        (&[d, 0, DOORBELL, K4, 1, RW], Error::BadProt),
        (&[d, 0x1000, pa, M2, 1, RW], Error::Misaligned),
        (&[d, 0x800, pa, K4, 1, RW], Error::Misaligned),
        (&[d, 0, pa + 0x800, K4, 1, RW], Error::Misaligned),
        (&[d, 0, RAM + 0x1000, M2, 1, RW], Error::Misaligned),
        (&[d, 0, pa, K4, u64::MAX, RW], Error::Overflow),
        (&[d, 0, pa, M2, 1 << 44, RW], Error::Overflow),
        (&[d, !0xfff, pa, K4, 1, RW], Error::Overflow),
        (
            &[d, (1 << 39) - 0x1000, pa, K4, 2, RW],
            Error::OutOfRangeIova,
        ),
        (&[d, 1 << 39, pa, K4, 1, RW], Error::OutOfRangeIova),
        (&[d, 0, !0xfff, K4, 1, RW], Error::Overflow),
        (&[d, 0, (1 << 44) - 0x1000, K4, 2, RW], Error::OutOfRangePa),
        (&[d, 0, 1 << 44, K4, 1, RW], Error::OutOfRangePa),
        (&[d, 0, RAM, K4, 1, RW], Error::HypMemory),
        (
            &[d, 0, RAM + HYP_SIZE - 0x1000, K4, 2, RW],
            Error::HypMemory,
        ),
        (
            &[d, 0, RAM + RAM_SIZE - 0x1000, K4, 2, RW],
            Error::NotHostMemory,
        ),
        (&[d, 0, 0x0900_0000, K4, 1, RW], Error::NotHostMemory),
        (
            &[d, 0, DOORBELL + 0x1_0000, K4, 1, RW | abi::PROT_MMIO],
            Error::NotHostMemory,
        ),
        (&[0, 0, pa, K4, 1, RW], Error::ImmutableDomain),
        (&[b, 0, pa, K4, 1, RW], Error::WrongDomainKind),
        (&[d + 5, 0, pa, K4, 1, RW], Error::BadDomain),
        (&[1 << 32, 0, pa, K4, 1, RW], Error::BadDomain),
    ];
    for (args, err) in cases {
        assert_eq!(res(w, Function::MapPages, args), Err(*err), "map {args:x?}");
    }
    assert_eq!(stat(w, Stat::MappedPages), 0);
    assert_eq!(res(w, Function::IovaToPhys, &[d, 0]), Err(Error::NotMapped));
    assert_eq!(stat(w, Stat::ErrorsTotal), cases.len() as u64 + 1);
    // The doorbell maps with PROT_MMIO.
    assert_eq!(
        res(
            w,
            Function::MapPages,
            &[
                d,
                0x10_0000,
                DOORBELL,
                K4,
                1,
                abi::PROT_WRITE | abi::PROT_MMIO
            ]
        ),
        Ok(K4)
    );
    // Already mapped: nothing changes, count stays.
    assert_eq!(
        res(w, Function::MapPages, &[d, 0, pa, K4, 4, RW]),
        Ok(4 * K4)
    );
    assert_eq!(
        res(w, Function::MapPages, &[d, 0x3000, pa, K4, 2, RW]),
        Err(Error::AlreadyMapped)
    );
    assert_eq!(stat(w, Stat::MappedPages), 5);
    assert_eq!(
        res(w, Function::IovaToPhys, &[d, 0x4000]),
        Err(Error::NotMapped)
    );
}

#[test]
fn map_unmap_roundtrip_with_one_invalidation() {
    let (h, d) = paging_harness();
    let w = &h.w;
    let vmid = (d & 0xffff) as u16 + 1;
    // 4 MiB at a 2 MiB-aligned IOVA/PA: two 2 MiB blocks.
    assert_eq!(
        res(
            w,
            Function::MapPages,
            &[d, 0x4000_0000, host(0), M2, 2, RW | abi::PROT_CACHE]
        ),
        Ok(4 << 20)
    );
    assert_eq!(
        res(w, Function::IovaToPhys, &[d, 0x4020_0abc]),
        Ok(host(0x20_0abc))
    );
    assert_eq!(stat(w, Stat::MappedPages), 1024);
    assert_eq!(
        w.ownership().state(host(0x1000)),
        crate::ownership::PageState::Host {
            kind: MemKind::Ram,
            count: 1
        }
    );
    clear_commands(w);
    assert_eq!(
        res(w, Function::UnmapPages, &[d, 0x4000_0000, M2, 2]),
        Ok(4 << 20)
    );
    let invals = invals(w);
    assert_eq!(
        invals,
        [Inval::Range(S2Invalidation {
            vmid: Vmid(vmid),
            iova: 0x4000_0000,
            size: 4 << 20,
            leaf_size: LeafSize::Block2M,
            leaf_only: true,
        })]
    );
    assert_eq!(stat(w, Stat::MappedPages), 0);
    assert_eq!(
        res(w, Function::IovaToPhys, &[d, 0x4000_0000]),
        Err(Error::NotMapped)
    );
    assert_eq!(
        res(w, Function::UnmapPages, &[d, 0x4000_0000, K4, 1]),
        Err(Error::NotMapped)
    );
}
