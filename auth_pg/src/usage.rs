//! Recording when API keys were last used, without making validation write.
//!
//! A validation that finds a valid key notes "used now" in a small shared-memory table, at most
//! once a minute per key. Nothing is written to the database by the validation itself: it stays
//! STABLE, WAL-free and standby-safe. `auth_pg.flush_api_key_usage()` (run by the maintenance
//! worker, by pg_cron, or by hand) moves the noted times into `api_key_lookup.last_used_at` and
//! the organizations' documents.
//!
//! Recording is best effort by design, and never a reason for a validation to wait or fail:
//! the table's lock is only ever tried, never waited for; a full table drops the note; a standby
//! or a read-only transaction records nothing. Without `shared_preload_libraries = 'auth_pg'`
//! there is no shared memory, and last use is not recorded.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::ffi::CStr;

use pgrx::{pg_guard, pg_sys};

/// Keys remembered at once. Each slot is 56 bytes: 8 192 slots take 448 kB.
const SLOTS: usize = 8192;
/// Slots looked at from a key's home slot before giving up.
const PROBES: usize = 16;
/// Uses of one key closer together than this are not recorded again.
pub(crate) const RECORD_INTERVAL_MICROS: i64 = 60 * 1_000_000;

const EMPTY: u8 = 0;
const USED: u8 = 1;

#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    state: u8,
    dirty: bool,
    database: u32,
    key_hash: [u8; 32],
    last_used: i64,
}

#[repr(C)]
struct Shared {
    lock: *mut pg_sys::LWLock,
    dropped: u64,
    slots: [Slot; SLOTS],
}

const TRANCHE: &CStr = c"auth_pg_key_usage";

/// The shared table, attached in every backend after postmaster start-up.
pub(crate) struct UsageTable {
    shared: UnsafeCell<*mut Shared>,
}

// SAFETY: the pointer is written once per process (at shared-memory start-up, before any query)
// and only read afterwards; the data it points to is guarded by its LWLock.
unsafe impl Sync for UsageTable {}

pub(crate) static USAGE: UsageTable = UsageTable {
    shared: UnsafeCell::new(std::ptr::null_mut()),
};

/// Notes a flush took in the current transaction, with the subtransaction that took them.
type Taken = Vec<([u8; 32], pg_sys::TimestampTz)>;

thread_local! {
    /// What flushes of the current transaction took: put back if the subtransaction that took
    /// them (or the transaction) aborts, forgotten when the transaction commits.
    static IN_FLIGHT: RefCell<Vec<(pg_sys::SubTransactionId, Taken)>> =
        const { RefCell::new(Vec::new()) };
    static CALLBACKS_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Puts back, at an abort or a PREPARE, what the transaction's flushes took; forgets it at a
/// commit.
#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        // A prepared transaction may still be rolled back, later and elsewhere: put the notes
        // back now too. If it commits, the next flush writes the same times again, which
        // changes nothing (last_used_at only moves forward).
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_PREPARE => {
            for (_, taken) in IN_FLIGHT.take() {
                USAGE.restore(&taken);
            }
        }
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT => {
            IN_FLIGHT.take();
        }
        _ => {}
    }
}

/// Puts back what an aborted subtransaction took; hands what a committed one took to its
/// parent.
#[pg_guard]
unsafe extern "C-unwind" fn at_subtransaction_end(
    event: pg_sys::SubXactEvent::Type,
    subtransaction: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    // Subtransaction ids grow as subtransactions start, and the one ending is the innermost
    // open one: entries with an id at least its own were taken in it or its committed children.
    match event {
        SUBXACT_EVENT_ABORT_SUB => {
            let aborted: Vec<_> = IN_FLIGHT.with_borrow_mut(|in_flight| {
                let (aborted, kept) = std::mem::take(in_flight)
                    .into_iter()
                    .partition(|(taken_in, _)| *taken_in >= subtransaction);
                *in_flight = kept;
                aborted
            });
            for (_, taken) in aborted {
                USAGE.restore(&taken);
            }
        }
        SUBXACT_EVENT_COMMIT_SUB => IN_FLIGHT.with_borrow_mut(|in_flight| {
            for (taken_in, _) in in_flight.iter_mut() {
                if *taken_in >= subtransaction {
                    *taken_in = parent;
                }
            }
        }),
        _ => {}
    }
}

static mut PREVIOUS_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;
static mut PREVIOUS_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

/// Asks for the table's shared memory and lock, in `shmem_request_hook`.
#[pg_guard]
unsafe extern "C-unwind" fn request_shared_memory() {
    // SAFETY: runs in the postmaster from shmem_request_hook, once; the previous hook was saved
    // by `init` before this one was installed.
    unsafe {
        if let Some(previous) = PREVIOUS_REQUEST_HOOK {
            previous();
        }
        pg_sys::RequestAddinShmemSpace(size_of::<Shared>());
        pg_sys::RequestNamedLWLockTranche(TRANCHE.as_ptr(), 1);
    }
}

/// Creates (in the postmaster) or attaches to the table, in `shmem_startup_hook`.
#[pg_guard]
unsafe extern "C-unwind" fn attach_shared_memory() {
    // SAFETY: runs from shmem_startup_hook; AddinShmemInitLock (MainLWLockArray[21]) serialises
    // initialisation; an all-zero Slot is a valid EMPTY slot.
    unsafe {
        if let Some(previous) = PREVIOUS_STARTUP_HOOK {
            previous();
        }
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let shared = pg_sys::ShmemInitStruct(TRANCHE.as_ptr(), size_of::<Shared>(), &mut found)
            .cast::<Shared>();
        if !found {
            std::ptr::write_bytes(shared, 0, 1);
            (*shared).lock = &raw mut (*pg_sys::GetNamedLWLockTranche(TRANCHE.as_ptr())).lock;
        }
        *USAGE.shared.get() = shared;
        pg_sys::LWLockRelease(init_lock);
    }
}

/// Installs the shared-memory hooks; called from `_PG_init` when the library is preloaded.
pub(crate) fn init() {
    // SAFETY: _PG_init runs once, single-threaded, before shared memory is set up; the hooks
    // chain to whatever was installed before.
    unsafe {
        PREVIOUS_REQUEST_HOOK = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(request_shared_memory);
        PREVIOUS_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(attach_shared_memory);
    }
}

fn home(key_hash: &[u8; 32]) -> usize {
    let mut first = [0u8; 8];
    first.copy_from_slice(&key_hash[..8]);
    (u64::from_le_bytes(first) % SLOTS as u64) as usize
}

impl UsageTable {
    fn attached(&self) -> Option<*mut Shared> {
        // SAFETY: written once at start-up (see `unsafe impl Sync`).
        let shared = unsafe { *self.shared.get() };
        (!shared.is_null()).then_some(shared)
    }

    /// Notes that the key with `key_hash` was used at `now`, unless its last noted use is less
    /// than a minute old. Never waits, never raises.
    ///
    /// A key keeps its slot after a flush, so that the minute is counted from its last noted
    /// use whenever flushes happen. A new key takes an empty slot near its home slot or, failing
    /// that, the flushed slot used longest ago; when every nearby slot waits for a flush, the
    /// note is dropped.
    pub(crate) fn record(&self, key_hash: &[u8; 32], now: pg_sys::TimestampTz) {
        let Some(shared) = self.attached() else {
            return;
        };
        // SAFETY: plain reads of backend-local state.
        let (read_only, database) = unsafe {
            (
                pg_sys::XactReadOnly || pg_sys::RecoveryInProgress(),
                pg_sys::MyDatabaseId.to_u32(),
            )
        };
        if read_only {
            return;
        }
        // SAFETY: the lock was set up at start-up; we only try it, and release it below.
        unsafe {
            let lock = (*shared).lock;
            if !pg_sys::LWLockConditionalAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE) {
                return;
            }
            let slots = &mut (*shared).slots;
            let start = home(key_hash);
            let mut candidate: Option<usize> = None;
            let mut noted = false;
            for probe in 0..PROBES {
                let index = (start + probe) % SLOTS;
                let slot = &mut slots[index];
                if slot.state == EMPTY {
                    candidate = Some(index);
                    break;
                }
                if slot.database == database && slot.key_hash == *key_hash {
                    if now - slot.last_used >= RECORD_INTERVAL_MICROS {
                        slot.last_used = now;
                        slot.dirty = true;
                    }
                    noted = true;
                    break;
                }
                let older = candidate.is_none_or(|c| slots[c].last_used > slots[index].last_used);
                if !slots[index].dirty && older {
                    candidate = Some(index);
                }
            }
            if !noted {
                match candidate {
                    Some(index) => {
                        slots[index] = Slot {
                            state: USED,
                            dirty: true,
                            database,
                            key_hash: *key_hash,
                            last_used: now,
                        };
                    }
                    None => (*shared).dropped += 1,
                }
            }
            pg_sys::LWLockRelease(lock);
        }
    }

    /// Takes every noted use in the current database that has not been flushed:
    /// `(key hash, last used)`. The slots stay, marked flushed. Notes left by databases that
    /// no longer exist are marked flushed too, so that their slots can be reused.
    fn take(&self) -> Taken {
        let Some(shared) = self.attached() else {
            return Vec::new();
        };
        // SAFETY: reads the backend's database id; the lock guards the slots and is released
        // before anything that could raise. The catalog lookups run between the two passes,
        // before anything is taken, so an error there (a cancel) loses no note.
        unsafe {
            let database = pg_sys::MyDatabaseId.to_u32();
            let lock = (*shared).lock;
            pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_SHARED);
            let mut others: Vec<u32> = Vec::new();
            for slot in (*shared).slots.iter() {
                if slot.state == USED
                    && slot.dirty
                    && slot.database != database
                    && !others.contains(&slot.database)
                {
                    others.push(slot.database);
                }
            }
            pg_sys::LWLockRelease(lock);
            others.retain(|&other| {
                !pg_sys::SearchSysCacheExists(
                    pg_sys::SysCacheIdentifier::DATABASEOID as i32,
                    pg_sys::Datum::from(other),
                    pg_sys::Datum::from(0),
                    pg_sys::Datum::from(0),
                    pg_sys::Datum::from(0),
                )
            });
            pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
            let mut taken = Vec::new();
            for slot in (*shared).slots.iter_mut() {
                if slot.state != USED || !slot.dirty {
                    continue;
                }
                if slot.database == database {
                    taken.push((slot.key_hash, slot.last_used));
                    slot.dirty = false;
                } else if others.contains(&slot.database) {
                    slot.dirty = false;
                }
            }
            pg_sys::LWLockRelease(lock);
            taken
        }
    }

    /// `take`, for a flush: what it takes is put back if the transaction (or subtransaction)
    /// it runs in aborts, whether its own write fails or the caller rolls back afterwards.
    pub(crate) fn take_until_commit(&self) -> Taken {
        if !CALLBACKS_REGISTERED.get() {
            // SAFETY: registers plain functions with no argument, for the backend's life; they
            // touch only thread-local state and the shared table, and never raise.
            unsafe {
                pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut());
                pg_sys::RegisterSubXactCallback(Some(at_subtransaction_end), std::ptr::null_mut());
            }
            CALLBACKS_REGISTERED.set(true);
        }
        let taken = self.take();
        if !taken.is_empty() {
            // SAFETY: reads the current subtransaction's id; always set inside a transaction.
            let subtransaction = unsafe { pg_sys::GetCurrentSubTransactionId() };
            IN_FLIGHT.with_borrow_mut(|in_flight| in_flight.push((subtransaction, taken.clone())));
        }
        taken
    }

    /// Puts back notes that `take` returned: their slots wait for the next flush again (unless
    /// another key has taken one meanwhile). Never raises.
    fn restore(&self, taken: &[([u8; 32], pg_sys::TimestampTz)]) {
        let Some(shared) = self.attached() else {
            return;
        };
        // SAFETY: as in `take`; nothing here can raise.
        unsafe {
            let database = pg_sys::MyDatabaseId.to_u32();
            let lock = (*shared).lock;
            pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
            for (key_hash, _) in taken {
                let start = home(key_hash);
                for probe in 0..PROBES {
                    let slot = &mut (*shared).slots[(start + probe) % SLOTS];
                    if slot.state == USED && slot.database == database && slot.key_hash == *key_hash
                    {
                        slot.dirty = true;
                        break;
                    }
                }
            }
            pg_sys::LWLockRelease(lock);
        }
    }
}
