//! Version-1 C functions for the hot paths, declared in hand-written SQL.
//!
//! The validations are called once per request, so every microsecond of overhead shows in an
//! application's throughput. These helpers let them read their arguments and build their
//! composite results the way PostgreSQL's own functions do: the result descriptor comes from
//! the type cache, the tuple is formed once, and a batch writes into a materialized tuplestore.
//! `#[pg_guard]` on each function still turns a Rust panic into an ERROR.

use pgrx::pg_sys::{self, Datum};

use crate::array::TextElements;

/// The record every version-1 function's `pg_finfo_*` symbol returns.
pub(crate) static FINFO_V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };

/// Declares `pg_finfo_<name>` for a version-1 C function named `<name>`.
macro_rules! function_info_v1 {
    ($finfo:ident) => {
        #[unsafe(no_mangle)]
        #[doc(hidden)]
        pub extern "C-unwind" fn $finfo() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
            &$crate::fmgr::FINFO_V1
        }
    };
}
pub(crate) use function_info_v1;

/// Argument `n` as the bytes of a `text` value, or `None` for NULL.
///
/// # Safety
///
/// `fcinfo` must be a live call whose argument `n` is of type `text`. The bytes live in the
/// call's memory context (or the argument itself), so they must not outlive the call.
pub(crate) unsafe fn text_arg<'call>(
    fcinfo: pg_sys::FunctionCallInfo,
    n: usize,
) -> Option<&'call [u8]> {
    // SAFETY: as documented; no text is longer than usize::MAX bytes.
    unsafe { short_text_arg(fcinfo, n, usize::MAX) }
}

/// Argument `n` as the bytes of a `text` value, or `None` for NULL or for a value longer than
/// `limit` bytes. A `text` argument may be up to 1 GB, stored out of line or compressed (a
/// column's value, say): one that long is refused by the size in its header, before anything
/// is fetched or decompressed. For arguments whose every valid value is short (credentials,
/// JWTs), where NULL and too long get the same answer.
///
/// # Safety
///
/// As [`text_arg`].
pub(crate) unsafe fn short_text_arg<'call>(
    fcinfo: pg_sys::FunctionCallInfo,
    n: usize,
    limit: usize,
) -> Option<&'call [u8]> {
    // SAFETY: the caller guarantees `fcinfo` has at least n + 1 arguments, of type text.
    unsafe {
        let arg = &*(*fcinfo).args.as_ptr().add(n);
        if arg.isnull {
            return None;
        }
        let value = arg.value.cast_mut_ptr::<pg_sys::varlena>();
        if is_toasted(value)
            && pg_sys::toast_raw_datum_size(arg.value) > limit.saturating_add(pg_sys::VARHDRSZ)
        {
            return None;
        }
        Some(varlena_bytes(value)).filter(|bytes| bytes.len() <= limit)
    }
}

/// The bytes of a `text` or `bytea` value. Only a compressed or out-of-line value goes through
/// PostgreSQL to be detoasted (into the current memory context); a plain one, the usual case
/// for the short values of a check, is read where it lies.
///
/// # Safety
///
/// `value` must point to a valid varlena that outlives the returned slice.
pub(crate) unsafe fn varlena_bytes<'a>(value: *mut pg_sys::varlena) -> &'a [u8] {
    // SAFETY: as documented; a detoasted copy lives in the current memory context.
    unsafe {
        let value = if is_toasted(value) {
            pg_sys::pg_detoast_datum_packed(value)
        } else {
            value
        };
        pgrx::varlena::varlena_to_byte_slice(value)
    }
}

/// Whether a varlena is compressed or stored out of line, so that reading its bytes needs
/// `pg_detoast_datum_packed`; a plain value, with either header, can be read where it lies.
///
/// # Safety
///
/// `value` must point to a valid varlena.
pub(crate) unsafe fn is_toasted(value: *const pg_sys::varlena) -> bool {
    // SAFETY: as documented; both tests read the header only.
    unsafe { pgrx::varlena::varatt_is_1b_e(value) || pgrx::varlena::varatt_is_4b_c(value) }
}

/// The one-byte varlena header of a value of `len` bytes, at most [`SHORT_VARLENA_MAX`], as
/// PostgreSQL's `SET_VARSIZE_SHORT` writes it on a little-endian machine.
pub(crate) const fn short_varlena_header(len: usize) -> u8 {
    const {
        assert!(
            cfg!(target_endian = "little"),
            "one-byte varlena headers are written for little-endian machines"
        )
    };
    assert!(
        len <= SHORT_VARLENA_MAX,
        "a short varlena holds at most 126 bytes"
    );
    (((len + 1) as u8) << 1) | 1
}

/// The longest value a one-byte varlena header can describe.
pub(crate) const SHORT_VARLENA_MAX: usize = 126;

/// `text` as a constant with a one-byte header, `N` being the text's length plus one: a datum
/// may point to it (PostgreSQL reads such values as any other and copies them when it stores
/// them), so a fixed answer needs no allocation.
pub(crate) const fn static_text<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    assert!(bytes.len() + 1 == N, "N is the text's length plus one");
    let mut out = [0u8; N];
    out[0] = short_varlena_header(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        out[i + 1] = bytes[i];
        i += 1;
    }
    out
}

/// Argument `n` as a raw datum, or `None` for NULL.
///
/// # Safety
///
/// `fcinfo` must be a live call with at least `n + 1` arguments.
pub(crate) unsafe fn datum_arg(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<Datum> {
    // SAFETY: as documented.
    unsafe {
        let arg = &*(*fcinfo).args.as_ptr().add(n);
        (!arg.isnull).then_some(arg.value)
    }
}

/// The descriptor of the function's declared composite result, pinned in the type cache for as
/// long as this value lives.
pub(crate) struct CompositeResult {
    tupdesc: pg_sys::TupleDesc,
}

impl CompositeResult {
    /// The result descriptor of a function declared `RETURNS <composite type>`.
    ///
    /// # Safety
    ///
    /// `fcinfo` must be a live call of a function whose result type is a named composite type.
    pub(crate) unsafe fn of(fcinfo: pg_sys::FunctionCallInfo) -> Self {
        // SAFETY: `flinfo` is set for every call made through fmgr; the declared result type of
        // the functions using this is a composite type, whose descriptor the type cache holds.
        unsafe {
            let typoid = pg_sys::get_fn_expr_rettype((*fcinfo).flinfo);
            let typoid = if typoid == pg_sys::Oid::INVALID {
                // Called without an expression (DirectFunctionCall): ask the catalog.
                let mut oid = pg_sys::Oid::INVALID;
                let mut tupdesc: pg_sys::TupleDesc = std::ptr::null_mut();
                pg_sys::get_call_result_type(fcinfo, &mut oid, &mut tupdesc);
                (*tupdesc).tdtypeid
            } else {
                typoid
            };
            Self {
                tupdesc: pg_sys::lookup_rowtype_tupdesc(typoid, -1),
            }
        }
    }

    /// Forms a composite datum from `values` and `nulls`, which must match the descriptor.
    /// By-reference values are copied, so they may point into a shared buffer.
    pub(crate) fn form(&self, values: &[Datum], nulls: &[bool]) -> Datum {
        // SAFETY: the descriptor is pinned; `heap_form_tuple` reads exactly `natts` entries,
        // the length of both slices (asserted); HeapTupleHeaderGetDatum flattens any external
        // TOAST pointer.
        unsafe {
            let natts = usize::try_from((*self.tupdesc).natts).ok();
            assert!(
                natts == Some(values.len()) && natts == Some(nulls.len()),
                "result arity"
            );
            let tuple = pg_sys::heap_form_tuple(
                self.tupdesc,
                values.as_ptr().cast_mut(),
                nulls.as_ptr().cast_mut(),
            );
            pg_sys::HeapTupleHeaderGetDatum((*tuple).t_data)
        }
    }
}

impl Drop for CompositeResult {
    fn drop(&mut self) {
        // Released only outside an ERROR; an aborting transaction releases type cache pins.
        if !std::thread::panicking() {
            // SAFETY: pinned by lookup_rowtype_tupdesc in `of`, released once.
            unsafe { pg_sys::DecrTupleDescRefCount(self.tupdesc) };
        }
    }
}

/// A set-returning call in materialize mode: rows go into a tuplestore the executor reads after
/// the call returns.
pub(crate) struct MaterializedSet {
    store: *mut pg_sys::Tuplestorestate,
    tupdesc: pg_sys::TupleDesc,
}

impl MaterializedSet {
    /// Switches the call to materialize mode.
    ///
    /// # Safety
    ///
    /// `fcinfo` must be a live call of a set-returning function with a composite result, made
    /// from a context that accepts a materialized set (any FROM clause does).
    pub(crate) unsafe fn start(fcinfo: pg_sys::FunctionCallInfo) -> Self {
        // SAFETY: as documented; InitMaterializedSRF raises an ERROR itself when the caller
        // cannot accept a set. The executor owns the store and the descriptor.
        unsafe {
            pg_sys::InitMaterializedSRF(fcinfo, 0);
            let rsinfo = (*fcinfo).resultinfo.cast::<pg_sys::ReturnSetInfo>();
            Self {
                store: (*rsinfo).setResult,
                tupdesc: (*rsinfo).setDesc,
            }
        }
    }

    /// Appends one row; by-reference values are copied.
    pub(crate) fn push(&mut self, values: &[Datum], nulls: &[bool]) {
        // SAFETY: the store and descriptor were set up by InitMaterializedSRF; arity asserted.
        unsafe {
            let natts = usize::try_from((*self.tupdesc).natts).ok();
            assert!(
                natts == Some(values.len()) && natts == Some(nulls.len()),
                "result arity"
            );
            pg_sys::tuplestore_putvalues(
                self.store,
                self.tupdesc,
                values.as_ptr().cast_mut(),
                nulls.as_ptr().cast_mut(),
            );
        }
    }
}

/// Argument `n`, a `text[]`, as the bytes of each element (`None` for a NULL element), or
/// `None` for a NULL array. Multi-dimensional arrays are read in storage order. An array of
/// more than `limit` elements is `Err` with its number of elements, read from the array's
/// header before anything is unpacked: a caller's huge array costs no memory beyond its own.
///
/// # Safety
///
/// `fcinfo` must be a live call whose argument `n` is of type `text[]`; the slices must not
/// outlive the call.
pub(crate) unsafe fn text_array_arg<'call>(
    fcinfo: pg_sys::FunctionCallInfo,
    n: usize,
    limit: usize,
) -> Result<Option<Vec<Option<&'call [u8]>>>, usize> {
    // SAFETY: as documented; the dimensions follow the array's fixed header (ARR_DIMS), and
    // ArrayGetNItems raises 54000 when their product overflows.
    unsafe {
        let Some(datum) = datum_arg(fcinfo, n) else {
            return Ok(None);
        };
        let array = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()).cast::<pg_sys::ArrayType>();
        let dims = array
            .cast::<u8>()
            .add(size_of::<pg_sys::ArrayType>())
            .cast::<i32>();
        let given = usize::try_from(pg_sys::ArrayGetNItems((*array).ndim, dims)).unwrap_or(0);
        if given > limit {
            return Err(given);
        }
        Ok(Some(text_array_elements(array)))
    }
}

/// The elements of a `text[]` datum as the bytes of each (`None` for a NULL element), in
/// storage order: read where the value lies when it is plain (the usual case for a row's short
/// array; see [`crate::array`]), else through a detoasted copy and `deconstruct_array`.
///
/// # Safety
///
/// `value` must be a non-NULL `text[]` datum that outlives the returned slices; copies are
/// palloc'd in the current memory context.
pub(crate) unsafe fn text_array_datum<'a>(value: Datum) -> TextArray<'a> {
    // SAFETY: as documented.
    unsafe {
        match TextElements::parse(varlena_bytes(value.cast_mut_ptr())) {
            Some(elements) => TextArray::InPlace(elements),
            None => TextArray::Copied(
                text_array_elements(
                    pg_sys::pg_detoast_datum(value.cast_mut_ptr()).cast::<pg_sys::ArrayType>(),
                )
                .into_iter(),
            ),
        }
    }
}

/// The elements of a `text[]`, from [`text_array_datum`].
pub(crate) enum TextArray<'a> {
    InPlace(TextElements<'a>),
    Copied(std::vec::IntoIter<Option<&'a [u8]>>),
}

impl<'a> Iterator for TextArray<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::InPlace(elements) => elements.next(),
            Self::Copied(elements) => elements.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Self::InPlace(elements) => elements.size_hint(),
            Self::Copied(elements) => elements.size_hint(),
        }
    }
}

impl ExactSizeIterator for TextArray<'_> {}

/// The elements of a `text[]` as the bytes of each (`None` for a NULL element), in storage
/// order.
///
/// # Safety
///
/// `array` must be a detoasted `text[]` that outlives the returned slices; the outputs of
/// `deconstruct_array` are palloc'd in the current memory context.
pub(crate) unsafe fn text_array_elements<'a>(
    array: *mut pg_sys::ArrayType,
) -> Vec<Option<&'a [u8]>> {
    // SAFETY: as documented.
    unsafe {
        let mut values: *mut Datum = std::ptr::null_mut();
        let mut nulls: *mut bool = std::ptr::null_mut();
        let mut count: i32 = 0;
        pg_sys::deconstruct_array(
            array,
            pg_sys::TEXTOID,
            -1,
            false,
            pg_sys::TYPALIGN_INT as std::ffi::c_char,
            &mut values,
            &mut nulls,
            &mut count,
        );
        let count = usize::try_from(count).unwrap_or(0);
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            if *nulls.add(i) {
                out.push(None);
            } else {
                out.push(Some(varlena_bytes((*values.add(i)).cast_mut_ptr())));
            }
        }
        out
    }
}
