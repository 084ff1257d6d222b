//! Voxel types, and a volume whose voxel type is known only at run time.

use super::{Geometry, Volume};

/// The scalar types a volume can hold on disk and in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScalarType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
}

impl ScalarType {
    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            ScalarType::U8 | ScalarType::I8 => 1,
            ScalarType::U16 | ScalarType::I16 => 2,
            ScalarType::U32 | ScalarType::I32 | ScalarType::F32 => 4,
            ScalarType::U64 | ScalarType::I64 | ScalarType::F64 => 8,
        }
    }

    /// Rust-style name (`u8`, `i16`, `f32`, ...), as `segkit info` prints it.
    pub fn name(self) -> &'static str {
        match self {
            ScalarType::U8 => "u8",
            ScalarType::I8 => "i8",
            ScalarType::U16 => "u16",
            ScalarType::I16 => "i16",
            ScalarType::U32 => "u32",
            ScalarType::I32 => "i32",
            ScalarType::U64 => "u64",
            ScalarType::I64 => "i64",
            ScalarType::F32 => "f32",
            ScalarType::F64 => "f64",
        }
    }

    /// True for `f32` and `f64`.
    pub fn is_float(self) -> bool {
        matches!(self, ScalarType::F32 | ScalarType::F64)
    }
}

impl std::fmt::Display for ScalarType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A voxel value type: plain old data that converts to and from `f64` and bytes.
pub trait Scalar:
    Copy + Default + PartialOrd + PartialEq + Send + Sync + std::fmt::Debug + 'static
{
    /// The run-time tag of this type.
    const TYPE: ScalarType;
    /// Value as `f64` (exact for every type except 64-bit integers beyond 2^53).
    fn to_f64(self) -> f64;
    /// Value from `f64`, rounding to nearest and saturating at the type's range
    /// (a cast, as `as` does for floats to integers).
    fn from_f64(v: f64) -> Self;
    /// Value from its little-endian bytes (`bytes.len() == TYPE.size()`).
    fn from_le_slice(bytes: &[u8]) -> Self;
    /// Value from its big-endian bytes.
    fn from_be_slice(bytes: &[u8]) -> Self;
    /// Appends the little-endian bytes of `self` to `out`.
    fn write_le(self, out: &mut Vec<u8>);
    /// Wraps a volume of this type into an [`AnyVolume`].
    fn into_any(v: Volume<Self>) -> AnyVolume;
}

macro_rules! impl_scalar {
    ($t:ty, $tag:ident, $round:expr) => {
        impl Scalar for $t {
            const TYPE: ScalarType = ScalarType::$tag;
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn from_f64(v: f64) -> Self {
                let round: fn(f64) -> f64 = $round;
                round(v) as $t
            }
            #[inline]
            fn from_le_slice(bytes: &[u8]) -> Self {
                let mut b = [0u8; std::mem::size_of::<$t>()];
                b.copy_from_slice(bytes);
                <$t>::from_le_bytes(b)
            }
            #[inline]
            fn from_be_slice(bytes: &[u8]) -> Self {
                let mut b = [0u8; std::mem::size_of::<$t>()];
                b.copy_from_slice(bytes);
                <$t>::from_be_bytes(b)
            }
            #[inline]
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn into_any(v: Volume<Self>) -> AnyVolume {
                AnyVolume::$tag(v)
            }
        }
    };
}

impl_scalar!(u8, U8, f64::round);
impl_scalar!(i8, I8, f64::round);
impl_scalar!(u16, U16, f64::round);
impl_scalar!(i16, I16, f64::round);
impl_scalar!(u32, U32, f64::round);
impl_scalar!(i32, I32, f64::round);
impl_scalar!(u64, U64, f64::round);
impl_scalar!(i64, I64, f64::round);
impl_scalar!(f32, F32, |v| v);
impl_scalar!(f64, F64, |v| v);

/// A volume whose voxel type is known only at run time (what a file reader returns).
#[derive(Debug, Clone, PartialEq)]
pub enum AnyVolume {
    U8(Volume<u8>),
    I8(Volume<i8>),
    U16(Volume<u16>),
    I16(Volume<i16>),
    U32(Volume<u32>),
    I32(Volume<i32>),
    U64(Volume<u64>),
    I64(Volume<i64>),
    F32(Volume<f32>),
    F64(Volume<f64>),
}

/// Runs `$body` with `$v` bound to the typed volume inside an [`AnyVolume`].
#[macro_export]
macro_rules! with_volume {
    ($any:expr, $v:ident => $body:expr) => {
        match $any {
            $crate::volume::AnyVolume::U8($v) => $body,
            $crate::volume::AnyVolume::I8($v) => $body,
            $crate::volume::AnyVolume::U16($v) => $body,
            $crate::volume::AnyVolume::I16($v) => $body,
            $crate::volume::AnyVolume::U32($v) => $body,
            $crate::volume::AnyVolume::I32($v) => $body,
            $crate::volume::AnyVolume::U64($v) => $body,
            $crate::volume::AnyVolume::I64($v) => $body,
            $crate::volume::AnyVolume::F32($v) => $body,
            $crate::volume::AnyVolume::F64($v) => $body,
        }
    };
}

impl AnyVolume {
    /// The voxel type.
    pub fn scalar_type(&self) -> ScalarType {
        with_volume!(self, v => scalar_type_of(v))
    }

    /// The geometry.
    pub fn geometry(&self) -> &Geometry {
        with_volume!(self, v => &v.geometry)
    }

    /// Replaces the geometry.
    pub fn set_geometry(&mut self, g: Geometry) {
        with_volume!(self, v => v.geometry = g)
    }

    /// Sizes along (i, j, k).
    pub fn size_ijk(&self) -> [usize; 3] {
        with_volume!(self, v => v.size_ijk())
    }

    /// Smallest and largest voxel value (NaN ignored); `None` for an empty volume.
    pub fn min_max(&self) -> Option<(f64, f64)> {
        with_volume!(self, v => min_max(v.data.iter().map(|x| x.to_f64())))
    }

    /// A copy of the voxels as `f64`, in `[k][j][i]` order.
    pub fn to_f64(&self) -> Volume<f64> {
        with_volume!(self, v => Volume::new(v.data.mapv(|x| x.to_f64()), v.geometry))
    }

    /// The voxels converted to `T` (rounded and saturated for integer targets).
    pub fn cast<T: Scalar>(&self) -> Volume<T> {
        with_volume!(self, v => Volume::new(v.data.mapv(|x| T::from_f64(x.to_f64())), v.geometry))
    }

    /// The little-endian bytes of the voxels in memory order (`i` fastest).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        with_volume!(self, v => {
            let mut out = Vec::with_capacity(v.len() * self.scalar_type().size());
            for x in v.data.iter() {
                x.write_le(&mut out);
            }
            out
        })
    }

    /// Bytes `range` of [`AnyVolume::to_le_bytes`], without making the rest: the range is
    /// clipped to the volume, and a value cut by either end is cut in the output too.
    pub fn le_bytes_range(&self, range: std::ops::Range<usize>) -> Vec<u8> {
        let size = self.scalar_type().size();
        with_volume!(self, v => {
            let total = v.len() * size;
            let (start, end) = (range.start.min(total), range.end.min(total));
            if start >= end {
                return Vec::new();
            }
            let (first, last) = (start / size, end.div_ceil(size));
            let mut out = Vec::with_capacity((last - first) * size);
            let flat = v.data.as_slice();
            match flat {
                Some(flat) => {
                    for x in &flat[first..last] {
                        x.write_le(&mut out);
                    }
                }
                None => {
                    for x in v.data.iter().skip(first).take(last - first) {
                        x.write_le(&mut out);
                    }
                }
            }
            let skip = start - first * size;
            out.drain(..skip);
            out.truncate(end - start);
            out
        })
    }
}

fn scalar_type_of<T: Scalar>(_: &Volume<T>) -> ScalarType {
    T::TYPE
}

fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| !v.is_nan())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

impl<T: Scalar> From<Volume<T>> for AnyVolume {
    fn from(v: Volume<T>) -> Self {
        T::into_any(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn byte_ranges_are_slices_of_the_whole() {
        let v: AnyVolume = Volume::new(
            ndarray::Array3::from_shape_fn((2, 3, 4), |(k, j, i)| {
                (k * 100 + j * 10 + i) as i16 - 50
            }),
            Default::default(),
        )
        .into();
        let all = v.to_le_bytes();
        for (a, b) in [(0, 48), (3, 17), (47, 48), (10, 10), (40, 99)] {
            assert_eq!(
                v.le_bytes_range(a..b),
                all[a.min(48)..b.min(48)].to_vec(),
                "{a}..{b}"
            );
        }
    }

    #[test]
    fn any_volume_reports_type_and_range() {
        let data = Array3::from_shape_vec((1, 2, 2), vec![-3i16, 0, 7, 2]).unwrap();
        let any: AnyVolume = Volume::new(data, Geometry::default()).into();
        assert_eq!(any.scalar_type(), ScalarType::I16);
        assert_eq!(any.min_max(), Some((-3.0, 7.0)));
        assert_eq!(any.to_le_bytes(), vec![0xfd, 0xff, 0, 0, 7, 0, 2, 0]);
        let u: Volume<u8> = any.cast();
        assert_eq!(u.data.as_slice().unwrap(), &[0, 0, 7, 2]);
    }

    #[test]
    fn from_f64_rounds_and_saturates() {
        assert_eq!(i16::from_f64(2.5), 3);
        assert_eq!(i16::from_f64(-2.5), -3);
        assert_eq!(u8::from_f64(300.0), 255);
        assert_eq!(u8::from_f64(-1.0), 0);
        assert_eq!(f32::from_f64(0.25), 0.25);
    }
}
