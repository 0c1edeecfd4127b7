//! `NOTIFY auth_pg_invalidate`: telling every cache what to forget.
//!
//! Notifications are transactional: listeners hear of a revocation when (and only if) its
//! transaction commits. Payloads carry ids only (see `auth_core::invalidation`).

use auth_core::Invalidation;
use auth_core::invalidation::CHANNEL;
use pgrx::{IntoDatum, direct_function_call, pg_sys};

/// Queues `invalidation` for delivery when the current transaction commits.
pub(crate) fn send(invalidation: &Invalidation) {
    let payload = invalidation.to_payload();
    // SAFETY: pg_notify takes two text arguments, both non-NULL here, and returns void.
    unsafe {
        direct_function_call::<()>(
            pg_sys::pg_notify,
            &[CHANNEL.into_datum(), payload.as_str().into_datum()],
        );
    }
}
