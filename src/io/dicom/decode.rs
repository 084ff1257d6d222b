//! Pixel decoding: from a sorted [`Series`] to a typed volume.
//!
//! Native syntaxes (implicit/explicit VR little endian, explicit big endian, deflated)
//! are converted straight from the Pixel Data value as the parser left it (bytes or
//! 16/32-bit words); encapsulated syntaxes go through `dicom-pixeldata` one frame at a
//! time and come back as little-endian bytes. Either way this module masks BitsStored,
//! sign-extends, and applies the rescale itself (PS3.3 C.7.6.3.1, C.11.1.1.2).

use super::open::{self, Extent};
use super::{Mosaic, PixelFormat, Rescale, SampleKind, Series};
use crate::error::{Error, Result};
use crate::volume::{byte_size, AnyVolume, Scalar, ScalarType, Volume, MAX_VOLUME_BYTES};
use dicom::core::value::DicomValueType;
use dicom::core::value::{PrimitiveValue, Value as DicomValue};
use dicom::dictionary_std::tags;
use dicom::object::DefaultDicomObject;
use dicom::pixeldata::PixelDecoder;
use ndarray::{Array3, ArrayViewMut2, Axis};
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What voxel type a series is read into, and how values get there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// No rescale (or the identity): the stored type.
    Stored(ScalarType),
    /// Integer rescale whose declared range fits `i16`.
    I16,
    /// Integer rescale with a wider declared range: `i16` if every value fits, else `f32`.
    I16Checked,
    /// Any other rescale.
    F32,
    /// Float Pixel Data / Double Float Pixel Data, as stored.
    Float(ScalarType),
}

impl Plan {
    pub(crate) fn scalar_type(self) -> ScalarType {
        match self {
            Plan::Stored(t) | Plan::Float(t) => t,
            Plan::I16 | Plan::I16Checked => ScalarType::I16,
            Plan::F32 => ScalarType::F32,
        }
    }
}

/// Largest |slope| and |intercept| taken through integer arithmetic (else `f32`).
const MAX_INTEGER_SLOPE: f64 = 65536.0;
const MAX_INTEGER_INTERCEPT: f64 = 2147483648.0;

/// Chooses the voxel type of a series (see the module docs of [`super`]).
pub(crate) fn plan(series: &Series) -> Plan {
    let p = &series.pixel;
    match p.sample {
        SampleKind::Float32 => return Plan::Float(ScalarType::F32),
        SampleKind::Float64 => return Plan::Float(ScalarType::F64),
        SampleKind::Integer => {}
    }
    let stored = match (p.bits_allocated, p.signed) {
        (8, false) => ScalarType::U8,
        (8, true) => ScalarType::I8,
        (16, false) => ScalarType::U16,
        (16, true) => ScalarType::I16,
        (32, false) => ScalarType::U32,
        (32, true) => ScalarType::I32,
        // Refused by `check_format`; any answer will do here.
        (_, false) => ScalarType::U16,
        (_, true) => ScalarType::I16,
    };
    let rescales: Vec<Rescale> = series.files.iter().filter_map(|f| f.rescale).collect();
    if rescales.iter().all(Rescale::is_identity) {
        return Plan::Stored(stored);
    }
    // Integer arithmetic on 32-bit stored values cannot overflow i64 within these bounds.
    let integer = rescales.iter().all(|r| {
        r.slope.fract() == 0.0
            && r.intercept.fract() == 0.0
            && r.slope.abs() <= MAX_INTEGER_SLOPE
            && r.intercept.abs() <= MAX_INTEGER_INTERCEPT
    });
    if !integer {
        return Plan::F32;
    }
    let unpack = Unpack::new(p);
    let (lo, hi) = (unpack.min() as f64, unpack.max() as f64);
    let fits = series.files.iter().all(|f| {
        let r = f.rescale.unwrap_or(Rescale {
            slope: 1.0,
            intercept: 0.0,
        });
        [lo, hi].iter().all(|&v| {
            let y = v * r.slope + r.intercept;
            (i16::MIN as f64..=i16::MAX as f64).contains(&y)
        })
    });
    if fits {
        Plan::I16
    } else {
        Plan::I16Checked
    }
}

/// The hint appended to "cannot be decoded" messages: JPEG-LS needs the `jpegls` feature.
pub(crate) fn feature_hint(uid: &str) -> &'static str {
    if uid == "1.2.840.10008.1.2.4.80" || uid == "1.2.840.10008.1.2.4.81" {
        " (build segkit with `--features jpegls` to decode JPEG-LS)"
    } else {
        ""
    }
}

/// Reads a series; see [`Series::read`].
pub(crate) fn read(series: &Series, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<AnyVolume> {
    check_format(series)?;
    check_files_hold_frames(series)?;
    let plan = plan(series);
    Ok(match plan {
        Plan::Stored(ScalarType::U8) => read_as::<u8>(series, plan, progress)?.0.into(),
        Plan::Stored(ScalarType::I8) => read_as::<i8>(series, plan, progress)?.0.into(),
        Plan::Stored(ScalarType::U16) => read_as::<u16>(series, plan, progress)?.0.into(),
        Plan::Stored(ScalarType::I16) | Plan::I16 => {
            read_as::<i16>(series, plan, progress)?.0.into()
        }
        Plan::Stored(ScalarType::U32) => read_as::<u32>(series, plan, progress)?.0.into(),
        Plan::Stored(ScalarType::I32) => read_as::<i32>(series, plan, progress)?.0.into(),
        Plan::I16Checked => {
            let (v, overflow) = read_as::<i16>(series, plan, progress)?;
            if overflow {
                drop(v);
                read_as::<f32>(series, Plan::F32, progress)?.0.into()
            } else {
                v.into()
            }
        }
        Plan::F32 | Plan::Float(ScalarType::F32) => {
            read_as::<f32>(series, plan, progress)?.0.into()
        }
        Plan::Float(ScalarType::F64) => read_as::<f64>(series, plan, progress)?.0.into(),
        Plan::Stored(t) | Plan::Float(t) => {
            return Err(Error::unsupported(
                first_path(series),
                format!("voxel type {t} from DICOM"),
            ))
        }
    })
}

fn first_path(series: &Series) -> &Path {
    series
        .files
        .first()
        .map(|f| f.path.as_path())
        .unwrap_or(Path::new("<empty series>"))
}

/// Refuses what cannot be decoded before any file is opened.
fn check_format(series: &Series) -> Result<()> {
    let path = first_path(series);
    let p = &series.pixel;
    if series.files.is_empty() {
        return Err(Error::NotFound("the series has no frames".to_string()));
    }
    if p.samples_per_pixel != 1 {
        return Err(Error::unsupported(
            path,
            format!(
                "{} samples per pixel (PhotometricInterpretation {}): colour images are not supported",
                p.samples_per_pixel, p.photometric
            ),
        ));
    }
    if p.sample == SampleKind::Integer {
        if !matches!(p.bits_allocated, 8 | 16 | 32) {
            return Err(Error::unsupported(
                path,
                format!(
                    "BitsAllocated {} (only 8, 16 and 32 are read)",
                    p.bits_allocated
                ),
            ));
        }
        if p.bits_stored == 0
            || p.bits_stored > p.bits_allocated
            || p.high_bit >= p.bits_allocated
            || p.high_bit + 1 < p.bits_stored
        {
            return Err(Error::format(
                path,
                "DICOM",
                format!(
                    "inconsistent BitsAllocated {}, BitsStored {}, HighBit {}",
                    p.bits_allocated, p.bits_stored, p.high_bit
                ),
            ));
        }
    }
    for f in &series.files {
        if let Some(r) = f.rescale {
            if !(r.slope.is_finite() && r.intercept.is_finite()) {
                return Err(Error::format(
                    &f.path,
                    "DICOM",
                    format!(
                        "rescale slope {} / intercept {} is not finite",
                        r.slope, r.intercept
                    ),
                ));
            }
        }
    }
    for uid in &series.transfer_syntaxes {
        if !super::transfer_syntax_supported(uid) {
            return Err(Error::unsupported(
                path,
                format!(
                    "pixel data in {} ({uid}) cannot be decoded by this build{}",
                    super::transfer_syntax_name(uid),
                    feature_hint(uid)
                ),
            ));
        }
    }
    Ok(())
}

/// RLE Lossless, decoded by [`super::rle`].
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// Transfer syntaxes whose pixel data is stored as it is (PS3.5 A.1 to A.3, not deflated):
/// a file holding `n` frames of such data is at least `n` frames long.
const NATIVE_TRANSFER_SYNTAXES: [&str; 3] = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
];

/// Whether every file of the series stores its pixel data natively.
fn all_native(series: &Series) -> bool {
    series
        .transfer_syntaxes
        .iter()
        .all(|uid| NATIVE_TRANSFER_SYNTAXES.contains(&uid.as_str()))
}

/// Refuses, before the volume is allocated, a series whose uncompressed files are shorter
/// than the frames their headers declare (Rows x Columns x BitsAllocated each): a file of a
/// few hundred bytes declaring 65535 x 65535 pixels must not cost an 8 GiB allocation.
/// Compressed pixel data has no such bound before it is decoded; its frames are checked as
/// they are decoded.
fn check_files_hold_frames(series: &Series) -> Result<()> {
    if !all_native(series) {
        return Ok(());
    }
    let p = &series.pixel;
    let frame_bytes = u64::from(p.rows)
        * u64::from(p.columns)
        * u64::from(p.samples_per_pixel)
        * u64::from(p.bits_allocated)
        / 8;
    let mut frames_per_file: BTreeMap<&Path, u64> = BTreeMap::new();
    for f in &series.files {
        let frames = frames_per_file.entry(&f.path).or_default();
        *frames = (*frames).max(u64::from(f.frame) + 1);
    }
    for (path, frames) in frames_per_file {
        let needed = frame_bytes.saturating_mul(frames);
        let len = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        if len < needed {
            return Err(Error::format(
                path,
                "DICOM",
                format!(
                    "{frames} frame(s) of {} x {} pixels of {} bits need {needed} bytes of pixel data, \
                     but the file holds only {len} bytes",
                    p.columns, p.rows, p.bits_allocated
                ),
            ));
        }
    }
    Ok(())
}

/// Where the bits of a stored value are, and how to read them (PS3.5 8.1.1).
#[derive(Debug, Clone, Copy)]
struct Unpack {
    shift: u32,
    mask: u32,
    bits: u32,
    signed: bool,
    /// `64 - bits` for signed values (0 for unsigned): shifting left then arithmetic
    /// right by it sign-extends without a branch, so conversion loops vectorise.
    extend: u32,
}

impl Unpack {
    fn new(p: &PixelFormat) -> Self {
        let bits = (p.bits_stored as u32).clamp(1, 32);
        let shift = (p.high_bit as u32 + 1).saturating_sub(bits).min(31);
        let mask = if bits >= 32 {
            u32::MAX
        } else {
            (1u32 << bits) - 1
        };
        Unpack {
            shift,
            mask,
            bits,
            signed: p.signed,
            extend: if p.signed { 64 - bits } else { 0 },
        }
    }

    /// The value of the raw sample word `raw`: shifted, masked, sign-extended.
    #[inline(always)]
    fn value(self, raw: u32) -> i64 {
        let v = ((raw >> self.shift) & self.mask) as i64;
        (v << self.extend) >> self.extend
    }

    fn min(self) -> i64 {
        if self.signed {
            -(1i64 << (self.bits - 1))
        } else {
            0
        }
    }

    fn max(self) -> i64 {
        if self.signed {
            (1i64 << (self.bits - 1)) - 1
        } else {
            self.mask as i64
        }
    }
}

/// The samples of one frame, as the parser or the decoder left them.
#[derive(Clone, Copy)]
enum Raw<'a> {
    U8(&'a [u8]),
    Le16(&'a [u8]),
    Be16(&'a [u8]),
    W16(&'a [u16]),
    I16(&'a [i16]),
    Le32(&'a [u8]),
    Be32(&'a [u8]),
    W32(&'a [u32]),
    I32(&'a [i32]),
    F32(&'a [f32]),
    F64(&'a [f64]),
    LeF32(&'a [u8]),
    LeF64(&'a [u8]),
}

impl<'a> Raw<'a> {
    /// Writes `map(value)` for each of the first `out.len()` samples.
    #[inline]
    fn fill<T>(
        &self,
        out: &mut [T],
        unpack: Unpack,
        mut map: impl FnMut(i64) -> T,
        mut fmap: impl FnMut(f64) -> T,
    ) {
        macro_rules! each {
            ($iter:expr, $conv:expr) => {
                for (o, x) in out.iter_mut().zip($iter) {
                    *o = $conv(x);
                }
            };
        }
        match self {
            Raw::U8(b) => each!(b.iter(), |x: &u8| map(unpack.value(*x as u32))),
            Raw::Le16(b) => each!(b.chunks_exact(2), |c: &[u8]| map(
                unpack.value(u16::from_le_bytes([c[0], c[1]]) as u32)
            )),
            Raw::Be16(b) => each!(b.chunks_exact(2), |c: &[u8]| map(
                unpack.value(u16::from_be_bytes([c[0], c[1]]) as u32)
            )),
            Raw::W16(v) => each!(v.iter(), |x: &u16| map(unpack.value(*x as u32))),
            Raw::I16(v) => each!(v.iter(), |x: &i16| map(unpack.value(*x as u16 as u32))),
            Raw::Le32(b) => each!(b.chunks_exact(4), |c: &[u8]| map(
                unpack.value(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            )),
            Raw::Be32(b) => each!(b.chunks_exact(4), |c: &[u8]| map(
                unpack.value(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            )),
            Raw::W32(v) => each!(v.iter(), |x: &u32| map(unpack.value(*x))),
            Raw::I32(v) => each!(v.iter(), |x: &i32| map(unpack.value(*x as u32))),
            Raw::F32(v) => each!(v.iter(), |x: &f32| fmap(*x as f64)),
            Raw::F64(v) => each!(v.iter(), |x: &f64| fmap(*x)),
            Raw::LeF32(b) => each!(b.chunks_exact(4), |c: &[u8]| fmap(f32::from_le_bytes([
                c[0], c[1], c[2], c[3]
            ]) as f64)),
            Raw::LeF64(b) => each!(b.chunks_exact(8), |c: &[u8]| fmap(f64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
            ]))),
        }
    }

    /// Number of samples held.
    fn len(&self) -> usize {
        match self {
            Raw::U8(b) => b.len(),
            Raw::Le16(b) | Raw::Be16(b) => b.len() / 2,
            Raw::W16(v) => v.len(),
            Raw::I16(v) => v.len(),
            Raw::Le32(b) | Raw::Be32(b) | Raw::LeF32(b) => b.len() / 4,
            Raw::W32(v) => v.len(),
            Raw::I32(v) => v.len(),
            Raw::F32(v) => v.len(),
            Raw::F64(v) => v.len(),
            Raw::LeF64(b) => b.len() / 8,
        }
    }

    /// Samples `start..start + n`, or `None` when they are not all there.
    fn slice(&self, start: usize, n: usize) -> Option<Raw<'a>> {
        let end = start.checked_add(n)?;
        if end > self.len() {
            return None;
        }
        Some(match self {
            Raw::U8(b) => Raw::U8(&b[start..end]),
            Raw::Le16(b) => Raw::Le16(&b[start * 2..end * 2]),
            Raw::Be16(b) => Raw::Be16(&b[start * 2..end * 2]),
            Raw::W16(v) => Raw::W16(&v[start..end]),
            Raw::I16(v) => Raw::I16(&v[start..end]),
            Raw::Le32(b) => Raw::Le32(&b[start * 4..end * 4]),
            Raw::Be32(b) => Raw::Be32(&b[start * 4..end * 4]),
            Raw::W32(v) => Raw::W32(&v[start..end]),
            Raw::I32(v) => Raw::I32(&v[start..end]),
            Raw::F32(v) => Raw::F32(&v[start..end]),
            Raw::F64(v) => Raw::F64(&v[start..end]),
            Raw::LeF32(b) => Raw::LeF32(&b[start * 4..end * 4]),
            Raw::LeF64(b) => Raw::LeF64(&b[start * 8..end * 8]),
        })
    }
}

/// Native pixel data of a whole file: its samples, with bytes re-ordered when the
/// parser's word size does not match BitsAllocated.
struct Native<'a> {
    bytes: Cow<'a, [u8]>,
    words: Option<Raw<'a>>,
    bits: u16,
    big_endian: bool,
    float: bool,
}

impl Native<'_> {
    fn raw(&self) -> Raw<'_> {
        if let Some(w) = self.words {
            return w;
        }
        let b: &[u8] = &self.bytes;
        match (self.bits, self.big_endian, self.float) {
            (8, _, _) => Raw::U8(b),
            (16, false, _) => Raw::Le16(b),
            (16, true, _) => Raw::Be16(b),
            (32, false, false) => Raw::Le32(b),
            (32, true, false) => Raw::Be32(b),
            (32, _, true) => Raw::LeF32(b),
            (_, _, true) => Raw::LeF64(b),
            _ => Raw::U8(b),
        }
    }
}

/// Takes the native pixel data value of an object apart; `Ok(None)` when it is
/// encapsulated (a pixel sequence).
fn native<'a>(
    obj: &'a DefaultDicomObject,
    p: &PixelFormat,
    ts: &str,
    path: &Path,
) -> Result<Option<Native<'a>>> {
    let tag = match p.sample {
        SampleKind::Integer => tags::PIXEL_DATA,
        SampleKind::Float32 => tags::FLOAT_PIXEL_DATA,
        SampleKind::Float64 => tags::DOUBLE_FLOAT_PIXEL_DATA,
    };
    let elem = obj
        .get(tag)
        .ok_or_else(|| Error::format(path, "DICOM", format!("no pixel data element {tag}")))?;
    let prim = match elem.value() {
        DicomValue::PixelSequence(_) => return Ok(None),
        DicomValue::Primitive(prim) => prim,
        DicomValue::Sequence(_) => {
            return Err(Error::format(
                path,
                "DICOM",
                format!("pixel data {tag} is a sequence"),
            ))
        }
    };
    let big_endian = open::is_big_endian(ts);
    let bits = p.bits_allocated;
    let float = p.sample != SampleKind::Integer;
    let mk = |bytes: Cow<'a, [u8]>, words: Option<Raw<'a>>| Native {
        bytes,
        words,
        bits,
        big_endian,
        float,
    };
    // Words decoded by the parser are already in machine order; use them as they are
    // when their size matches BitsAllocated, otherwise go back to the file's byte order.
    Ok(Some(match (prim, bits) {
        (PrimitiveValue::U8(b), _) => mk(Cow::Borrowed(&b[..]), None),
        (PrimitiveValue::U16(v), 16) => mk(Cow::Borrowed(&[]), Some(Raw::W16(v))),
        (PrimitiveValue::I16(v), 16) => mk(Cow::Borrowed(&[]), Some(Raw::I16(v))),
        (PrimitiveValue::U32(v), 32) if !float => mk(Cow::Borrowed(&[]), Some(Raw::W32(v))),
        (PrimitiveValue::I32(v), 32) if !float => mk(Cow::Borrowed(&[]), Some(Raw::I32(v))),
        (PrimitiveValue::F32(v), 32) if float => mk(Cow::Borrowed(&[]), Some(Raw::F32(v))),
        (PrimitiveValue::F64(v), 64) if float => mk(Cow::Borrowed(&[]), Some(Raw::F64(v))),
        (PrimitiveValue::U16(v), _) => {
            let mut b = Vec::with_capacity(v.len() * 2);
            for w in v.iter() {
                b.extend_from_slice(&if big_endian {
                    w.to_be_bytes()
                } else {
                    w.to_le_bytes()
                });
            }
            mk(Cow::Owned(b), None)
        }
        (PrimitiveValue::F32(v), _) => {
            let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            Native {
                big_endian: false,
                ..mk(Cow::Owned(b), None)
            }
        }
        (other, _) => {
            return Err(Error::format(
                path,
                "DICOM",
                format!(
                    "pixel data stored as {:?} values does not match BitsAllocated {bits}",
                    other.value_type()
                ),
            ))
        }
    }))
}

/// One output slice or, for a mosaic frame, all of them.
type Views<'a, T> = Vec<ArrayViewMut2<'a, T>>;

/// An exact conversion from an integer known to fit (a cast), cheaper per voxel than
/// [`Scalar::from_f64`]'s rounding.
trait FromI64: Scalar {
    fn from_i64(v: i64) -> Self;
}

macro_rules! from_i64 {
    ($($t:ty),*) => {$(
        impl FromI64 for $t {
            #[inline(always)]
            fn from_i64(v: i64) -> Self {
                v as $t
            }
        }
    )*};
}
from_i64!(u8, i8, u16, i16, u32, i32, f32, f64);

fn read_as<T: FromI64>(
    series: &Series,
    plan: Plan,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(Volume<T>, bool)> {
    let [ni, nj, nk] = series.size_ijk;
    let path0 = first_path(series).to_path_buf();
    let bytes = byte_size(&[ni, nj, nk], T::TYPE.size()).unwrap_or(u64::MAX);
    if bytes > MAX_VOLUME_BYTES {
        return Err(Error::TooLarge {
            path: path0,
            what: format!("a {ni}x{nj}x{nk} {} volume", T::TYPE),
            requested: bytes,
            limit: MAX_VOLUME_BYTES,
        });
    }
    probe_first_frame(series)?;
    // Zero-filled by the allocator (pages are touched only as frames are written), so a
    // series that fails half-way has not cost its whole size in resident memory.
    let mut data = Array3::<T>::from_elem((nk, nj, ni), T::default());
    let overflow = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    {
        // Hand each file its output slices, so every file is opened once.
        let mut views: Vec<Option<ArrayViewMut2<T>>> =
            data.axis_iter_mut(Axis(0)).map(Some).collect();
        let mut tasks: BTreeMap<&PathBuf, Vec<(usize, Views<T>)>> = BTreeMap::new();
        if series.mosaic.is_some() {
            let f = &series.files[0];
            let all: Views<T> = views.iter_mut().filter_map(Option::take).collect();
            tasks.entry(&f.path).or_default().push((0, all));
        } else {
            for (k, f) in series.files.iter().enumerate() {
                let view = views.get_mut(k).and_then(Option::take).ok_or_else(|| {
                    Error::format(&f.path, "DICOM", "more frames than slices in the series")
                })?;
                tasks.entry(&f.path).or_default().push((k, vec![view]));
            }
        }
        let tasks: Vec<_> = tasks.into_iter().collect();
        let ctx = Context {
            series,
            plan,
            unpack: Unpack::new(&series.pixel),
            overflow: &overflow,
            done: &done,
            total: nk,
            progress,
        };
        tasks
            .into_par_iter()
            .try_for_each(|(path, frames)| ctx.decode_file(path, frames))?;
    }
    Ok((
        Volume::new(data, series.geometry),
        overflow.load(Ordering::Relaxed),
    ))
}

/// Decodes the first frame of a compressed series before the volume is allocated: the
/// size of compressed pixel data says nothing about the size it decodes to, so a file of
/// a few hundred bytes declaring 65535 x 65535 pixels would otherwise cost the whole
/// volume before its first frame fails. One frame is decoded twice; for a 300-slice
/// series that is a third of a percent.
fn probe_first_frame(series: &Series) -> Result<()> {
    let Some(f) = series.files.first() else {
        return Ok(());
    };
    if all_native(series) {
        return Ok(());
    }
    let opened = open::open(&f.path, Extent::All)
        .map_err(|reason| Error::format(&f.path, "DICOM", reason))?;
    let ts = open::ts_uid(&opened.obj);
    if NATIVE_TRANSFER_SYNTAXES.contains(&ts.as_str()) {
        return Ok(());
    }
    let p = &series.pixel;
    check_file_format(&opened.obj, p, &f.path)?;
    let decoded = decode_encapsulated(&opened.obj, f.frame, &ts, p, &f.path)?;
    let expected = p.rows as usize * p.columns as usize * (p.bits_allocated as usize / 8).max(1);
    if decoded.len() < expected {
        return Err(Error::format(
            &f.path,
            "DICOM",
            format!(
                "decoded frame {} ({}) has {} bytes, expected {expected} for {} x {} pixels",
                f.frame,
                super::transfer_syntax_name(&ts),
                decoded.len(),
                p.columns,
                p.rows
            ),
        ));
    }
    Ok(())
}

struct Context<'s> {
    series: &'s Series,
    plan: Plan,
    unpack: Unpack,
    overflow: &'s AtomicBool,
    done: &'s AtomicUsize,
    total: usize,
    progress: &'s (dyn Fn(usize, usize) + Sync),
}

impl Context<'_> {
    fn decode_file<T: FromI64>(&self, path: &Path, frames: Vec<(usize, Views<T>)>) -> Result<()> {
        let opened =
            open::open(path, Extent::All).map_err(|reason| Error::format(path, "DICOM", reason))?;
        let obj = &opened.obj;
        let ts = open::ts_uid(obj);
        let p = &self.series.pixel;
        check_file_format(obj, p, path)?;
        let per_frame = p.rows as usize * p.columns as usize;
        let native = native(obj, p, &ts, path)?;
        frames.into_par_iter().try_for_each(|(k, views)| {
            let f = &self.series.files[k];
            let frame = f.frame as usize;
            let decoded;
            let raw = match &native {
                Some(n) => {
                    let all = n.raw();
                    let start = frame.saturating_mul(per_frame);
                    let have = all.len();
                    let owned = all.slice(start, per_frame).ok_or_else(|| {
                        Error::format(
                            path,
                            "DICOM",
                            format!(
                                "pixel data holds {have} samples; frame {frame} needs samples {start}..{} (truncated file?)",
                                start.saturating_add(per_frame)
                            ),
                        )
                    })?;
                    owned
                }
                None => {
                    decoded = decode_encapsulated(obj, f.frame, &ts, p, path)?;
                    let raw = match (p.sample, p.bits_allocated) {
                        (SampleKind::Float32, _) => Raw::LeF32(&decoded),
                        (SampleKind::Float64, _) => Raw::LeF64(&decoded),
                        (_, 8) => Raw::U8(&decoded),
                        (_, 16) => Raw::Le16(&decoded),
                        _ => Raw::Le32(&decoded),
                    };
                    let have = raw.len();
                    raw.slice(0, per_frame).ok_or_else(|| {
                        Error::format(
                            path,
                            "DICOM",
                            format!(
                                "decoded frame {frame} ({}) has {have} samples, expected {per_frame}",
                                super::transfer_syntax_name(&ts)
                            ),
                        )
                    })?
                }
            };
            self.store(&raw, f.rescale, views, self.series.mosaic.as_ref())?;
            Ok(())
        })
    }

    /// Converts one frame's samples into its output slice(s).
    fn store<T: FromI64>(
        &self,
        raw: &Raw<'_>,
        rescale: Option<Rescale>,
        mut views: Views<T>,
        mosaic: Option<&Mosaic>,
    ) -> Result<()> {
        let r = rescale.unwrap_or(Rescale {
            slope: 1.0,
            intercept: 0.0,
        });
        let unpack = self.unpack;
        let overflow = self.overflow;
        let fill = |out: &mut [T]| match self.plan {
            // The stored value fits the stored type by construction: a plain cast.
            Plan::Stored(_) => raw.fill(out, unpack, T::from_i64, T::from_f64),
            Plan::Float(_) => raw.fill(out, unpack, |v| T::from_f64(v as f64), T::from_f64),
            // `plan` bounds slope and intercept so `v * s + b` cannot overflow i64; a
            // declared range inside i16 needs no check at all.
            Plan::I16 => {
                let (s, b) = (r.slope as i64, r.intercept as i64);
                raw.fill(out, unpack, |v| T::from_i64(v * s + b), T::from_f64)
            }
            Plan::I16Checked => {
                let (s, b) = (r.slope as i64, r.intercept as i64);
                let mut outside = false;
                raw.fill(
                    out,
                    unpack,
                    |v| {
                        let y = v * s + b;
                        outside |= (y < i16::MIN as i64) | (y > i16::MAX as i64);
                        T::from_i64(y)
                    },
                    T::from_f64,
                );
                if outside {
                    overflow.store(true, Ordering::Relaxed);
                }
            }
            Plan::F32 => raw.fill(
                out,
                unpack,
                |v| T::from_f64(v as f64 * r.slope + r.intercept),
                |x| T::from_f64(x * r.slope + r.intercept),
            ),
        };
        match mosaic {
            None => {
                for view in views.iter_mut() {
                    match view.as_slice_mut() {
                        Some(out) => fill(out),
                        None => {
                            let mut tmp = vec![T::default(); view.len()];
                            fill(&mut tmp);
                            for (o, v) in view.iter_mut().zip(tmp) {
                                *o = v;
                            }
                        }
                    }
                    self.tick();
                }
            }
            Some(m) => {
                let p = &self.series.pixel;
                let columns = p.columns as usize;
                let mut whole = vec![T::default(); p.rows as usize * columns];
                fill(&mut whole);
                for (t, view) in views.iter_mut().enumerate() {
                    let (tr, tc) = (t / m.per_row, t % m.per_row);
                    for (y, mut row) in view.axis_iter_mut(Axis(0)).enumerate() {
                        let start = (tr * m.tile_rows + y) * columns + tc * m.tile_columns;
                        let src = whole.get(start..start + m.tile_columns).ok_or_else(|| {
                            Error::format(
                                &self.series.files[0].path,
                                "DICOM",
                                format!("mosaic tile {t} lies outside the image"),
                            )
                        })?;
                        for (o, v) in row.iter_mut().zip(src) {
                            *o = *v;
                        }
                    }
                    self.tick();
                }
            }
        }
        Ok(())
    }

    fn tick(&self) {
        let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        (self.progress)(n, self.total);
    }
}

/// Checks that a file's own pixel attributes match the series' (they were grouped on
/// them, but the file may have changed since the scan).
fn check_file_format(obj: &DefaultDicomObject, p: &PixelFormat, path: &Path) -> Result<()> {
    let get = |tag| obj.get(tag).and_then(|e| e.to_int::<i64>().ok());
    for (tag, name, want) in [
        (tags::ROWS, "Rows", p.rows as i64),
        (tags::COLUMNS, "Columns", p.columns as i64),
        (
            tags::BITS_ALLOCATED,
            "BitsAllocated",
            p.bits_allocated as i64,
        ),
    ] {
        if let Some(have) = get(tag) {
            if have != want {
                return Err(Error::format(
                    path,
                    "DICOM",
                    format!("{name} is {have}, but {want} when the series was scanned"),
                ));
            }
        }
    }
    Ok(())
}

/// Decodes one frame of encapsulated pixel data to little-endian bytes.
fn decode_encapsulated(
    obj: &DefaultDicomObject,
    frame: u32,
    ts: &str,
    p: &PixelFormat,
    path: &Path,
) -> Result<Vec<u8>> {
    let name = super::transfer_syntax_name(ts);
    if ts == RLE_LOSSLESS && p.sample == SampleKind::Integer {
        // One fragment per frame (PS3.5 A.4.2).
        let fragment = obj
            .get(tags::PIXEL_DATA)
            .and_then(|e| e.value().fragments())
            .and_then(|f| f.get(frame as usize));
        if let Some(fragment) = fragment {
            return super::rle::decode_frame(
                fragment,
                p.rows as usize,
                p.columns as usize,
                (p.bits_allocated / 8).max(1) as usize,
            )
            .map_err(|e| {
                Error::format(
                    path,
                    "DICOM",
                    format!("cannot decode frame {frame} of the pixel data ({name}, {ts}): {e}"),
                )
            });
        }
    }
    let first = match decode_frame(obj, frame) {
        Ok(bytes) => return Ok(bytes),
        Err(e) => e,
    };
    // Some JPEG-LS encoders pad a stream to even length with a 0x00 *before* the EOI
    // marker (WG04 MR1_JLSL); CharLS 2.4 refuses that, older CharLS (GDCM) accepts it.
    // Retry once without that byte.
    if matches!(ts, "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81") {
        if let Some(fixed) = without_padding_before_eoi(obj) {
            if let Ok(bytes) = decode_frame(&fixed, frame) {
                return Ok(bytes);
            }
        }
    }
    Err(Error::format(
        path,
        "DICOM",
        format!("cannot decode frame {frame} of the pixel data ({name}, {ts}): {first}"),
    ))
}

/// One frame through `dicom-pixeldata`.
fn decode_frame(obj: &DefaultDicomObject, frame: u32) -> std::result::Result<Vec<u8>, String> {
    // jpeg2k/openjp2 (a C-to-Rust translation) and jpeg-decoder may panic on malformed
    // code streams instead of returning an error; contain that to this one call so a bad
    // file becomes an error naming it rather than a crash.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        obj.decode_pixel_data_frame(frame)
            .map(|d| d.data().to_vec())
    }));
    match result {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(open::error_chain(&e)),
        Err(_) => Err("the decoder failed on malformed pixel data".to_string()),
    }
}

/// A copy of a single-frame object whose fragments are joined into one, without a 0x00
/// byte right before the final EOI marker; `None` when there is no such byte.
fn without_padding_before_eoi(obj: &DefaultDicomObject) -> Option<DefaultDicomObject> {
    use dicom::core::value::PixelFragmentSequence;
    use dicom::core::{DataElement, VR};
    let frames = obj
        .get(tags::NUMBER_OF_FRAMES)
        .and_then(|e| e.to_int::<i64>().ok())
        .unwrap_or(1);
    if frames != 1 {
        return None;
    }
    let fragments = obj.get(tags::PIXEL_DATA)?.value().fragments()?;
    let mut stream: Vec<u8> = fragments.iter().flatten().copied().collect();
    // The last EOI (FF D9), ignoring padding after it.
    let eoi = stream.windows(2).rposition(|w| w == [0xFF, 0xD9])?;
    if eoi < 2 || stream[eoi - 1] != 0x00 || stream[eoi - 2] == 0xFF {
        return None;
    }
    stream.remove(eoi - 1);
    let mut fixed = obj.clone();
    fixed.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        DicomValue::PixelSequence(PixelFragmentSequence::new(Vec::<u32>::new(), vec![stream])),
    ));
    Some(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(bits_allocated: u16, bits_stored: u16, high_bit: u16, signed: bool) -> PixelFormat {
        PixelFormat {
            rows: 1,
            columns: 1,
            samples_per_pixel: 1,
            bits_allocated,
            bits_stored,
            high_bit,
            signed,
            photometric: "MONOCHROME2".into(),
            sample: SampleKind::Integer,
        }
    }

    #[test]
    fn high_bits_are_masked_and_signed_values_extended() {
        let u12 = Unpack::new(&fmt(16, 12, 11, false));
        assert_eq!(u12.value(0xF0FF), 0x0FF);
        assert_eq!(u12.value(0x0FFF), 4095);
        let s12 = Unpack::new(&fmt(16, 12, 11, true));
        assert_eq!(s12.value(0x0800), -2048);
        assert_eq!(s12.value(0xFFFF), -1);
        assert_eq!(s12.value(0xF7FF), 2047);
        assert_eq!((s12.min(), s12.max()), (-2048, 2047));
        let s16 = Unpack::new(&fmt(16, 16, 15, true));
        assert_eq!(s16.value(0x8000), -32768);
        let u32_ = Unpack::new(&fmt(32, 32, 31, false));
        assert_eq!(u32_.value(u32::MAX), u32::MAX as i64);
        let s32 = Unpack::new(&fmt(32, 32, 31, true));
        assert_eq!(s32.value(u32::MAX), -1);
        // HighBit above BitsStored - 1: the value sits higher in the word.
        let shifted = Unpack::new(&fmt(16, 12, 15, false));
        assert_eq!(shifted.value(0xABC0), 0xABC);
    }

    #[test]
    fn raw_slices_check_their_bounds() {
        let bytes = [1u8, 0, 2, 0, 3, 0];
        let raw = Raw::Le16(&bytes);
        assert_eq!(raw.len(), 3);
        assert!(raw.slice(1, 2).is_some());
        assert!(raw.slice(2, 2).is_none());
        assert!(raw.slice(usize::MAX, 2).is_none());
        let mut out = [0i32; 2];
        let u = Unpack::new(&fmt(16, 16, 15, false));
        raw.slice(1, 2)
            .unwrap()
            .fill(&mut out, u, |v| v as i32, |x| x as i32);
        assert_eq!(out, [2, 3]);
        let be = Raw::Be16(&bytes);
        be.fill(&mut out, u, |v| v as i32, |x| x as i32);
        assert_eq!(out, [256, 512]);
    }

    /// An RLE header (PS3.5 G.5) with `segments` segments, each `[0x81, 0]`: 128 zero
    /// bytes in PackBits.
    fn rle_fragment(segments: u32) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(&segments.to_le_bytes());
        for s in 0..segments as usize {
            let offset = 64 + 2 * s as u32;
            b[4 + 4 * s..8 + 4 * s].copy_from_slice(&offset.to_le_bytes());
        }
        for _ in 0..segments {
            b.extend_from_slice(&[0x81, 0]);
        }
        b
    }

    #[test]
    fn compressed_frames_that_do_not_decode_are_refused_before_the_volume_is_allocated() {
        // 3 files of 65535 x 65535 16-bit pixels declared (24 GiB of volume), each a
        // 68-byte RLE fragment: the first frame is decoded on its own and fails before
        // the volume is allocated.
        use super::super::scan;
        use super::super::testutil::{temp_dir, Slice};
        let dir = temp_dir();
        let paths: Vec<PathBuf> = (0..3)
            .map(|k| {
                Slice {
                    rows: 65535,
                    columns: 65535,
                    instance_number: k + 1,
                    position: [0.0, 0.0, k as f64],
                    transfer_syntax: "1.2.840.10008.1.2.5",
                    fragments: Some(vec![rle_fragment(2)]),
                    ..Slice::default()
                }
                .write(dir.path(), &format!("bomb{k}.dcm"))
            })
            .collect();
        let s = &scan(&paths).unwrap().series[0];
        assert_eq!(s.files.len(), 3);
        let err = probe_first_frame(s).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err}");
        assert!(err.to_string().contains("bomb0.dcm"), "{err}");
        assert!(s.read().is_err());
    }

    #[test]
    fn compressed_frames_that_decode_pass_the_probe() {
        use super::super::scan;
        use super::super::testutil::{temp_dir, Slice};
        let dir = temp_dir();
        // 8 x 16 pixels of 16 bits: two segments of 128 bytes, the high and the low
        // bytes of the 128 pixels.
        let path = Slice {
            rows: 8,
            columns: 16,
            transfer_syntax: "1.2.840.10008.1.2.5",
            fragments: Some(vec![rle_fragment(2)]),
            ..Slice::default()
        }
        .write(dir.path(), "zeros.dcm");
        let s = &scan(&[path]).unwrap().series[0];
        probe_first_frame(s).unwrap();
        let v = s.read().unwrap();
        assert!(v.to_f64().data.iter().all(|&x| x == 0.0));
    }
}
