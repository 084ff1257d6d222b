//! Building blocks shared by several effects: connected components, flood fill, ...
//!
//! Kernels take plain arrays and plain arguments; effects give them Slicer's meaning.

pub mod bbox;
pub mod components;
pub mod contour_interpolation;
pub mod distance;
pub mod fast_marching;
pub mod gaussian;
pub mod growcut;
pub mod joint_smoothing;
pub mod morphology;
pub mod recursive_gaussian;
pub mod watershed;

/// Asks Linux to back a large, not yet touched buffer with transparent huge pages (when
/// the system allows them on request): one page fault per 2 MiB instead of per 4 KiB when
/// it is first written, and fewer TLB misses for kernels that jump across slices (Grow
/// from seeds' Dijkstra, the distance transform's passes along j and k). Only a hint;
/// nothing changes where it is not honoured.
pub(crate) fn prefer_huge_pages<T>(v: &mut Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        extern "C" {
            fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
        }
        const MADV_HUGEPAGE: i32 = 14;
        const HUGE_PAGE: usize = 2 << 20;
        let start = v.as_mut_ptr() as usize;
        let end = start + v.capacity() * std::mem::size_of::<T>();
        let first = start.next_multiple_of(HUGE_PAGE);
        let last = end / HUGE_PAGE * HUGE_PAGE;
        if last > first {
            // SAFETY: the range lies inside the vector's own allocation; MADV_HUGEPAGE
            // changes how the kernel backs it, never its contents.
            unsafe {
                madvise(first as *mut std::ffi::c_void, last - first, MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}
