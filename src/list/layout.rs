//! Where the parts of a list start: the arithmetic of the layout that the
//! reader ([`ListView`](super::ListView)) and the writer share.

/// Where the parts of a list of `n` items with `data_len` bytes of slots
/// start. Only built once [`layout_size`] has accepted `n` and `data_len`,
/// so none of these sums can overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) n: usize,
    pub(super) data_len: usize,
}

impl Layout {
    /// Offset of `offsets[k]`.
    pub(super) fn offset_entry(k: usize) -> usize {
        8 + 8 * k
    }

    pub(super) fn data_start(&self) -> usize {
        8 * (self.n + 2)
    }

    pub(super) fn formats_start(&self) -> usize {
        self.data_start() + self.data_len
    }

    pub(super) fn codes_start(&self) -> usize {
        self.formats_start() + 8 * self.n
    }

    pub(super) fn size(&self) -> usize {
        self.codes_start() + self.n
    }
}

/// `8(N+2) + D + 9N`, or `None` if it overflows `usize` or exceeds
/// `i64::MAX` (the header stores offsets as `int64`).
pub(super) fn layout_size(n: usize, data_len: usize) -> Option<usize> {
    let header = n.checked_add(2)?.checked_mul(8)?;
    let tail = n.checked_mul(9)?;
    let total = header.checked_add(data_len)?.checked_add(tail)?;
    let fits_i64 = u64::try_from(total).ok()? <= i64::MAX as u64;
    fits_i64.then_some(total)
}
