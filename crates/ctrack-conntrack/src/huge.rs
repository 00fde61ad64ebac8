//! Fixed-size arrays for the table's large memory (the index and the slabs' chunks), asked
//! of the kernel in huge pages, and the slab: values in such chunks, growing a chunk at a
//! time.
//!
//! A lookup in a big table touches an index slot and an entry at random. With 4 KiB pages
//! each is also a TLB miss and a page walk (on a virtual machine, a walk through two sets
//! of page tables), which costs as much as the cache miss itself. An array of 2 MiB or more
//! is therefore aligned to 2 MiB and advised `MADV_HUGEPAGE`, so that with transparent huge
//! pages in `madvise` mode (the usual default) a few hundred TLB entries cover a table of
//! millions. A smaller array is an ordinary allocation: a huge page for a ten-entry table
//! would hold 2 MiB for it.
//!
//! The memory comes from the global allocator, so allocation counts see it. The index is
//! zeroed; a slab's chunks are not, as nothing in them is read before it is written, so
//! their pages are touched only as entries fill them.

use std::alloc::Layout;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

/// The size of a huge page, and the size from which an array is aligned to one.
pub(crate) const HUGE_PAGE: usize = 2 << 20;

/// `len` values of `T` in memory that never moves: zeros ([`Array::zeroed`]), or room not
/// yet written (a [`FixedVec`]'s).
pub(crate) struct Array<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
}

// SAFETY: an `Array` owns its memory as a `Box<[T]>` would.
unsafe impl<T: Copy + Send> Send for Array<T> {}
// SAFETY: shared access only reads, as through `&[T]`.
unsafe impl<T: Copy + Sync> Sync for Array<T> {}

impl<T: Copy> Array<T> {
    fn layout(len: usize) -> Layout {
        let size = len
            .checked_mul(std::mem::size_of::<T>())
            .expect("array size overflows");
        // Cache-line aligned at the least, so the lines an entry spans follow from its size
        // and alignment alone.
        let align = if size >= HUGE_PAGE {
            HUGE_PAGE
        } else {
            std::mem::align_of::<T>().max(64)
        };
        Layout::from_size_align(size, align).expect("array layout")
    }
}

/// Room for `len` values of `T` as an `Array<T>` lays them out, all bits zero when
/// `zeroed` (else as the allocator gives it).
fn alloc_array<T: Copy>(len: usize, zeroed: bool) -> NonNull<T> {
    let layout = Array::<T>::layout(len);
    if layout.size() == 0 {
        return NonNull::dangling();
    }
    let huge = layout.align() == HUGE_PAGE;
    // SAFETY: the layout's size is not zero.
    let p = unsafe {
        if zeroed && !huge {
            std::alloc::alloc_zeroed(layout)
        } else {
            std::alloc::alloc(layout)
        }
    };
    let Some(p) = NonNull::new(p) else {
        std::alloc::handle_alloc_error(layout)
    };
    if huge {
        // Advised before the first write: a page touched first is a small page.
        advise_huge(p.as_ptr(), layout.size());
    }
    if huge && zeroed {
        // SAFETY: `p` is `layout.size()` bytes just allocated.
        unsafe { std::ptr::write_bytes(p.as_ptr(), 0, layout.size()) };
    }
    p.cast()
}

impl Array<u64> {
    /// `len` zeros.
    pub(crate) fn zeroed(len: usize) -> Self {
        Array {
            ptr: alloc_array(len, true),
            len,
        }
    }
}

/// A vector with a fixed room: values pushed up to `room`, each staying where it was put.
pub(crate) struct FixedVec<T: Copy> {
    room: Array<MaybeUninit<T>>,
    len: usize,
}

impl<T: Copy> FixedVec<T> {
    /// An empty vector with room for `room` values.
    pub(crate) fn with_room(room: usize) -> Self {
        FixedVec {
            room: Array {
                // Nothing is read before it is written: left as it comes, so a chunk's
                // pages are touched (and given) only as entries fill them.
                ptr: alloc_array(room, false),
                len: room,
            },
            len: 0,
        }
    }

    /// This vector's values in a new one with room for `room` (at least its length).
    pub(crate) fn moved_to(&self, room: usize) -> Self {
        let mut v = FixedVec::with_room(room);
        v.room[..self.len].copy_from_slice(&self.room[..self.len]);
        v.len = self.len;
        v
    }

    /// Values pushed.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Values it can hold.
    pub(crate) fn room(&self) -> usize {
        self.room.len
    }

    /// Appends a value. Panics when full.
    pub(crate) fn push(&mut self, value: T) {
        self.room[self.len].write(value);
        self.len += 1;
    }

    /// The values pushed.
    pub(crate) fn as_slice(&self) -> &[T] {
        // SAFETY: the first `len` values were written by `push` (or copied from written
        // ones), and `MaybeUninit<T>` has the layout of `T`.
        unsafe { std::slice::from_raw_parts(self.room.ptr.as_ptr().cast::<T>(), self.len) }
    }

    /// The values pushed, mutably.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as for `as_slice`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.room.ptr.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Copy> std::ops::Deref for Array<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` holds `len` values of `T`, owned by this array: zeroed `u64`s, or
        // `MaybeUninit`s, for which any bits are valid.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> std::ops::DerefMut for Array<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for `deref`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for Array<T> {
    fn drop(&mut self) {
        let layout = Self::layout(self.len);
        if layout.size() != 0 {
            // SAFETY: allocated by `alloc_array` with this very layout; `T: Copy` has no drop.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), layout) }
        }
    }
}

/// The room the first chunk starts with: it doubles up to a whole chunk, so a small table
/// holds a little memory, not a huge page.
const FIRST_ROOM: usize = 16;

/// Entries in chunks; an entry's index is its place in the slab. The slab grows a chunk at
/// a time, so at most one chunk is allocated and unused, where a doubling array leaves up
/// to half its room unused.
pub(crate) struct Slab<T: Copy> {
    chunks: Vec<FixedVec<T>>,
}

impl<T: Copy> Default for Slab<T> {
    fn default() -> Self {
        Slab { chunks: Vec::new() }
    }
}

impl<T: Copy> Slab<T> {
    /// Entries a chunk holds: at least a huge page's worth, so that a big table's chunks
    /// start with a huge page; a power of two, so an index splits into chunk and place with
    /// shifts. A chunk of entries whose size is not a power of two is more than one huge
    /// page (48-byte rare values: 3 MiB), and its tail is in small pages.
    const CHUNK: usize = HUGE_PAGE
        .div_ceil(std::mem::size_of::<T>())
        .next_power_of_two();

    /// Values pushed: every chunk but the last is full.
    pub(crate) fn len(&self) -> usize {
        self.chunks
            .last()
            .map_or(0, |c| (self.chunks.len() - 1) * Self::CHUNK + c.len())
    }

    /// The value at index `i`, if pushed.
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.chunks
            .get(i / Self::CHUNK)?
            .as_slice()
            .get(i % Self::CHUNK)
    }

    /// The value at index `i`, mutably.
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks
            .get_mut(i / Self::CHUNK)?
            .as_mut_slice()
            .get_mut(i % Self::CHUNK)
    }

    /// Appends a value at index [`Slab::len`].
    pub(crate) fn push(&mut self, value: T) {
        let first = self.chunks.is_empty();
        match self.chunks.last_mut() {
            Some(c) if c.len() < c.room() => {}
            // Only the first chunk is ever short of a whole one.
            Some(c) if c.room() < Self::CHUNK => *c = c.moved_to(c.room() * 2),
            _ => self.chunks.push(FixedVec::with_room(if first {
                FIRST_ROOM
            } else {
                Self::CHUNK
            })),
        }
        self.chunks
            .last_mut()
            .expect("a chunk with room")
            .push(value);
    }

    /// The values in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flat_map(|c| c.as_slice())
    }
}

impl<T: Copy> std::ops::Index<usize> for Slab<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.chunks[i / Self::CHUNK].as_slice()[i % Self::CHUNK]
    }
}

impl<T: Copy> std::ops::IndexMut<usize> for Slab<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / Self::CHUNK].as_mut_slice()[i % Self::CHUNK]
    }
}

/// Asks that the memory at `p` be backed by huge pages. Advice only: if the kernel cannot
/// or will not, the memory works the same.
fn advise_huge(p: *mut u8, size: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: `p..p + size` is memory this process owns; the advice changes no content.
    unsafe {
        libc::madvise(p.cast(), size, libc::MADV_HUGEPAGE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (p, size);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_huge_arrays_hold_what_is_written() {
        for len in [0, 1, 64, HUGE_PAGE / 8, HUGE_PAGE / 8 * 3] {
            let mut a = Array::zeroed(len);
            assert_eq!(a.len(), len);
            assert!(a.iter().all(|&x| x == 0));
            for (i, x) in a.iter_mut().enumerate() {
                *x = i as u64;
            }
            assert!(a.iter().enumerate().all(|(i, &x)| x == i as u64));
            if len > 0 {
                assert_eq!(a.as_ptr() as usize % 64, 0, "arrays are cache-line aligned");
            }
            if len * 8 >= HUGE_PAGE {
                assert_eq!(
                    a.as_ptr() as usize % HUGE_PAGE,
                    0,
                    "huge arrays are aligned"
                );
            }
        }
    }

    #[test]
    fn a_slab_keeps_each_value_at_its_index_across_chunks() {
        let mut slab = Slab::<u64>::default();
        let n = Slab::<u64>::CHUNK * 2 + 3;
        for i in 0..n as u64 {
            slab.push(i * 3);
        }
        assert_eq!(slab.len(), n);
        assert_eq!(
            slab.get(Slab::<u64>::CHUNK + 1),
            Some(&((Slab::<u64>::CHUNK as u64 + 1) * 3))
        );
        *slab.get_mut(5).expect("pushed") = 1;
        slab[6] += 1;
        assert_eq!((slab[5], slab[6]), (1, 19));
        assert_eq!(slab.get(n), None);
        assert_eq!(slab.iter().count(), n);
        assert_eq!(
            slab.chunks[0].room(),
            Slab::<u64>::CHUNK,
            "the first chunk grew whole"
        );
    }

    #[test]
    fn a_fixed_vector_keeps_its_values_when_moved_to_more_room() {
        let mut v = FixedVec::with_room(3);
        for x in [7u32, 8, 9] {
            v.push(x);
        }
        let mut w = v.moved_to(HUGE_PAGE);
        assert_eq!((w.len(), w.room()), (3, HUGE_PAGE));
        w.push(10);
        w.as_mut_slice()[0] = 1;
        assert_eq!(w.as_slice(), [1, 8, 9, 10]);
        assert_eq!(v.as_slice(), [7, 8, 9]);
    }

    #[test]
    #[should_panic]
    fn a_full_fixed_vector_refuses_more() {
        let mut v = FixedVec::with_room(1);
        v.push(1u8);
        v.push(2u8);
    }
}
