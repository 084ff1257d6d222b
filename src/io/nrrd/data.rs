//! NRRD samples in memory: one typed `Vec` in the file's sample order (first axis fastest),
//! and the conversions between those values and the bytes or text of each encoding.
//!
//! Decoding goes through a [`Sink`] that takes bytes (or text tokens) in pieces of any
//! length, so readers never hold a second full copy of the data as bytes.

use super::header::{DataType, Endian};
use crate::volume::Scalar;
use std::fmt::Display;
use std::str::FromStr;

/// The samples of a NRRD, in file order (first axis fastest), as native values.
#[derive(Debug, Clone, PartialEq)]
pub enum NrrdData {
    I8(Vec<i8>),
    U8(Vec<u8>),
    I16(Vec<i16>),
    U16(Vec<u16>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    I64(Vec<i64>),
    U64(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// `type: block`: `bytes.len() / size` opaque blocks of `size` bytes.
    Block {
        size: usize,
        bytes: Vec<u8>,
    },
}

/// Runs `$body` with `$v` bound to the `Vec` (or slice) of a numeric variant; `$block`
/// handles blocks.
macro_rules! dispatch {
    ($ty:ident, $data:expr, $v:ident => $body:expr, $size:ident, $bytes:ident => $block:expr) => {
        match $data {
            $ty::I8($v) => $body,
            $ty::U8($v) => $body,
            $ty::I16($v) => $body,
            $ty::U16($v) => $body,
            $ty::I32($v) => $body,
            $ty::U32($v) => $body,
            $ty::I64($v) => $body,
            $ty::U64($v) => $body,
            $ty::F32($v) => $body,
            $ty::F64($v) => $body,
            $ty::Block {
                size: $size,
                bytes: $bytes,
            } => $block,
        }
    };
}

impl NrrdData {
    /// Empty data of a type.
    pub fn empty(data_type: DataType) -> NrrdData {
        match data_type {
            DataType::I8 => NrrdData::I8(Vec::new()),
            DataType::U8 => NrrdData::U8(Vec::new()),
            DataType::I16 => NrrdData::I16(Vec::new()),
            DataType::U16 => NrrdData::U16(Vec::new()),
            DataType::I32 => NrrdData::I32(Vec::new()),
            DataType::U32 => NrrdData::U32(Vec::new()),
            DataType::I64 => NrrdData::I64(Vec::new()),
            DataType::U64 => NrrdData::U64(Vec::new()),
            DataType::F32 => NrrdData::F32(Vec::new()),
            DataType::F64 => NrrdData::F64(Vec::new()),
            DataType::Block(size) => NrrdData::Block {
                size,
                bytes: Vec::new(),
            },
        }
    }

    /// The sample type.
    pub fn data_type(&self) -> DataType {
        self.as_ref().data_type()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.as_ref().len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A borrowed view.
    pub fn as_ref(&self) -> DataRef<'_> {
        dispatch!(NrrdData, self, v => v.as_slice().into(), size, bytes => DataRef::Block { size: *size, bytes })
    }

    /// Every sample as `f64` (`None` for blocks).
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        dispatch!(NrrdData, self, v => Some(v.iter().map(|x| x.to_f64()).collect()), _s, _b => None)
    }
}

/// Borrowed samples: what the writer encodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DataRef<'a> {
    I8(&'a [i8]),
    U8(&'a [u8]),
    I16(&'a [i16]),
    U16(&'a [u16]),
    I32(&'a [i32]),
    U32(&'a [u32]),
    I64(&'a [i64]),
    U64(&'a [u64]),
    F32(&'a [f32]),
    F64(&'a [f64]),
    Block { size: usize, bytes: &'a [u8] },
}

impl DataRef<'_> {
    /// The sample type.
    pub fn data_type(&self) -> DataType {
        match self {
            DataRef::I8(_) => DataType::I8,
            DataRef::U8(_) => DataType::U8,
            DataRef::I16(_) => DataType::I16,
            DataRef::U16(_) => DataType::U16,
            DataRef::I32(_) => DataType::I32,
            DataRef::U32(_) => DataType::U32,
            DataRef::I64(_) => DataType::I64,
            DataRef::U64(_) => DataType::U64,
            DataRef::F32(_) => DataType::F32,
            DataRef::F64(_) => DataType::F64,
            DataRef::Block { size, .. } => DataType::Block(*size),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        dispatch!(DataRef, self, v => v.len(), size, bytes => bytes.len() / (*size).max(1))
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The little-endian bytes of all the samples: the samples' own memory on a
    /// little-endian machine (no copy), converted otherwise.
    pub(crate) fn le_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        use std::borrow::Cow;
        if cfg!(target_endian = "little") {
            dispatch!(DataRef, self, v => Cow::Borrowed(bytemuck::cast_slice(v)), _s, b => Cow::Borrowed(b))
        } else {
            let mut raw = Vec::new();
            let _ = self.for_each_le_chunk(|c| {
                raw.extend_from_slice(c);
                Ok::<(), std::convert::Infallible>(())
            });
            Cow::Owned(raw)
        }
    }

    /// Calls `f` with the little-endian bytes of the samples, `CHUNK` samples at a time.
    pub(crate) fn for_each_le_chunk<E>(
        &self,
        mut f: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        const CHUNK: usize = 1 << 16;
        match self {
            DataRef::U8(v) => return f(v),
            DataRef::Block { bytes, .. } => return f(bytes),
            _ => {}
        }
        let mut buf = Vec::with_capacity(CHUNK * 8);
        dispatch!(DataRef, self, v => {
            for chunk in v.chunks(CHUNK) {
                buf.clear();
                for x in chunk {
                    x.write_le(&mut buf);
                }
                f(&buf)?;
            }
            Ok(())
        }, _s, _b => Ok(()))
    }

    /// Calls `f` with the text of each sample (ascii encoding; `None` for blocks).
    pub(crate) fn for_each_text<E>(
        &self,
        mut f: impl FnMut(usize, &str) -> Result<(), E>,
    ) -> Option<Result<(), E>> {
        let mut text = String::new();
        dispatch!(DataRef, self, v => {
            let mut run = || -> Result<(), E> {
                for (n, x) in v.iter().enumerate() {
                    text.clear();
                    x.fmt_text(&mut text);
                    f(n, &text)?;
                }
                Ok(())
            };
            Some(run())
        }, _s, _b => None)
    }
}

/// The scalar types NRRD stores, with their place in [`NrrdData`] and their text form.
pub trait NrrdScalar: Scalar + FromStr + Display {
    /// Wraps a `Vec` of this type.
    fn wrap(v: Vec<Self>) -> NrrdData;
    /// The `Vec` inside `data` when it holds this type.
    fn unwrap(data: NrrdData) -> Result<Vec<Self>, NrrdData>;
    /// A borrowed view of a slice of this type.
    fn slice_ref(v: &[Self]) -> DataRef<'_>;
    /// Parses one ascii sample. Integers also accept a float text with an integral value
    /// in range (`3.0`); floats accept `nan`, `inf`, `-inf`.
    fn parse_text(text: &str) -> Option<Self>;
    /// Appends the shortest text that reads back to the same value.
    fn fmt_text(self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(out, "{self}");
    }
}

macro_rules! impl_nrrd_int {
    ($t:ty, $variant:ident) => {
        impl NrrdScalar for $t {
            fn wrap(v: Vec<Self>) -> NrrdData {
                NrrdData::$variant(v)
            }
            fn unwrap(data: NrrdData) -> Result<Vec<Self>, NrrdData> {
                match data {
                    NrrdData::$variant(v) => Ok(v),
                    other => Err(other),
                }
            }
            fn slice_ref(v: &[Self]) -> DataRef<'_> {
                DataRef::$variant(v)
            }
            fn parse_text(text: &str) -> Option<Self> {
                text.parse::<$t>().ok().or_else(|| {
                    let f = super::header::parse_f64(text)?;
                    let ok = f.fract() == 0.0 && f >= <$t>::MIN as f64 && f <= <$t>::MAX as f64;
                    ok.then(|| f as $t)
                })
            }
        }
        impl<'a> From<&'a [$t]> for DataRef<'a> {
            fn from(v: &'a [$t]) -> Self {
                DataRef::$variant(v)
            }
        }
    };
}

macro_rules! impl_nrrd_float {
    ($t:ty, $variant:ident) => {
        impl NrrdScalar for $t {
            fn wrap(v: Vec<Self>) -> NrrdData {
                NrrdData::$variant(v)
            }
            fn unwrap(data: NrrdData) -> Result<Vec<Self>, NrrdData> {
                match data {
                    NrrdData::$variant(v) => Ok(v),
                    other => Err(other),
                }
            }
            fn slice_ref(v: &[Self]) -> DataRef<'_> {
                DataRef::$variant(v)
            }
            fn parse_text(text: &str) -> Option<Self> {
                text.parse::<$t>()
                    .ok()
                    .or_else(|| super::header::parse_f64(text).map(|f| f as $t))
            }
        }
        impl<'a> From<&'a [$t]> for DataRef<'a> {
            fn from(v: &'a [$t]) -> Self {
                DataRef::$variant(v)
            }
        }
    };
}

impl_nrrd_int!(i8, I8);
impl_nrrd_int!(u8, U8);
impl_nrrd_int!(i16, I16);
impl_nrrd_int!(u16, U16);
impl_nrrd_int!(i32, I32);
impl_nrrd_int!(u32, U32);
impl_nrrd_int!(i64, I64);
impl_nrrd_int!(u64, U64);
impl_nrrd_float!(f32, F32);
impl_nrrd_float!(f64, F64);

/// Collects samples from bytes (or text tokens) delivered in pieces of any length.
///
/// Capacity grows with the data actually delivered, never beyond the declared count, unless
/// the caller has checked that the data is present and asks for an exact reservation.
pub(crate) struct Sink {
    data: NrrdData,
    big_endian: bool,
    /// Bytes of an incomplete sample left over from the previous piece.
    carry: Vec<u8>,
    elem: usize,
    /// Declared number of samples.
    expected: usize,
}

impl Sink {
    pub(crate) fn new(data_type: DataType, endian: Option<Endian>, expected: usize) -> Sink {
        Sink {
            data: NrrdData::empty(data_type),
            big_endian: endian == Some(Endian::Big),
            carry: Vec::new(),
            elem: data_type.size().max(1),
            expected,
        }
    }

    /// Reserves room for `samples` more samples (the caller has checked they exist).
    pub(crate) fn reserve_exact(&mut self, samples: usize) {
        let samples = samples.min(self.expected.saturating_sub(self.len()));
        dispatch!(NrrdData, &mut self.data, v => v.reserve_exact(samples), size, bytes => bytes.reserve_exact(samples * *size));
    }

    /// Samples collected so far.
    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    /// Adds bytes in the file's byte order.
    pub(crate) fn push_bytes(&mut self, mut bytes: &[u8]) {
        if !self.carry.is_empty() {
            let need = self.elem - self.carry.len();
            let take = need.min(bytes.len());
            self.carry.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.carry.len() < self.elem {
                return;
            }
            let carry = std::mem::take(&mut self.carry);
            self.push_whole(&carry);
        }
        let whole = bytes.len() - bytes.len() % self.elem;
        self.push_whole(&bytes[..whole]);
        self.carry.extend_from_slice(&bytes[whole..]);
    }

    fn push_whole(&mut self, bytes: &[u8]) {
        let (big, expected) = (self.big_endian, self.expected);
        dispatch!(NrrdData, &mut self.data, v => extend(v, bytes, big, expected), _size, out => {
            grow(out, bytes.len(), expected.saturating_mul(self.elem));
            out.extend_from_slice(bytes);
        })
    }

    /// Adds one ascii sample; the error names the text.
    pub(crate) fn push_text(&mut self, token: &str) -> Result<(), String> {
        let expected = self.expected;
        let ok = dispatch!(NrrdData, &mut self.data, v => push_parsed(v, token, expected), _s, _b => false);
        if ok {
            Ok(())
        } else {
            Err(format!(
                "'{}' is not a valid {} value",
                super::header::shorten(token),
                self.data.data_type().nrrd_name()
            ))
        }
    }

    /// The samples, once every piece is in.
    pub(crate) fn finish(self) -> NrrdData {
        self.data
    }
}

/// Grows `v` for `additional` more items: doubling, but never past `limit` items in total.
fn grow<T>(v: &mut Vec<T>, additional: usize, limit: usize) {
    let want = v.len() + additional;
    if want <= v.capacity() {
        return;
    }
    let target = want
        .max(v.capacity().saturating_mul(2))
        .min(limit.max(want));
    v.reserve_exact(target - v.len());
}

fn extend<T: Scalar>(v: &mut Vec<T>, bytes: &[u8], big: bool, expected: usize) {
    let n = std::mem::size_of::<T>();
    grow(v, bytes.len() / n, expected);
    if big {
        v.extend(bytes.chunks_exact(n).map(T::from_be_slice));
    } else {
        v.extend(bytes.chunks_exact(n).map(T::from_le_slice));
    }
}

fn push_parsed<T: NrrdScalar>(v: &mut Vec<T>, token: &str, expected: usize) -> bool {
    match T::parse_text(token) {
        Some(x) => {
            grow(v, 1, expected);
            v.push(x);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_joins_samples_split_across_pieces() {
        let mut s = Sink::new(DataType::I16, Some(Endian::Big), 3);
        s.push_bytes(&[0x01]);
        s.push_bytes(&[0x02, 0xff]);
        s.push_bytes(&[0xfe, 0x00, 0x07]);
        assert_eq!(s.finish(), NrrdData::I16(vec![0x0102, -2, 7]));
    }

    #[test]
    fn text_samples_parse_per_type() {
        let mut s = Sink::new(DataType::U8, None, 3);
        s.push_text("7").unwrap();
        s.push_text("3.0").unwrap();
        assert!(s.push_text("300").is_err());
        assert!(s.push_text("2.5").is_err());
        assert!(s.push_text("x").unwrap_err().contains("'x'"));
        let mut f = Sink::new(DataType::F32, None, 3);
        f.push_text("NaN").unwrap();
        f.push_text("-inf").unwrap();
        f.push_text("1e-3").unwrap();
        let NrrdData::F32(v) = f.finish() else {
            panic!()
        };
        assert!(v[0].is_nan() && v[1] == f32::NEG_INFINITY && v[2] == 1e-3);
    }

    #[test]
    fn le_chunks_cover_every_sample() {
        let v: Vec<u16> = (0..70_000u32).map(|x| x as u16).collect();
        let mut out = Vec::new();
        DataRef::U16(&v)
            .for_each_le_chunk(|c| {
                out.extend_from_slice(c);
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(out.len(), 140_000);
        assert_eq!(&out[2..4], &[1, 0]);
    }
}
