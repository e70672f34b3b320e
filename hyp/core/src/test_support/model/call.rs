//! [`Call`]: what a test asks the hypervisor; [`Expect`]: what the model predicts it answers; [`Check`]: how
//! closely the answer is held to the prediction.

use warden_abi::{self as abi, Error, Function};

/// A call the model knows, with its raw arguments (hostile values included).
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Call {
    /// `DOMAIN_ALLOC(kind)`.
    DomainAlloc {
        /// x1.
        kind: u64,
    },
    /// `DOMAIN_FREE(id)`.
    DomainFree {
        /// x1.
        id: u64,
    },
    /// `ATTACH(sid, id)`.
    Attach {
        /// x1.
        sid: u64,
        /// x2.
        id: u64,
    },
    /// `DETACH(sid)`.
    Detach {
        /// x1.
        sid: u64,
    },
    /// `MAP_PAGES(id, iova, pa, pgsize, count, prot)`.
    MapPages {
        /// x1.
        id: u64,
        /// x2.
        iova: u64,
        /// x3.
        pa: u64,
        /// x4.
        pgsize: u64,
        /// x5.
        count: u64,
        /// x6.
        prot: u64,
    },
    /// `UNMAP_PAGES(id, iova, pgsize, count)`.
    UnmapPages {
        /// x1.
        id: u64,
        /// x2.
        iova: u64,
        /// x3.
        pgsize: u64,
        /// x4.
        count: u64,
    },
    /// `MAP_BATCH(id, desc, count, prot)`: the model reads the descriptors at `desc` as the hypervisor does.
    MapBatch {
        /// x1.
        id: u64,
        /// x2.
        desc: u64,
        /// x3.
        count: u64,
        /// x4.
        prot: u64,
    },
    /// `UNMAP_BATCH(id, desc, count)`.
    UnmapBatch {
        /// x1.
        id: u64,
        /// x2.
        desc: u64,
        /// x3.
        count: u64,
    },
    /// `DONATE(pa, count)`.
    Donate {
        /// x1.
        pa: u64,
        /// x2.
        count: u64,
    },
    /// `RECLAIM(pa, count)`.
    Reclaim {
        /// x1.
        pa: u64,
        /// x2.
        count: u64,
    },
    /// `IOVA_TO_PHYS(id, iova)`.
    IovaToPhys {
        /// x1.
        id: u64,
        /// x2.
        iova: u64,
    },
    /// `STAT(id)`.
    Stat {
        /// x1.
        id: u64,
    },
    /// `READ_EVENT`.
    ReadEvent,
    /// A function number in Warden's range that no function has, with any arguments.
    Unknown {
        /// The function number (without [`abi::FID_BASE`]).
        number: u32,
        /// x1..x6.
        args: [u64; 6],
    },
}

impl Call {
    /// A short name, for tallies: the function's, or `unknown`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::DomainAlloc { .. } => "alloc",
            Self::DomainFree { .. } => "free",
            Self::Attach { .. } => "attach",
            Self::Detach { .. } => "detach",
            Self::MapPages { .. } => "map",
            Self::UnmapPages { .. } => "unmap",
            Self::MapBatch { .. } => "map_batch",
            Self::UnmapBatch { .. } => "unmap_batch",
            Self::Donate { .. } => "donate",
            Self::Reclaim { .. } => "reclaim",
            Self::IovaToPhys { .. } => "iova_to_phys",
            Self::Stat { .. } => "stat",
            Self::ReadEvent => "read_event",
            Self::Unknown { .. } => "unknown",
        }
    }

    /// The function ID and the argument registers.
    pub(super) fn regs(&self) -> (u32, [u64; 6]) {
        let f = |f: Function, a: &[u64]| {
            let mut args = [0; 6];
            args[..a.len()].copy_from_slice(a);
            (f.fid(), args)
        };
        match *self {
            Self::DomainAlloc { kind } => f(Function::DomainAlloc, &[kind]),
            Self::DomainFree { id } => f(Function::DomainFree, &[id]),
            Self::Attach { sid, id } => f(Function::Attach, &[sid, id]),
            Self::Detach { sid } => f(Function::Detach, &[sid]),
            Self::MapPages {
                id,
                iova,
                pa,
                pgsize,
                count,
                prot,
            } => f(Function::MapPages, &[id, iova, pa, pgsize, count, prot]),
            Self::UnmapPages {
                id,
                iova,
                pgsize,
                count,
            } => f(Function::UnmapPages, &[id, iova, pgsize, count]),
            Self::MapBatch {
                id,
                desc,
                count,
                prot,
            } => f(Function::MapBatch, &[id, desc, count, prot]),
            Self::UnmapBatch { id, desc, count } => f(Function::UnmapBatch, &[id, desc, count]),
            Self::Donate { pa, count } => f(Function::Donate, &[pa, count]),
            Self::Reclaim { pa, count } => f(Function::Reclaim, &[pa, count]),
            Self::IovaToPhys { id, iova } => f(Function::IovaToPhys, &[id, iova]),
            Self::Stat { id } => f(Function::Stat, &[id]),
            Self::ReadEvent => f(Function::ReadEvent, &[]),
            Self::Unknown { number, args } => (abi::FID_BASE | number, args),
        }
    }

    pub(super) fn is_batch(&self) -> bool {
        matches!(self, Self::MapBatch { .. } | Self::UnmapBatch { .. })
    }
}

/// What the model predicts a call answers.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Expect {
    /// `Ok(Some([x1, x2, x3]))`; `Ok(None)` when any values will do (a new domain's ID, a STAT value, an event
    /// record); or the error. For a batch the model names the first rule the call breaks, which with several
    /// broken need not be the one the hypervisor checks first ([`Check::Legality`] does not compare it).
    pub answer: Result<Option<[u64; 3]>, Error>,
    /// An error the hypervisor may answer instead, whose cause the model does not track: BUSY for a reclaim of
    /// pages that may hold a live domain's page tables, BAD_STAT for a statistic the harness does not install.
    pub or: Option<Error>,
}

impl Expect {
    pub(super) fn ok(x1: u64) -> Self {
        Self {
            answer: Ok(Some([x1, 0, 0])),
            or: None,
        }
    }

    pub(super) fn any() -> Self {
        Self {
            answer: Ok(None),
            or: None,
        }
    }
}

impl From<Result<u64, Error>> for Expect {
    fn from(r: Result<u64, Error>) -> Self {
        match r {
            Ok(x1) => Self::ok(x1),
            Err(e) => Self {
                answer: Err(e),
                or: None,
            },
        }
    }
}

/// How [`Model::run`] holds the hypervisor's answer to the prediction.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Check {
    /// The answer is the predicted one, or [`Expect::or`].
    Exact,
    /// For hostile arguments: a success was predicted (same x1..x3), and a call predicted to succeed may only
    /// fail with NOMEM (the pool ran dry: the model does not count page-table pages) or [`Expect::or`].
    Legality,
}
