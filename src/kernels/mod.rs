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

/// A zero image whose pages are first written by all threads at once, backed by huge
/// pages where the system allows it: a new 37 M voxel image otherwise costs its single
/// writer thousands of page faults.
pub(crate) fn zeroed(dim: (usize, usize, usize)) -> ndarray::Array3<u8> {
    use rayon::prelude::*;
    let n = dim.0 * dim.1 * dim.2;
    let mut v = Vec::with_capacity(n);
    prefer_huge_pages(&mut v);
    v.par_extend(rayon::iter::repeat_n(0u8, n));
    ndarray::Array3::from_shape_vec(dim, v).expect("one value per voxel")
}

/// `f` of every voxel of `image`, as a new image written as [`zeroed`] writes its zeros
/// (by all threads, on huge pages where allowed), without zeroing it first.
pub(crate) fn mapped(
    image: ndarray::ArrayView3<u8>,
    f: impl Fn(u8) -> u8 + Sync + Send,
) -> ndarray::Array3<u8> {
    use rayon::prelude::*;
    let image = image.as_standard_layout();
    let voxels = image.as_slice().expect("standard layout");
    let mut v = Vec::with_capacity(voxels.len());
    prefer_huge_pages(&mut v);
    v.par_extend(voxels.par_iter().map(|&x| f(x)));
    ndarray::Array3::from_shape_vec(image.dim(), v).expect("one value per voxel")
}

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
