//! The error type of domain and pool operations.

/// Errors of domain and pool operations.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum DomainError {
    /// The pool lacks this many pages.
    #[error("page-table pool short by {0} pages")]
    NoMem(usize),
    /// Part of the range is mapped.
    #[error("IOVA {0:#x} already mapped")]
    AlreadyMapped(u64),
    /// Part of the range is not mapped.
    #[error("IOVA {0:#x} not mapped")]
    NotMapped(u64),
    /// A donated page is in use as a page table, or needed to keep reservations.
    #[error("page {0:#x} in use")]
    Busy(u64),
    /// The donation capacity would be exceeded.
    #[error("donation limit")]
    Limit,
    /// aarch64-paging refused an update (broken invariant: arguments were validated before).
    #[error("page-table update failed")]
    Internal,
}
