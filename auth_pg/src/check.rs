//! The shape every credential check shares: a format check that touches no table, one probe of
//! a hash index by the credential's hash, a judgement of the row found, and a composite answer
//! whose first field is the status.
//!
//! Each kind of credential (tokens, API keys) says which table and index it reads, how a row is
//! judged and which of its columns a valid answer carries; the single and batch SQL functions
//! are the same code for all of them.

use auth_core::CredentialKind;
use auth_core::input::MAX_BATCH;
use pgrx::pg_sys::{self, Datum};

use crate::error::AuthPgError;
use crate::fmgr::{self, CompositeResult, MaterializedSet};
use crate::hash_key;
use crate::packed::{self, Field};
use crate::storage::{KeyLookup, Rel, Row};

/// What a check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Valid,
    Expired,
    IdleExpired,
    AbsoluteExpired,
    Revoked,
    Unknown,
    Malformed,
}

impl Status {
    /// Every status.
    #[cfg_attr(not(any(test, feature = "pg_test")), allow(dead_code))]
    pub(crate) const ALL: [Self; 7] = [
        Self::Valid,
        Self::Expired,
        Self::IdleExpired,
        Self::AbsoluteExpired,
        Self::Revoked,
        Self::Unknown,
        Self::Malformed,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Expired => "expired",
            Self::IdleExpired => "idle_expired",
            Self::AbsoluteExpired => "absolute_expired",
            Self::Revoked => "revoked",
            Self::Unknown => "unknown",
            Self::Malformed => "malformed",
        }
    }

    /// The status as a `text` datum. It points to a constant: an answer refers to it and
    /// copies it only when the answer is formed, instead of allocating it for every check.
    pub(crate) fn datum(self) -> Datum {
        use fmgr::static_text;
        static VALID: [u8; 6] = static_text("valid");
        static EXPIRED: [u8; 8] = static_text("expired");
        static IDLE_EXPIRED: [u8; 13] = static_text("idle_expired");
        static ABSOLUTE_EXPIRED: [u8; 17] = static_text("absolute_expired");
        static REVOKED: [u8; 8] = static_text("revoked");
        static UNKNOWN: [u8; 8] = static_text("unknown");
        static MALFORMED: [u8; 10] = static_text("malformed");
        let text: &'static [u8] = match self {
            Self::Valid => &VALID,
            Self::Expired => &EXPIRED,
            Self::IdleExpired => &IDLE_EXPIRED,
            Self::AbsoluteExpired => &ABSOLUTE_EXPIRED,
            Self::Revoked => &REVOKED,
            Self::Unknown => &UNKNOWN,
            Self::Malformed => &MALFORMED,
        };
        Datum::from(text.as_ptr())
    }
}

/// The moment expiry is judged at: the statement's start, so that every check in one
/// statement agrees, as a STABLE function must.
pub(crate) fn statement_time() -> pg_sys::TimestampTz {
    // SAFETY: reads a backend-local timestamp.
    unsafe { pg_sys::GetCurrentStatementStartTimestamp() }
}

/// The usual judgement: revoked if a revocation time is set, expired if an expiry time is set
/// and not after `now`, valid otherwise.
pub(crate) fn judge_times(
    row: &Row<'_>,
    revoked_at: usize,
    expires_at: usize,
    now: pg_sys::TimestampTz,
) -> Status {
    if !row.is_null(revoked_at) {
        Status::Revoked
    } else if row
        .timestamptz(expires_at)
        .is_some_and(|expires| expires <= now)
    {
        Status::Expired
    } else {
        Status::Valid
    }
}

/// A kind of credential that is checked by hash. `N` is the number of fields of its answer
/// type, status first.
pub(crate) trait Checked<const N: usize> {
    /// The credential kind (its prefix).
    const KIND: CredentialKind;
    /// The table holding one row per credential.
    const TABLE: Rel;
    /// The hash index on the credential's hash in that table.
    const INDEX: Rel;
    /// The number of the table's column holding the credential's hash.
    const HASH_COLUMN: usize;

    /// What `row` means at `now`.
    fn judge(row: &Row<'_>, now: pg_sys::TimestampTz) -> Status;

    /// The answer's fields after `status`, for a valid row.
    fn fields(row: &Row<'_>) -> [Option<Datum>; N];

    /// How those fields are written in the packed answer: their types, in order.
    const PACKED: [Field; N];

    /// Called after a valid answer (for instance, to note the credential's use).
    fn on_valid(_hash: &[u8; 32], _now: pg_sys::TimestampTz) {}
}

/// Checks `candidate`'s format, probes the index by its hash and judges the row found, then
/// hands the status and the row (none for `malformed` and `unknown`) to `then`. The row's
/// values point into a shared buffer: `then` must copy what it keeps.
pub(crate) fn probe<C: Checked<N>, const N: usize, R>(
    lookup: &mut KeyLookup,
    candidate: Option<&[u8]>,
    now: pg_sys::TimestampTz,
    then: impl FnOnce(Status, Option<&Row<'_>>) -> R,
) -> R {
    let candidate = match candidate {
        Some(c) if auth_core::check_format(C::KIND, c).is_ok() => c,
        _ => return then(Status::Malformed, None),
    };
    let hash = hash_key::hash_credential(candidate);
    let mut then = Some(then);
    let found = lookup.find(&hash, |row| {
        let status = C::judge(row, now);
        let result = (then.take().expect("then is called once"))(status, Some(row));
        (result, status)
    });
    match found {
        Some((result, status)) => {
            if status == Status::Valid {
                C::on_valid(&hash, now);
            }
            result
        }
        None => (then.take().expect("then is called once"))(Status::Unknown, None),
    }
}

/// Most fields an answer has after its status (an API key's six).
const MAX_FIELDS: usize = 6;

/// An answer's values and nulls, status first, on the stack: a check forms one per call.
pub(crate) struct Values {
    values: [Datum; MAX_FIELDS + 1],
    nulls: [bool; MAX_FIELDS + 1],
    len: usize,
}

impl Values {
    pub(crate) fn values(&self) -> &[Datum] {
        &self.values[..self.len]
    }

    pub(crate) fn nulls(&self) -> &[bool] {
        &self.nulls[..self.len]
    }
}

/// The answer's values and nulls for `status`: the `N` fields of `row` when valid, NULLs
/// otherwise. By-reference values point into the row's buffer.
pub(crate) fn answer<C: Checked<N>, const N: usize>(
    status: Status,
    row: Option<&Row<'_>>,
) -> Values {
    const { assert!(N <= MAX_FIELDS, "raise MAX_FIELDS") };
    let mut answer = Values {
        values: [Datum::from(0); MAX_FIELDS + 1],
        nulls: [true; MAX_FIELDS + 1],
        len: N + 1,
    };
    answer.values[0] = status.datum();
    answer.nulls[0] = false;
    if let (Status::Valid, Some(row)) = (status, row) {
        for (i, field) in C::fields(row).into_iter().enumerate() {
            if let Some(value) = field {
                answer.values[i + 1] = value;
                answer.nulls[i + 1] = false;
            }
        }
    }
    answer
}

/// Judges one candidate and hands the answer's values and nulls (status first, then the `N`
/// fields) to `emit` while the row's values are still valid.
fn check_one<C: Checked<N>, const N: usize, R>(
    lookup: &mut KeyLookup,
    candidate: Option<&[u8]>,
    now: pg_sys::TimestampTz,
    emit: impl FnOnce(&[Datum], &[bool]) -> R,
) -> R {
    probe::<C, N, _>(lookup, candidate, now, |status, row| {
        let answer = answer::<C, N>(status, row);
        emit(answer.values(), answer.nulls())
    })
}

/// The form a single check answers in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// The composite row type the function is declared to return.
    Row,
    /// A `bytea` in the layout of [`packed`], for clients that read it.
    Packed,
}

/// Where a single check's answer is formed: the composite's descriptor, pinned for the call,
/// or the packed layout of the credential kind's fields after the status.
pub(crate) enum Answer {
    Row(CompositeResult),
    Packed(&'static [Field]),
}

impl Answer {
    /// The answer in `form` of the function `fcinfo` calls, which checks credentials `C`.
    ///
    /// # Safety
    ///
    /// For `Form::Row`, `fcinfo` must be a live call of a function whose result type is a
    /// named composite type.
    pub(crate) unsafe fn of<C: Checked<N>, const N: usize>(
        fcinfo: pg_sys::FunctionCallInfo,
        form: Form,
    ) -> Self {
        match form {
            // SAFETY: as documented.
            Form::Row => Self::Row(unsafe { CompositeResult::of(fcinfo) }),
            Form::Packed => Self::Packed(&C::PACKED),
        }
    }

    /// The answer's datum from `values` and `nulls` (status first). By-reference values are
    /// copied, so they may point into a shared buffer.
    pub(crate) fn form(&self, values: &[Datum], nulls: &[bool]) -> Datum {
        match self {
            Self::Row(result) => result.form(values, nulls),
            Self::Packed(fields) => packed::pack(fields, values, nulls),
        }
    }
}

/// The credential, the first argument: `None` for NULL and for a value longer than any
/// credential, both `malformed`, read without detoasting a long one.
///
/// # Safety
///
/// `fcinfo` must be a live call whose first argument is of type `text`.
pub(crate) unsafe fn candidate_arg<'call>(fcinfo: pg_sys::FunctionCallInfo) -> Option<&'call [u8]> {
    // SAFETY: as documented.
    unsafe { fmgr::short_text_arg(fcinfo, 0, auth_core::credential::CREDENTIAL_LEN) }
}

/// The body of a single check: `f(credential text) RETURNS <answer type>`, or `RETURNS bytea`
/// for the packed form.
///
/// # Safety
///
/// `fcinfo` must be a live call of a function declared with one `text` argument and, for
/// `Form::Row`, a composite result of `N + 1` fields.
pub(crate) unsafe fn check_single<C: Checked<N>, const N: usize>(
    fcinfo: pg_sys::FunctionCallInfo,
    form: Form,
) -> Datum {
    // SAFETY: as documented.
    let (candidate, answer) = unsafe { (candidate_arg(fcinfo), Answer::of::<C, N>(fcinfo, form)) };
    let mut lookup = KeyLookup::new(C::TABLE, C::INDEX, C::HASH_COLUMN);
    check_one::<C, N, _>(&mut lookup, candidate, statement_time(), |values, nulls| {
        answer.form(values, nulls)
    })
}

/// The body of a batch check: `f(credentials text[]) RETURNS SETOF <answer type>`, one row per
/// element in order; NULL elements are malformed; a NULL array gives no rows.
///
/// # Safety
///
/// `fcinfo` must be a live call of a set-returning function declared with one `text[]`
/// argument and a composite result of `N + 1` fields.
pub(crate) unsafe fn check_batch<C: Checked<N>, const N: usize>(
    fcinfo: pg_sys::FunctionCallInfo,
    function: &'static str,
    argument: &'static str,
) -> Datum {
    // SAFETY: as documented.
    let (candidates, mut set) = unsafe {
        (
            fmgr::text_array_arg(fcinfo, 0, MAX_BATCH),
            MaterializedSet::start(fcinfo),
        )
    };
    let candidates = match candidates {
        Ok(candidates) => candidates.unwrap_or_default(),
        Err(given) => AuthPgError::BatchTooLarge {
            argument,
            given,
            limit: MAX_BATCH,
        }
        .raise(function),
    };
    let now = statement_time();
    let mut lookup = KeyLookup::new(C::TABLE, C::INDEX, C::HASH_COLUMN);
    for candidate in candidates {
        pgrx::check_for_interrupts!();
        check_one::<C, N, _>(&mut lookup, candidate, now, |values, nulls| {
            set.push(values, nulls)
        });
    }
    Datum::from(0)
}
