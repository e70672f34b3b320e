//! Host microbenchmark of the hypervisor's map/unmap path (not a correctness test: `#[ignore]`d).
//!
//! Times `Warden::handle(MAP_PAGES)` + `UNMAP_PAGES` of 1, 16, 256 and 512 4 KiB pages in a paging domain of the
//! shipped hypervisor (`warden_core::test_support`: the real SMMU adapter and driver over the fake SMMU, whose
//! command processing is part of each unmap's time), and the pieces a map and an unmap are made of (`map_need`, ownership `inc_range`, the table update, `leaves`,
//! `clear`, `dec_range`) on their own. x86 timings are only a proxy for EL2 under QEMU TCG, but the ratios
//! show where the time goes. Run with
//! `cargo test --release -p warden-core --test bench_map -- --ignored --nocapture`.

use std::hint::black_box;
use std::time::Instant;

use warden_abi::{self as abi, Function};
use warden_core::domain::{PagePool, PagingDomain, attributes};
use warden_core::ownership::{MemKind, Ownership};
use warden_core::test_support::{Harness, Options};
use warden_dt::PhysRange;

/// RAM of the pieces' own ownership map and pool.
const RAM: u64 = 0x4000_0000;
const RAM_SIZE: u64 = 64 << 20;
const RW: u64 = abi::PROT_READ | abi::PROT_WRITE | abi::PROT_CACHE;
const SIZES: [u64; 4] = [1, 16, 256, 512];

fn iters(pages: u64) -> u64 {
    (200_000 / pages).max(200)
}

fn ns(t: Instant, n: u64) -> f64 {
    t.elapsed().as_nanos() as f64 / n as f64
}

fn call(h: &Harness, f: Function, args: &[u64]) -> u64 {
    h.ok(f, args)[1]
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn map_unmap_costs() {
    let w = Harness::boot(&Options {
        ram_size: RAM_SIZE,
        ..Options::default()
    })
    .expect("boot");
    let dom = call(
        &w,
        Function::DomainAlloc,
        &[abi::DomainKind::Paging.value()],
    );
    let pa = w.host_ram(0x1000); // not 2 MiB aligned: pages, like the shim's maps
    let iova = 0x100_0000;
    println!("pages  map ns/call  (ns/page)  unmap ns/call  (ns/page)   [Warden::handle]");
    for pages in SIZES {
        let n = iters(pages);
        // Warm up (the tables exist after the first map).
        call(
            &w,
            Function::MapPages,
            &[dom, iova, pa, abi::PGSIZE_4K, pages, RW],
        );
        call(
            &w,
            Function::UnmapPages,
            &[dom, iova, abi::PGSIZE_4K, pages],
        );
        let (mut tm, mut tu) = (0f64, 0f64);
        for _ in 0..n {
            let t = Instant::now();
            call(
                &w,
                Function::MapPages,
                &[dom, iova, pa, abi::PGSIZE_4K, pages, RW],
            );
            tm += ns(t, 1);
            let t = Instant::now();
            call(
                &w,
                Function::UnmapPages,
                &[dom, iova, abi::PGSIZE_4K, pages],
            );
            tu += ns(t, 1);
        }
        let (m, u) = (tm / n as f64, tu / n as f64);
        println!(
            "{pages:5}  {m:11.0}  ({:7.1})  {u:13.0}  ({:7.1})",
            m / pages as f64,
            u / pages as f64
        );
    }

    // The pieces, on a domain and ownership map of their own.
    let ram = [PhysRange {
        base: RAM,
        size: RAM_SIZE,
    }];
    let pa = RAM + (4 << 20) + 0x1000;
    let own = Ownership::new(&ram, &[], &[]).unwrap();
    let backing2 = vec![0u64; 64 * 512];
    let pool = std::sync::Arc::new(PagePool::new(
        &[PhysRange {
            base: RAM,
            size: 64 * 4096,
        }],
        0,
        (backing2.as_ptr() as u64).wrapping_sub(RAM),
    ));
    let mut d = PagingDomain::new(pool.clone(), 1, warden_smmu::Vmid(2), 0).unwrap();
    let attrs = attributes(RW);
    println!("pages  map_need  inc_range  map  | unmap_need  leaves  clear  dec_range   [ns/call]");
    for pages in SIZES {
        let len = pages * 4096;
        let n = iters(pages);
        let need = d.map_need(iova, pa, len).unwrap();
        pool.reserve(need, 0).unwrap();
        d.map(iova, pa, len, attrs).unwrap();
        d.clear(iova, len).unwrap();
        pool.release_quarantine(1);
        let mut t = [0f64; 7];
        for _ in 0..n {
            let s = Instant::now();
            let need = black_box(d.map_need(iova, pa, len).unwrap());
            t[0] += ns(s, 1);
            pool.reserve(need, 0).unwrap();
            let s = Instant::now();
            own.inc_range(pa, pages, MemKind::Ram).unwrap();
            t[1] += ns(s, 1);
            let s = Instant::now();
            d.map(iova, pa, len, attrs).unwrap();
            t[2] += ns(s, 1);
            let s = Instant::now();
            black_box(d.unmap_need(iova, len).unwrap());
            t[3] += ns(s, 1);
            let s = Instant::now();
            let mut k = 0u64;
            d.leaves(iova, len, |_, p, _, _| {
                k += p.unwrap_or(0);
                true
            });
            black_box(k);
            t[4] += ns(s, 1);
            let s = Instant::now();
            d.clear(iova, len).unwrap();
            t[5] += ns(s, 1);
            pool.release_quarantine(1);
            let s = Instant::now();
            own.dec_range(pa, pages).unwrap();
            t[6] += ns(s, 1);
        }
        let t = t.map(|x| x / n as f64);
        println!(
            "{pages:5}  {:8.0}  {:9.0}  {:4.0} | {:10.0}  {:6.0}  {:5.0}  {:9.0}",
            t[0], t[1], t[2], t[3], t[4], t[5], t[6]
        );
    }
}
