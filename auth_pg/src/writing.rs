//! A per-backend mark that a module is writing one of its tables itself, having already done
//! what that table's triggers would do (checks, derived rows, announcements), so that the
//! triggers can skip it.

use std::cell::Cell;
use std::thread::LocalKey;

/// The mark: a count, so that nested writes keep it raised until the outermost ends.
pub(crate) type Mark = LocalKey<Cell<u32>>;

/// Raises a mark until dropped, including when an ERROR unwinds through the writing function.
pub(crate) struct Guard(&'static Mark);

impl Guard {
    pub(crate) fn new(mark: &'static Mark) -> Self {
        mark.set(mark.get() + 1);
        Self(mark)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}
