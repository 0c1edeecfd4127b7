//! Unguarded declarations of the PostgreSQL functions that a check calls in sequence.
//!
//! pgrx wraps every function of `pg_sys` in its own error boundary (a `sigsetjmp` and the
//! bookkeeping around it), which costs about 120 instructions a call; a credential check makes
//! two dozen such calls, a tenth of its own work. The hot paths in [`crate::storage`] instead
//! run each phase of a probe (open, search, close) as one sequence of these plain calls inside
//! a single [`pg_guard_ffi_boundary`], which turns an ERROR raised anywhere in the sequence into
//! a Rust panic exactly as the per-call wrappers do.
//!
//! The signatures are PostgreSQL 15's, the same as pgrx's bindings of the same symbols.
//!
//! SAFETY (for every caller): call these only inside [`pg_guard_ffi_boundary`], in a closure
//! that cannot panic and whose frames hold no value with a destructor, so that an ERROR's
//! `longjmp` back to the boundary skips nothing that needed to run.
//!
//! [`pg_guard_ffi_boundary`]: pgrx::pg_sys::ffi::pg_guard_ffi_boundary

use pgrx::pg_sys::{
    Datum, IndexScanDesc, LOCKMODE, Oid, RegProcedure, Relation, ScanDirection, ScanKey, Snapshot,
    StrategyNumber, TupleTableSlot, varlena,
};
use std::ffi::c_int;

unsafe extern "C-unwind" {
    pub(crate) fn try_relation_open(relation_id: Oid, lockmode: LOCKMODE) -> Relation;
    pub(crate) fn relation_close(relation: Relation, lockmode: LOCKMODE);
    pub(crate) fn index_close(relation: Relation, lockmode: LOCKMODE);
    pub(crate) fn ActiveSnapshotSet() -> bool;
    pub(crate) fn GetActiveSnapshot() -> Snapshot;
    pub(crate) fn GetTransactionSnapshot() -> Snapshot;
    pub(crate) fn index_beginscan(
        heap: Relation,
        index: Relation,
        snapshot: Snapshot,
        nkeys: c_int,
        norderbys: c_int,
    ) -> IndexScanDesc;
    pub(crate) fn index_rescan(
        scan: IndexScanDesc,
        keys: ScanKey,
        nkeys: c_int,
        orderbys: ScanKey,
        norderbys: c_int,
    );
    pub(crate) fn index_getnext_slot(
        scan: IndexScanDesc,
        direction: ScanDirection::Type,
        slot: *mut TupleTableSlot,
    ) -> bool;
    pub(crate) fn index_endscan(scan: IndexScanDesc);
    pub(crate) fn table_slot_create(
        relation: Relation,
        reglist: *mut *mut pgrx::pg_sys::List,
    ) -> *mut TupleTableSlot;
    pub(crate) fn ExecDropSingleTupleTableSlot(slot: *mut TupleTableSlot);
    pub(crate) fn slot_getsomeattrs_int(slot: *mut TupleTableSlot, attnum: c_int);
    pub(crate) fn ScanKeyInit(
        entry: ScanKey,
        attribute_number: pgrx::pg_sys::AttrNumber,
        strategy: StrategyNumber,
        procedure: RegProcedure,
        argument: Datum,
    );
    pub(crate) fn pg_detoast_datum_packed(datum: *mut varlena) -> *mut varlena;
}
