//! Why [`Warden::new`](super::Warden::new) or a call failed, and how failures become ABI errors.

use super::*;
use crate::domain::DomainError;
use crate::ownership::{OwnershipError, OwnershipInitError};

/// Why [`Warden::new`] failed.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum InitError {
    /// The memory description is inconsistent.
    #[error("memory map: {0}")]
    Ownership(#[from] OwnershipInitError),
    /// Building the host-identity domain failed (a broken invariant: its pool holds exactly its boot tables).
    #[error("page-table pool: {0}")]
    Domain(#[from] DomainError),
    /// `Config::pool` cannot hold the host-identity pool (boot tables and spare) plus [`MIN_DOMAIN_POOL_PAGES`].
    #[error("page-table pool of {have} pages, {need} needed")]
    PoolTooSmall {
        /// Pages needed: the host-identity pool plus [`MIN_DOMAIN_POOL_PAGES`].
        need: usize,
        /// Pages `Config::pool` holds.
        have: usize,
    },
    /// Host RAM or a doorbell ends beyond what the SMMU translates (its IAS, at most 48 bits), so the
    /// host-identity domain cannot map it 1:1.
    #[error(
        "host RAM and MSI doorbells end at {top:#x}, which needs {need_bits}-bit IOVAs in the host-identity \
         domain, but the SMMU takes at most {ias_bits}-bit stage-2 input addresses (IDR5.OAS; 48 bits at most \
         are used): devices could not reach that memory. Boot with the memory above 2^{ias_bits} left out of \
         the device tree, or on an SMMU with a larger output size"
    )]
    BeyondIas {
        /// The first address past the host's RAM and doorbells.
        top: u64,
        /// Input bits that address needs.
        need_bits: u8,
        /// The SMMU's stage-2 input size.
        ias_bits: u8,
    },
    /// A config value is out of range (`max_domains`, `vmid_bits`, `pa_bits`, SID ranges).
    #[error("bad configuration")]
    BadConfig,
    /// Installing the host-identity STEs failed.
    #[error("STE install: {0}")]
    Hw(#[from] HwError),
}

/// A call's failure: an ABI error, or NOMEM with the number of pages the host should donate.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum CallError {
    /// `x0` = the error.
    Abi(Error),
    /// `x0` = [`Error::NoMem`], `x1` = pages needed.
    NoMem(u64),
    /// A `MAP_BATCH` failure: `x0` = `error`, `x1` = `pages` (pages needed for [`Error::NoMem`], else 0),
    /// `x2` = `index` (the failing descriptor, or [`abi::MAP_BATCH_NO_ENTRY`]).
    Batch {
        /// The error.
        error: Error,
        /// Pages to donate (NOMEM only).
        pages: u64,
        /// Index of the failing descriptor, or [`abi::MAP_BATCH_NO_ENTRY`].
        index: u64,
    },
}

impl From<Error> for CallError {
    fn from(e: Error) -> Self {
        CallError::Abi(e)
    }
}

impl From<HwError> for CallError {
    fn from(e: HwError) -> Self {
        match e {
            HwError::Timeout => Error::Timeout.into(),
            HwError::NoMem => CallError::NoMem(1),
            HwError::Failed => Error::HwError.into(),
        }
    }
}

impl From<DomainError> for CallError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::NoMem(n) => CallError::NoMem(n as u64),
            DomainError::AlreadyMapped(_) => Error::AlreadyMapped.into(),
            DomainError::NotMapped(_) => Error::NotMapped.into(),
            DomainError::Busy(_) => Error::Busy.into(),
            DomainError::Limit => Error::Limit.into(),
            DomainError::Internal => Error::Internal.into(),
        }
    }
}

impl From<OwnershipError> for CallError {
    fn from(e: OwnershipError) -> Self {
        Error::from(e).into()
    }
}

impl From<OwnershipError> for Error {
    fn from(e: OwnershipError) -> Self {
        match e {
            OwnershipError::NotHostMemory(_) => Error::NotHostMemory,
            OwnershipError::HypMemory(_) => Error::HypMemory,
            OwnershipError::DonatedMemory(_) => Error::DonatedMemory,
            OwnershipError::WrongKind(_) => Error::BadProt,
            OwnershipError::Busy(_) => Error::Busy,
            OwnershipError::NotDonated(_) => Error::NotDonated,
            OwnershipError::CountOverflow(_) => Error::CountOverflow,
            OwnershipError::CountUnderflow(_) | OwnershipError::BadRange(_) => Error::Internal,
        }
    }
}

pub(super) type CallResult = Result<[u64; 3], CallError>;
