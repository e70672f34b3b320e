//! Random sequences of well-formed calls against the reference model ([`crate::test_support::model`]): the
//! hypervisor's answer to every call must be exactly the one the model predicts (a failing call changing
//! nothing), and after every call everything observable (`IOVA_TO_PHYS`, ownership, STAT counters,
//! host-identity's spare and the pool, STEs, what each StreamID's DMA reaches) must agree with the model. The
//! sequence runs on a fake SMMU without BBML2 (block splits are break-before-make) and ends with the shim's
//! teardown, page by page, back to the start values. The fuzzer (`tests/fuzz_dispatch.rs`) runs the same model
//! with hostile arguments.

use super::*;
use crate::test_support::model::{Call, Check, Model, Teardown};

const WINDOW_PAGES: u64 = 2048;
const MAX_DOMAINS: u16 = 4;
const MAX_DONATED: usize = 256;

#[derive(Clone, Debug)]
enum Op {
    Alloc(bool),
    Free(usize),
    Attach(usize, usize),
    Detach(usize),
    Map {
        dom: usize,
        iova: u64,
        pa: u64,
        big: bool,
        count: u64,
    },
    Unmap {
        dom: usize,
        iova: u64,
        big: bool,
        count: u64,
    },
    Donate(u64, u64),
    Reclaim(u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => any::<bool>().prop_map(Op::Alloc),
        1 => (0usize..8).prop_map(Op::Free),
        2 => (0usize..26, 0usize..8).prop_map(|(s, d)| Op::Attach(s, d)),
        1 => (0usize..26).prop_map(Op::Detach),
        6 => (0usize..8, 0..WINDOW_PAGES, 0u64..4200, prop::bool::weighted(0.2), 1u64..40)
            .prop_map(|(dom, iova, pa, big, count)| Op::Map { dom, iova, pa, big, count }),
        4 => (0usize..8, 0..WINDOW_PAGES, prop::bool::weighted(0.2), 1u64..40)
            .prop_map(|(dom, iova, big, count)| Op::Unmap { dom, iova, big, count }),
        2 => (0u64..4200, 1u64..8).prop_map(|(p, c)| Op::Donate(p, c)),
        2 => (0u64..4200, 1u64..8).prop_map(|(p, c)| Op::Reclaim(p, c)),
    ]
}

/// The domain ID choice `i` names: one allocated so far (maybe freed), or a never-allocated one.
fn dom(m: &Model, i: usize) -> u64 {
    match m.ids() {
        [] => 0x5,
        ids => ids[i % ids.len()],
    }
}

/// StreamID choice `i`: the 24 valid ones, then two invalid.
fn sid_of(m: &Model, i: usize) -> u64 {
    match m.sids().get(i) {
        Some(&s) => u64::from(s),
        None if i == 24 => 16,
        None => 0x200,
    }
}

/// The call `op` makes in the model's state: page numbers become host addresses and IOVAs (4 KiB pages, or
/// 2 MiB ones when `big`), choices become domain IDs and StreamIDs.
fn call(m: &Model, op: &Op) -> Call {
    let rw = abi::PROT_READ | abi::PROT_WRITE;
    match *op {
        Op::Alloc(blocked) => Call::DomainAlloc {
            kind: u64::from(blocked),
        },
        Op::Free(i) => Call::DomainFree { id: dom(m, i) },
        Op::Attach(s, i) => Call::Attach {
            sid: sid_of(m, s),
            id: dom(m, i),
        },
        Op::Detach(s) => Call::Detach { sid: sid_of(m, s) },
        Op::Map {
            dom: i,
            iova,
            pa,
            big,
            count,
        } => {
            let (iova, pa, pgsize, count) = if big {
                ((iova % 4) * M2, RAM + (pa % 9) * M2, M2, count % 3 + 1)
            } else {
                (iova * K4, RAM + pa * K4, K4, count)
            };
            let (id, prot) = (dom(m, i), rw);
            Call::MapPages {
                id,
                iova,
                pa,
                pgsize,
                count,
                prot,
            }
        }
        Op::Unmap {
            dom: i,
            iova,
            big,
            count,
        } => {
            let (iova, pgsize, count) = if big {
                ((iova % 4) * M2, M2, count % 3 + 1)
            } else {
                (iova * K4, K4, count)
            };
            let id = dom(m, i);
            Call::UnmapPages {
                id,
                iova,
                pgsize,
                count,
            }
        }
        Op::Donate(p, count) => Call::Donate {
            pa: RAM + p * K4,
            count,
        },
        Op::Reclaim(p, count) => Call::Reclaim {
            pa: RAM + p * K4,
            count,
        },
    }
}

/// Cases of the model test: 48, or `WARDEN_MODEL_CASES` for longer runs.
fn model_cases() -> u32 {
    std::env::var("WARDEN_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: model_cases(), ..ProptestConfig::default() })]

    #[test]
    fn operations_match_reference_model(
        ops in prop::collection::vec(op(), 1..60),
        probes in prop::collection::vec(any::<u64>(), 8),
    ) {
        // Break-before-make on block splits (an SMMU without BBML2): the model's answers must not change.
        let o = Options { bbml: 0, ..options(512, MAX_DOMAINS, MAX_DONATED) };
        let h = boot(&o);
        let mut m = Model::new(&h, &o);
        for op in &ops {
            // The model checks the answer.
            let _ = m.run(&h, &call(&m, op), Check::Exact);
            m.check(&h, &probes);
        }
        // Like the shim's unload: detach all, unmap all page by page, free all, reclaim all; back to the start.
        m.teardown(&h, Teardown::UnmapEach);
    }
}
