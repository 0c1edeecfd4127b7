//! The claims `authenticate` made current: kept in the backend's memory for one transaction.
//!
//! `auth_pg.claims()` and `auth_pg.uid()` read only this memory, which only a verification can
//! write: no setting, `request.jwt.claims` included, can make them name anyone. The claims
//! follow the transaction's structure as a `SET LOCAL` would:
//!
//! - they are tagged with the transaction's local id (`MyProc->lxid`) and dropped by a
//!   transaction callback at its end, so the next transaction on a pooled connection starts
//!   with none, even if a callback were missed;
//! - claims set in a subtransaction that aborts (a `ROLLBACK TO SAVEPOINT`, a PL/pgSQL exception
//!   block) are dropped with it, and those set before it are current again;
//! - a failed `authenticate` leaves the transaction with no claims, never with older ones.

use std::cell::{Cell, RefCell};

use pgrx::pg_sys;

use super::keys::Claims;

/// The claims of one `authenticate` call (`None` when its token was not valid), and the
/// subtransaction that made them.
struct Entry {
    subtransaction: pg_sys::SubTransactionId,
    claims: Option<Claims>,
}

/// One transaction's entries, oldest first; the last is current. Entries of a subtransaction
/// that commits pass to its parent, so there is at most one per open (sub)transaction.
struct TransactionClaims {
    transaction: pg_sys::LocalTransactionId,
    entries: Vec<Entry>,
}

thread_local! {
    static CURRENT: RefCell<Option<TransactionClaims>> = const { RefCell::new(None) };
    static CALLBACKS_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// The backend's current local transaction id.
fn local_transaction() -> pg_sys::LocalTransactionId {
    // SAFETY: MyProc is set for every backend before it runs a query, and lxid is written only
    // by this backend, at the start of each transaction.
    unsafe { (*pg_sys::MyProc).lxid }
}

/// Forgets everything at the end of the transaction, however it ends.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    if matches!(
        event,
        XACT_EVENT_COMMIT
            | XACT_EVENT_ABORT
            | XACT_EVENT_PREPARE
            | XACT_EVENT_PARALLEL_COMMIT
            | XACT_EVENT_PARALLEL_ABORT
    ) {
        CURRENT.with_borrow_mut(|current| *current = None);
    }
}

/// Drops the claims of an aborted subtransaction; passes those of a committed one to its
/// parent.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn at_subtransaction_end(
    event: pg_sys::SubXactEvent::Type,
    subtransaction: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    CURRENT.with_borrow_mut(|current| {
        let Some(current) = current.as_mut() else {
            return;
        };
        match event {
            // Subtransaction ids grow as subtransactions start, and the one ending is the
            // innermost open one: entries with an id at least its own were made in it or in
            // its (committed) children.
            SUBXACT_EVENT_ABORT_SUB => current
                .entries
                .retain(|entry| entry.subtransaction < subtransaction),
            SUBXACT_EVENT_COMMIT_SUB => {
                for entry in &mut current.entries {
                    if entry.subtransaction >= subtransaction {
                        entry.subtransaction = parent;
                    }
                }
                // Keep only the last of the parent's entries.
                let len = current.entries.len();
                if len >= 2
                    && current.entries[len - 2].subtransaction
                        == current.entries[len - 1].subtransaction
                {
                    current.entries.remove(len - 2);
                }
            }
            _ => {}
        }
    });
}

fn register_callbacks() {
    if CALLBACKS_REGISTERED.get() {
        return;
    }
    // SAFETY: registers plain functions with no argument, for the backend's life; they touch
    // only thread-local Rust state and never raise.
    unsafe {
        pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(at_subtransaction_end), std::ptr::null_mut());
    }
    CALLBACKS_REGISTERED.set(true);
}

/// Makes `claims` the current transaction's (`None`: no claims).
pub(crate) fn set(claims: Option<Claims>) {
    register_callbacks();
    let transaction = local_transaction();
    // SAFETY: reads the current subtransaction's id; always set inside a transaction.
    let subtransaction = unsafe { pg_sys::GetCurrentSubTransactionId() };
    CURRENT.with_borrow_mut(|current| {
        let state = match current {
            Some(state) if state.transaction == transaction => state,
            _ => current.insert(TransactionClaims {
                transaction,
                entries: Vec::new(),
            }),
        };
        if let Some(last) = state.entries.last_mut()
            && last.subtransaction == subtransaction
        {
            last.claims = claims;
        } else {
            state.entries.push(Entry {
                subtransaction,
                claims,
            });
        }
    });
}

/// Calls `read` with the current transaction's claims, if a valid token was authenticated in
/// it (and not undone by a rollback to a savepoint).
pub(crate) fn with_current<R>(read: impl FnOnce(Option<&Claims>) -> R) -> R {
    CURRENT.with_borrow(|current| {
        let claims = current
            .as_ref()
            .filter(|state| state.transaction == local_transaction())
            .and_then(|state| state.entries.last())
            .and_then(|entry| entry.claims.as_ref());
        read(claims)
    })
}
