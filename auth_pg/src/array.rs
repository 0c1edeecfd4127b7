//! Reading the elements of a stored `text[]` where it lies.
//!
//! A check's answer carries the credential's scopes, a `text[]` of a few short elements. Going
//! through `deconstruct_array` costs a detoasted copy of the array (a stored array this small
//! has a one-byte header, which its readers must not cast to `ArrayType`), two palloc'd arrays
//! and crossings into PostgreSQL. [`TextElements`] reads the same layout in place instead:
//! about 380 fewer instructions a token check (`scripts/callgrind.sh`).
//!
//! The layout is PostgreSQL's (`utils/array.h`): after the varlena header, `ndim`,
//! `dataoffset` (0 when there is no null bitmap) and the element type, then `ndim` dimensions
//! and lower bounds, the null bitmap when there is one, then the elements from a `MAXALIGN`ed
//! offset, each a varlena (either header) aligned to 4 bytes. Offsets and alignment are those of
//! the array with a four-byte header at an aligned address, the form every writer builds and
//! every reader detoasts to; a one-byte header is a copy of that form shifted by three bytes.
//!
//! Anything unexpected (a compressed or out-of-line element, a bound that does not hold, too
//! many dimensions) makes [`TextElements::parse`] decline, and the caller falls back to
//! PostgreSQL's own reader, which raises its own ERROR for a value that is really corrupt.

/// The size of the four-byte varlena header that offsets in an array count from.
const HEADER: usize = 4;
/// The fixed part of `ArrayType` after the header: `ndim`, `dataoffset`, `elemtype`.
const FIXED: usize = 12;
/// PostgreSQL's `MAXDIM`.
const MAX_DIMENSIONS: usize = 6;
/// PostgreSQL's `MAXIMUM_ALIGNOF` on the platforms pgrx supports.
const MAX_ALIGN: usize = 8;
/// `typalign` of `text` ('i').
const ELEMENT_ALIGN: usize = 4;

/// The elements of a one-type array of a varlena type, in storage order, `None` for a NULL.
#[derive(Clone, Copy)]
pub(crate) struct TextElements<'a> {
    /// The array after its varlena header: offset `k` of the array is `body[k - HEADER]`.
    body: &'a [u8],
    /// The null bitmap, when the array has one.
    nulls: Option<&'a [u8]>,
    /// The offset of the next element.
    offset: usize,
    /// The index of the next element.
    index: usize,
    /// The number of elements.
    count: usize,
}

impl<'a> TextElements<'a> {
    /// Reads the array whose bytes after the varlena header are `body`, checking every bound
    /// first; `None` when the layout is not one this reader handles.
    pub(crate) fn parse(body: &'a [u8]) -> Option<Self> {
        let word = |at: usize| -> Option<i32> {
            let bytes = body.get(at - HEADER..at - HEADER + 4)?;
            Some(i32::from_ne_bytes(bytes.try_into().ok()?))
        };
        let dimensions = usize::try_from(word(HEADER)?).ok()?;
        if dimensions > MAX_DIMENSIONS {
            return None;
        }
        let data_offset = word(HEADER + 4)?;
        let bounds_end = HEADER + FIXED + 2 * 4 * dimensions;
        let mut count: usize = usize::from(dimensions > 0);
        for d in 0..dimensions {
            let extent = usize::try_from(word(HEADER + FIXED + 4 * d)?).ok()?;
            count = count.checked_mul(extent)?;
        }
        let (nulls, data) = if data_offset == 0 {
            (None, bounds_end.next_multiple_of(MAX_ALIGN))
        } else {
            let data = usize::try_from(data_offset).ok()?;
            let bitmap = body.get(bounds_end - HEADER..data.checked_sub(HEADER)?)?;
            (Some(bitmap.get(..count.div_ceil(8))?), data)
        };
        let elements = Self {
            body,
            nulls,
            offset: data,
            index: 0,
            count,
        };
        // Walk once with every check, so that iterating cannot fail.
        let mut walk = elements;
        while walk.index < walk.count {
            walk.step()?;
        }
        Some(elements)
    }

    /// The next element, or `None` (as the outer option) when a bound does not hold.
    fn step(&mut self) -> Option<Option<&'a [u8]>> {
        let index = self.index;
        self.index += 1;
        if let Some(bitmap) = self.nulls
            && bitmap[index / 8] & (1 << (index % 8)) == 0
        {
            return Some(None);
        }
        let at = self.offset.checked_sub(HEADER)?;
        let first = *self.body.get(at)?;
        let (header, size) = if first & 0x01 == 0x01 {
            // A one-byte header; 0x01 alone marks an out-of-line pointer.
            if first == 0x01 {
                return None;
            }
            (1, usize::from(first >> 1))
        } else {
            let word = u32::from_le_bytes(self.body.get(at..at + 4)?.try_into().ok()?);
            // A compressed value has 0b10 in its two low bits.
            if word & 0x03 != 0 {
                return None;
            }
            (4, usize::try_from(word >> 2).ok()?)
        };
        let value = self.body.get(at + header..at.checked_add(size)?)?;
        self.offset = (self.offset + size).next_multiple_of(ELEMENT_ALIGN);
        Some(Some(value))
    }
}

impl<'a> Iterator for TextElements<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.count {
            return None;
        }
        // `parse` walked every element with these checks.
        self.step()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.count - self.index;
        (left, Some(left))
    }
}

impl ExactSizeIterator for TextElements<'_> {}

const _: () = assert!(
    cfg!(target_endian = "little"),
    "varlena headers are read as a little-endian machine writes them"
);
