//! DOMAIN_ALLOC, DOMAIN_FREE, ATTACH/DETACH: every error path and the STEs written.

use super::*;

#[test]
fn domain_alloc_free_errors() {
    let h = harness_with(256, 3, 16);
    let w = &h.w;
    assert_eq!(res(w, Function::DomainAlloc, &[2]), Err(Error::BadKind));
    assert_eq!(
        res(w, Function::DomainAlloc, &[u64::MAX]),
        Err(Error::BadKind)
    );
    let a = alloc_paging(w);
    let b = res(w, Function::DomainAlloc, &[1]).unwrap();
    let c = alloc_paging(w);
    assert_ne!(a, 0);
    assert_eq!(BTreeSet::from([a, b, c]).len(), 3);
    assert_eq!(res(w, Function::DomainAlloc, &[0]), Err(Error::Limit));
    assert_eq!(stat(w, Stat::DomainsInUse), 3);
    assert_eq!(
        res(w, Function::DomainFree, &[0]),
        Err(Error::ImmutableDomain)
    );
    for bad in [1 << 16, 4, 0xffff, 1 << 32, u64::MAX, a ^ (1 << 16)] {
        assert_eq!(
            res(w, Function::DomainFree, &[bad]),
            Err(Error::BadDomain),
            "id {bad:#x}"
        );
    }
    assert_eq!(res(w, Function::DomainFree, &[a]), Ok(0));
    assert_eq!(
        res(w, Function::DomainFree, &[a]),
        Err(Error::BadDomain),
        "double free"
    );
    let a2 = alloc_paging(w);
    assert_ne!(a2, a, "a reused slot gets a new generation");
    assert_eq!(
        res(w, Function::DomainFree, &[a]),
        Err(Error::BadDomain),
        "stale id"
    );
    assert_eq!(
        res(w, Function::Attach, &[1, a]),
        Err(Error::BadDomain),
        "attach to a freed domain"
    );
    // Freeing a paging domain invalidates its VMID.
    let vmid = (a2 & 0xffff) as u16 + 1;
    assert_eq!(res(w, Function::DomainFree, &[a2]), Ok(0));
    assert_eq!(invals(w).last(), Some(&Inval::Vmid(Vmid(vmid))));
    assert_eq!(stat(w, Stat::DomainsInUse), 2);
}

#[test]
fn attach_detach_rules() {
    let (h, d) = paging_harness();
    let w = &h.w;
    let b = res(w, Function::DomainAlloc, &[1]).unwrap();
    for bad in [16, 0xff, 0x108, 1 << 32, u64::MAX] {
        assert_eq!(
            res(w, Function::Attach, &[bad, d]),
            Err(Error::BadSid),
            "sid {bad:#x}"
        );
        assert_eq!(res(w, Function::Detach, &[bad]), Err(Error::BadSid));
    }
    assert_eq!(
        res(w, Function::Attach, &[3, 1 << 40]),
        Err(Error::BadDomain)
    );
    assert_eq!(
        res(w, Function::Attach, &[3, 7]),
        Err(Error::BadDomain),
        "never allocated"
    );
    clear_commands(w);
    assert_eq!(res(w, Function::Attach, &[3, d]), Ok(0));
    let writes = commands(w).len();
    assert!(writes > 0, "the STE is written (CFGI_STE + CMD_SYNC)");
    assert_eq!(res(w, Function::Attach, &[3, d]), Ok(0), "idempotent");
    assert_eq!(commands(w).len(), writes, "attaching again writes nothing");
    assert_eq!(res(w, Function::Attach, &[0x107, b]), Ok(0));
    // The shipped adapter's blocked STE is stage 2 over an empty table (DMA faults are reported), not an abort.
    assert_eq!(ste(w, 0x107), ste_for(w, SteConfig::Blocked));
    assert_eq!(
        h.translate(0x107, host(0), false),
        Translation::Fault(warden_smmu::event::event_id::F_TRANSLATION)
    );
    let c = ste(w, 3).s2_config().expect("a stage-2 STE");
    assert_eq!(c.vmid.0, (d & 0xffff) as u16 + 1);
    assert_eq!(stat(w, Stat::AttachedSids), 2);
    assert_eq!(w.sid_domain(3), Some(d));
    assert_eq!(res(w, Function::DomainFree, &[d]), Err(Error::Busy));
    assert_eq!(res(w, Function::DomainFree, &[b]), Err(Error::Busy));
    // Move SID 3 straight to the blocked domain, then back to identity.
    assert_eq!(res(w, Function::Attach, &[3, b]), Ok(0));
    assert_eq!(res(w, Function::DomainFree, &[d]), Ok(0));
    assert_eq!(res(w, Function::Detach, &[3]), Ok(0));
    assert_eq!(res(w, Function::Detach, &[3]), Ok(0));
    assert_eq!(
        res(w, Function::Attach, &[0x107, 0]),
        Ok(0),
        "attach to host-identity = detach"
    );
    assert_eq!(ste(w, 3), ste_for(w, w.identity_ste()));
    assert_eq!(res(w, Function::DomainFree, &[b]), Ok(0));
    assert_eq!(stat(w, Stat::AttachedSids), 0);
}
