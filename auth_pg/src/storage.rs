//! Direct reads of auth_pg's tables by key, through their indexes.
//!
//! A validation is one index probe. Going through SPI would add parsing (once), then on every
//! call a plan-cache check, executor start-up and shut-down around that probe, which costs more
//! than the probe itself; reading the index directly keeps a check close to the cost of
//! `SELECT 1`. Everything here is read-only and uses the caller's active snapshot, so it sees
//! exactly what a query in the same statement would see, and runs on a hot standby.
//!
//! Relations are found by name in the `auth_pg` schema, never through `search_path`, and their
//! OIDs are remembered per backend until a relcache invalidation names them.

use std::cell::Cell;
use std::ffi::CStr;
use std::marker::PhantomData;

use pgrx::IntoDatum;
use pgrx::pg_sys::{self, Datum, Oid};

use crate::error::AuthPgError;
use crate::fmgr::{SHORT_VARLENA_MAX, short_varlena_header};
use crate::raw;

/// The relations that are read directly.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rel {
    Tokens,
    TokensHashIndex,
    ApiKeyLookup,
    ApiKeyLookupHashIndex,
    Sessions,
    SessionsHashIndex,
    UserGrants,
    UserGrantsKeyIndex,
    JwtKeys,
}

impl Rel {
    const COUNT: usize = 9;

    fn name(self) -> &'static CStr {
        match self {
            Self::Tokens => c"tokens",
            Self::TokensHashIndex => c"tokens_token_hash_idx",
            Self::ApiKeyLookup => c"api_key_lookup",
            Self::ApiKeyLookupHashIndex => c"api_key_lookup_key_hash_idx",
            Self::Sessions => c"sessions",
            Self::SessionsHashIndex => c"sessions_session_hash_idx",
            Self::UserGrants => c"user_grants",
            Self::UserGrantsKeyIndex => c"user_grants_grant_key_idx",
            Self::JwtKeys => c"jwt_keys",
        }
    }
}

thread_local! {
    static OIDS: [Cell<Oid>; Rel::COUNT] = const { [const { Cell::new(Oid::INVALID) }; Rel::COUNT] };
    static INVALIDATIONS: [Cell<u64>; Rel::COUNT] = const { [const { Cell::new(0) }; Rel::COUNT] };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Forgets remembered OIDs when their relcache entries are invalidated (dropped, altered or
/// reindexed relations, a trigger's explicit invalidation, or a full reset), and counts the
/// invalidations of each relation.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn forget_oids(_arg: Datum, relid: Oid) {
    OIDS.with(|oids| {
        INVALIDATIONS.with(|counts| {
            for (cell, count) in oids.iter().zip(counts) {
                if relid == Oid::INVALID || cell.get() == relid {
                    cell.set(Oid::INVALID);
                    count.set(count.get().wrapping_add(1));
                }
            }
        });
    });
}

/// How many relcache invalidations of `rel` this backend has processed since it first looked
/// the relation up (see [`relation_oid`]).
///
/// A cache derived from a table's rows compares this number before each use: the table's
/// writers invalidate its relcache entry (`CacheInvalidateRelcache`, from a trigger), which
/// PostgreSQL delivers to every backend after the writing transaction commits, to the writer
/// itself at its next command, and to the writer again if it aborts. A relation whose OID is
/// not remembered is not counted: it is looked up again, from the catalog, before its rows are
/// next read, and invalidations that arrive from then on are counted.
pub(crate) fn invalidations(rel: Rel) -> u64 {
    INVALIDATIONS.with(|counts| counts[rel as usize].get())
}

/// The OID of `rel`, raising an ERROR when it is missing.
pub(crate) fn relation_oid(rel: Rel) -> Oid {
    let cached = OIDS.with(|oids| oids[rel as usize].get());
    if cached != Oid::INVALID {
        return cached;
    }
    if !CALLBACK_REGISTERED.get() {
        // SAFETY: registers a plain function with no argument; it only touches thread-local
        // cells, so it is safe to run whenever invalidations are processed.
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget_oids), Datum::from(0)) };
        CALLBACK_REGISTERED.set(true);
    }
    // SAFETY: both calls take NUL-terminated names and only read the catalog caches.
    let oid = unsafe {
        let namespace = pg_sys::get_namespace_oid(c"auth_pg".as_ptr(), true);
        if namespace == Oid::INVALID {
            Oid::INVALID
        } else {
            pg_sys::get_relname_relid(rel.name().as_ptr(), namespace)
        }
    };
    if oid == Oid::INVALID {
        AuthPgError::MissingRelation {
            name: format!("auth_pg.{}", rel.name().to_string_lossy()),
        }
        .raise("auth_pg storage");
    }
    OIDS.with(|oids| oids[rel as usize].set(oid));
    oid
}

/// Opens `rel` with `AccessShareLock`, finding it again if its remembered OID went stale.
fn open(rel: Rel, index: bool) -> pg_sys::Relation {
    for _ in 0..2 {
        let oid = relation_oid(rel);
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        // SAFETY: `oid` names a relation in auth_pg, or a relation that has since been
        // dropped; `try_relation_open` returns NULL for the latter instead of raising.
        let relation = unsafe { pg_sys::try_relation_open(oid, lock) };
        if !relation.is_null() {
            // SAFETY: an open relation has a valid `rd_rel`.
            let kind = unsafe { (*(*relation).rd_rel).relkind } as u8;
            let expected = if index {
                pg_sys::RELKIND_INDEX
            } else {
                pg_sys::RELKIND_RELATION
            };
            if kind == expected {
                return relation;
            }
            // SAFETY: we opened it just above with this lock.
            unsafe { pg_sys::relation_close(relation, lock) };
        }
        OIDS.with(|oids| oids[rel as usize].set(Oid::INVALID));
    }
    AuthPgError::MissingRelation {
        name: format!("auth_pg.{}", rel.name().to_string_lossy()),
    }
    .raise("auth_pg storage")
}

/// Lookups of rows of a table by the exact value of a `bytea` key, through a hash index.
///
/// Credential hashes are 256-bit and uniformly distributed: a hash index finds one in a single
/// bucket page whatever the table's size, where a B-tree descends three or four levels, and it
/// is half the size. Uniqueness needs no index: two credentials share a hash with probability
/// 2^-256.
///
/// SECURITY: a hash index stores only a 32-bit hash code of each key, so a probe returns every
/// row whose code matches, and codes of different keys collide (with a million rows, about one
/// well-formed candidate in 4 000 matches some row's code). Every candidate row's key column is
/// compared with the key, as the executor does when an index asks for a recheck; only an exact
/// match is a hit.
///
/// Nothing is opened until the first probe, so a call that rejects its input early pays
/// nothing. Probe any number of times (a batch), drop to close. On an ERROR, the transaction's
/// resource owner releases everything instead of `Drop`.
pub(crate) struct KeyLookup {
    table: Rel,
    index: Rel,
    key_column: usize,
    scan: Option<OpenScan>,
}

#[derive(Clone, Copy)]
struct OpenScan {
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    scan: pg_sys::IndexScanDesc,
    slot: *mut pg_sys::TupleTableSlot,
}

impl KeyLookup {
    /// Lookups in `table` through its hash index `index` on the `bytea` column numbered
    /// `key_column` (1-based).
    pub(crate) fn new(table: Rel, index: Rel, key_column: usize) -> Self {
        Self {
            table,
            index,
            key_column,
            scan: None,
        }
    }

    fn open_scan(table: Rel, index: Rel) -> OpenScan {
        let (heap_oid, index_oid) = (relation_oid(table), relation_oid(index));
        // SAFETY: one boundary around plain calls (see `raw`); the closure holds only raw
        // pointers and integers and cannot panic.
        let opened =
            unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| open_scan_raw(heap_oid, index_oid)) };
        opened.unwrap_or_else(|| {
            // A remembered OID went stale (a dropped or replaced relation): find the relations
            // again, or raise an ERROR that names the missing one.
            let heap = open(table, false);
            let index = open(index, true);
            // SAFETY: as above; both relations are open and locked.
            unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| begin_scan_raw(heap, index)) }
        })
    }

    /// Finds the row visible to this statement whose key is `key`, and lets `read` look at it.
    /// `read` must copy what it keeps: the row's values point into a shared buffer that is
    /// released when the next probe starts or the lookup closes.
    pub(crate) fn find<R>(&mut self, key: &[u8], read: impl FnOnce(&Row<'_>) -> R) -> Option<R> {
        self.find_where(key, |_| true, read)
    }

    /// Finds the first row visible to this statement whose key is `key` and that `accept`
    /// accepts, and lets `read` look at it; as [`find`](Self::find) otherwise.
    pub(crate) fn find_where<R>(
        &mut self,
        key: &[u8],
        mut accept: impl FnMut(&Row<'_>) -> bool,
        read: impl FnOnce(&Row<'_>) -> R,
    ) -> Option<R> {
        let (table, index, key_column) = (self.table, self.index, self.key_column);
        let open = *self
            .scan
            .get_or_insert_with(|| Self::open_scan(table, index));
        // SAFETY: the slot was made for the open table, whose descriptor it points to.
        let natts = unsafe { (*(*open.slot).tts_tupleDescriptor).natts };
        assert!(
            key_column >= 1 && key_column <= usize::try_from(natts).unwrap_or(0),
            "key column {key_column} out of range"
        );
        // The scan key's argument: a `bytea` with a one-byte header on the stack when the key
        // is short enough for one (every credential hash is), else a palloc'd copy. It is read
        // only while searching below (the hash index hashes it in its first step; it compares
        // nothing else), and the next probe replaces it before searching again.
        let mut short = [0u8; SHORT_VARLENA_MAX + 1];
        let key_datum = if key.len() <= SHORT_VARLENA_MAX {
            short[0] = short_varlena_header(key.len());
            short[1..=key.len()].copy_from_slice(key);
            Datum::from(short.as_ptr())
        } else {
            key.into_datum().expect("a byte slice is never NULL")
        };
        // SAFETY: a zeroed ScanKeyData is a valid value for ScanKeyInit to fill.
        let mut scan_key: pg_sys::ScanKeyData = unsafe { std::mem::zeroed() };
        let mut restart = true;
        loop {
            // SAFETY: one boundary around plain calls (see `raw`): the closure holds raw
            // pointers, integers and borrowed slices and cannot panic. The scan and slot are
            // open; `key_datum` and `scan_key` outlive the search.
            let found = unsafe {
                pg_sys::ffi::pg_guard_ffi_boundary(|| {
                    if restart {
                        raw::ScanKeyInit(
                            &mut scan_key,
                            1,
                            pg_sys::HTEqualStrategyNumber as pg_sys::StrategyNumber,
                            pg_sys::RegProcedure::from(pg_sys::F_BYTEAEQ),
                            key_datum,
                        );
                        raw::index_rescan(open.scan, &mut scan_key, 1, std::ptr::null_mut(), 0);
                    }
                    next_with_key_raw(open.scan, open.slot, key_column, key)
                })
            };
            restart = false;
            if !found {
                return None;
            }
            let candidate = Row {
                slot: open.slot,
                _lookup: PhantomData,
            };
            if accept(&candidate) {
                return Some(read(&candidate));
            }
        }
    }
}

/// Opens `heap_oid` and `index_oid` and starts a scan of the index, or returns `None` (with
/// nothing left open) when either is gone or is not what it should be.
///
/// # Safety
///
/// Within `pg_guard_ffi_boundary` (see `raw`).
unsafe fn open_scan_raw(heap_oid: Oid, index_oid: Oid) -> Option<OpenScan> {
    let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    // SAFETY: as documented; an open relation has a valid `rd_rel`.
    unsafe {
        let heap = raw::try_relation_open(heap_oid, lock);
        let index = if heap.is_null() {
            std::ptr::null_mut()
        } else {
            raw::try_relation_open(index_oid, lock)
        };
        let is = |relation: pg_sys::Relation, kind: u8| {
            !relation.is_null() && (*(*relation).rd_rel).relkind as u8 == kind
        };
        if is(heap, pg_sys::RELKIND_RELATION) && is(index, pg_sys::RELKIND_INDEX) {
            return Some(begin_scan_raw(heap, index));
        }
        for relation in [index, heap] {
            if !relation.is_null() {
                raw::relation_close(relation, lock);
            }
        }
        None
    }
}

/// Starts a scan of `index` on `heap` under the statement's snapshot, with a slot for its rows.
///
/// # Safety
///
/// Within `pg_guard_ffi_boundary` (see `raw`); both relations open and locked. The active
/// snapshot (or, outside a query, the transaction snapshot) outlives the scan, which ends
/// within the call.
unsafe fn begin_scan_raw(heap: pg_sys::Relation, index: pg_sys::Relation) -> OpenScan {
    // SAFETY: as documented.
    unsafe {
        let snapshot = if raw::ActiveSnapshotSet() {
            raw::GetActiveSnapshot()
        } else {
            raw::GetTransactionSnapshot()
        };
        OpenScan {
            heap,
            index,
            scan: raw::index_beginscan(heap, index, snapshot, 1, 0),
            slot: raw::table_slot_create(heap, std::ptr::null_mut()),
        }
    }
}

/// Advances `scan` to the next row whose `bytea` column `key_column` (1-based) equals `key`,
/// with all its attributes deformed into `slot`; false when there is none.
///
/// SECURITY: a hash index returns every row whose 32-bit hash code matches: the comparison of
/// the whole key here is what makes a probe exact (see [`KeyLookup`]).
///
/// # Safety
///
/// Within `pg_guard_ffi_boundary` (see `raw`), on an open scan that has been given its key.
unsafe fn next_with_key_raw(
    scan: pg_sys::IndexScanDesc,
    slot: *mut pg_sys::TupleTableSlot,
    key_column: usize,
    key: &[u8],
) -> bool {
    // SAFETY: as documented; after `slot_getsomeattrs_int` every attribute's value and null
    // flag is set; the key column is a `bytea` (checked against the catalog by a test) and
    // within the descriptor (`KeyLookup::new`'s callers use the column constants).
    unsafe {
        let direction = pg_sys::ScanDirection::ForwardScanDirection;
        while raw::index_getnext_slot(scan, direction, slot) {
            let natts = (*(*slot).tts_tupleDescriptor).natts;
            if i32::from((*slot).tts_nvalid) < natts {
                raw::slot_getsomeattrs_int(slot, natts);
            }
            if *(*slot).tts_isnull.add(key_column - 1) {
                continue;
            }
            let mut value =
                (*(*slot).tts_values.add(key_column - 1)).cast_mut_ptr::<pg_sys::varlena>();
            if crate::fmgr::is_toasted(value) {
                // Not `fmgr::varlena_bytes`: its guarded call must not run inside a boundary.
                value = raw::pg_detoast_datum_packed(value);
            }
            if pgrx::varlena::varlena_to_byte_slice(value) == key {
                return true;
            }
        }
        false
    }
}

impl Drop for KeyLookup {
    fn drop(&mut self) {
        let Some(open) = self.scan.take() else { return };
        if std::thread::panicking() {
            // An ERROR is unwinding: the aborting transaction releases the scan, the slot's
            // buffer pin and the locks. Calling into Postgres now could free them twice.
            return;
        }
        // SAFETY: everything was opened in `open_scan` and is closed exactly once, here, in one
        // boundary around plain calls (see `raw`). The locks are kept until the transaction
        // ends, as the executor does for the relations a query reads; commit releases them all
        // at once, which is cheaper than one by one.
        unsafe {
            pg_sys::ffi::pg_guard_ffi_boundary(|| {
                raw::ExecDropSingleTupleTableSlot(open.slot);
                raw::index_endscan(open.scan);
                raw::index_close(open.index, pg_sys::NoLock as pg_sys::LOCKMODE);
                raw::relation_close(open.heap, pg_sys::NoLock as pg_sys::LOCKMODE);
            });
        }
    }
}

/// Reads every row of `table` committed when the call starts (and this transaction's own rows
/// of earlier commands), whatever the transaction's snapshot, and lets `each` look at them.
/// `each` must copy what it keeps: a row's values point into a buffer released when the scan
/// moves on.
///
/// This is for caches derived from small tables (see [`invalidations`]): a cache filled from a
/// transaction snapshot taken before a change could hold the old rows after the change's
/// invalidation was consumed, and keep them until the next change. The newest snapshot is taken
/// after the relation is locked, and locking processes every pending invalidation, so the rows
/// read are at least as new as every invalidation counted so far.
///
/// The lock is released when the scan ends, as catalog scans do, rather than held to the end
/// of the transaction like the probes above: what was read is a cache that outlives the
/// transaction, and a long transaction that once verified a token must not hold off a
/// `TRUNCATE` or an `ALTER TABLE` of the table.
///
/// Not in parallel mode: PostgreSQL takes no new snapshot there (functions that use this are
/// `PARALLEL UNSAFE`).
pub(crate) fn scan_latest(table: Rel, mut each: impl FnMut(&Row<'_>)) {
    let heap = open(table, false);
    // SAFETY: the relation is open and locked; the snapshot is registered for the scan's
    // lifetime and unregistered after it, as PostgreSQL's own catalog scans do; the slot is made
    // for this relation and dropped after the scan. On an ERROR, the aborting transaction
    // releases the scan, the slot's buffer pin, the snapshot and the lock.
    unsafe {
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot());
        let scan = pg_sys::table_beginscan(heap, snapshot, 0, std::ptr::null_mut());
        let slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
        let direction = pg_sys::ScanDirection::ForwardScanDirection;
        while pg_sys::table_scan_getnextslot(scan, direction, slot) {
            pgrx::check_for_interrupts!();
            pg_sys::slot_getallattrs(slot);
            each(&Row {
                slot,
                _lookup: PhantomData,
            });
        }
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::table_endscan(scan);
        pg_sys::UnregisterSnapshot(snapshot);
        pg_sys::relation_close(heap, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
    }
}

/// A row found by [`KeyLookup::find`] or [`scan_latest`], with all its attributes deformed.
pub(crate) struct Row<'a> {
    slot: *mut pg_sys::TupleTableSlot,
    _lookup: PhantomData<&'a ()>,
}

impl Row<'_> {
    /// The raw value of attribute `attno` (1-based), `None` for NULL. A by-reference value
    /// points into the row's buffer: copy it (or form a tuple from it) before the row goes.
    pub(crate) fn datum(&self, attno: usize) -> Option<Datum> {
        // SAFETY: `slot_getallattrs` filled `tts_values`/`tts_isnull` for every attribute;
        // the attribute numbers used by callers are checked against the catalog by a test.
        unsafe {
            let slot = &*self.slot;
            let natts = usize::try_from((*slot.tts_tupleDescriptor).natts).unwrap_or(0);
            assert!(
                attno >= 1 && attno <= natts,
                "attribute {attno} out of range"
            );
            if *slot.tts_isnull.add(attno - 1) {
                None
            } else {
                Some(*slot.tts_values.add(attno - 1))
            }
        }
    }

    /// Whether attribute `attno` is NULL.
    pub(crate) fn is_null(&self, attno: usize) -> bool {
        self.datum(attno).is_none()
    }

    /// A `boolean` attribute.
    pub(crate) fn boolean(&self, attno: usize) -> Option<bool> {
        self.datum(attno).map(|d| d.value() != 0)
    }

    /// A `timestamptz` attribute, in microseconds since 2000-01-01.
    pub(crate) fn timestamptz(&self, attno: usize) -> Option<pg_sys::TimestampTz> {
        self.datum(attno).map(|d| d.value() as pg_sys::TimestampTz)
    }

    /// A `text[]` attribute's elements, borrowed from the row (NULL elements are skipped), or
    /// `None` for NULL. Read in storage order, in place or from a copy in the current memory
    /// context, which lives at least as long as the row.
    pub(crate) fn text_array(&self, attno: usize) -> Option<Vec<&[u8]>> {
        let datum = self.datum(attno)?;
        // SAFETY: the attribute is a `text[]` (callers use the column constants checked against
        // the catalog) that lives as long as the row.
        Some(
            unsafe { crate::fmgr::text_array_datum(datum) }
                .flatten()
                .collect(),
        )
    }

    /// A `text` attribute, copied out of the row.
    pub(crate) fn text(&self, attno: usize) -> Option<String> {
        // SAFETY: the attribute is a `text` (callers use the column constants checked against
        // the catalog); `from_datum` detoasts and copies it.
        self.datum(attno)
            .and_then(|datum| unsafe { <String as pgrx::FromDatum>::from_datum(datum, false) })
    }
}
