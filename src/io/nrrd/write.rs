//! Writing: a header and its data, attached (`.nrrd`) or detached (`.nhdr` + data file),
//! in any encoding, always through [`write_atomic`].
//!
//! The writer chooses the storage: `NRRD0004`, little endian (`endian` omitted for 1-byte
//! samples and ascii, as Teem does), the encoding of the [`WriteOptions`], and no line or
//! byte skip. Everything else comes from the [`Header`] as it is.

use super::data::DataRef;
use super::header::{key_problem, ByteSkip, DataFile, DataType, Encoding, Endian, Header};
use super::Nrrd;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use std::io::Write;
use std::path::{Path, PathBuf};

/// gzip level used unless [`WriteOptions::compression_level`] says otherwise.
///
/// Measured with libdeflate ([`crate::io::gzip`]) on the 512x512x300 int16 chest CT of
/// `benches/io_bench.py` (157 MB), CPU time on one core: level 1 compresses 1.69x in
/// about 0.85 s, level 2 1.76x in 1.75 s (above level 1 each block's stream is scanned
/// whole, see [`crate::io::gzip`]), level 6 1.77x in 2.8 s; zlib-rs's level 2, the
/// previous default, took 1.7 s for 1.73x. Level 1 writes files 2.4% larger than
/// SimpleITK's (90.9 MB against 93.1 MB) in half the time of any other choice. Every
/// reader reads every level.
pub const DEFAULT_GZIP_LEVEL: u32 = 1;

/// bzip2 block size level (Teem's default; bzip2's speed hardly depends on it).
const BZIP2_LEVEL: u32 = 9;

/// Bytes per line of hex output (64 hex digits).
const HEX_BYTES_PER_LINE: usize = 32;

/// Largest number of ascii samples per line.
const ASCII_SAMPLES_PER_LINE: usize = 1024;

/// How to store a NRRD: encoding, attached or detached, compression level.
///
/// ```no_run
/// use segkit::io::nrrd::{self, Encoding, WriteOptions};
/// # fn main() -> segkit::Result<()> {
/// let n = nrrd::read("in.nrrd".as_ref())?;
/// WriteOptions::new()
///     .encoding(Encoding::Raw)
///     .detached(true)
///     .write("out.nhdr".as_ref(), &n)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    encoding: Encoding,
    detached: bool,
    compression_level: u32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            encoding: Encoding::default(),
            detached: false,
            compression_level: DEFAULT_GZIP_LEVEL,
        }
    }
}

impl WriteOptions {
    /// gzip, attached, [`DEFAULT_GZIP_LEVEL`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The encoding of the data (default gzip).
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Writes the header to the given path and the data to a file beside it, named after
    /// the header with the encoding's suffix (`x.nhdr` -> `x.raw.gz`). A path ending in
    /// `.nhdr` is always written detached.
    pub fn detached(mut self, detached: bool) -> Self {
        self.detached = detached;
        self
    }

    /// gzip level, 0 (store) to 9 (smallest); ignored by the other encodings.
    pub fn compression_level(mut self, level: u32) -> Self {
        self.compression_level = level.min(9);
        self
    }

    /// Writes `nrrd` to `path` with these options.
    pub fn write(&self, path: &Path, nrrd: &Nrrd) -> Result<()> {
        write(path, nrrd, self)
    }
}

/// Writes a NRRD of any dimension. The header's per-axis fields, space, measurement frame
/// and `key:=value` pairs are written as they are; the data must match its `type` and
/// `sizes`.
pub fn write(path: &Path, nrrd: &Nrrd, options: &WriteOptions) -> Result<()> {
    write_parts(path, &nrrd.header, nrrd.data.as_ref(), options)
}

/// [`write()`] from a borrowed header and samples (no copy of the data).
pub(crate) fn write_parts(
    path: &Path,
    header: &Header,
    data: DataRef<'_>,
    options: &WriteOptions,
) -> Result<()> {
    check(header, data).map_err(|reason| {
        Error::InvalidArgument(format!("{}: cannot write NRRD: {reason}", path.display()))
    })?;
    let encoding = options.encoding;
    let mut out = header.clone();
    out.version = 4;
    out.encoding = encoding;
    out.endian = (data.data_type().size() > 1
        && encoding.exposes_bytes()
        && !matches!(data.data_type(), DataType::Block(_)))
    .then_some(Endian::Little);
    out.line_skip = 0;
    out.byte_skip = ByteSkip::Bytes(0);
    out.data_file = None;
    let detached = options.detached || has_extension(path, "nhdr");
    let level = options.compression_level;
    let row = header.axes.first().map_or(1, |a| a.size);
    if detached {
        let data_path = data_file_path(path, encoding);
        let name = data_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.data_file = Some(DataFile::Single(name));
        // Data first, so that a header never names a missing or half-written file.
        write_atomic(&data_path, |w| {
            write_data(w, data, encoding, level, row).map_err(|e| Error::io(&data_path, e))
        })?;
        let text = out.to_text();
        write_atomic(path, |w| {
            w.write_all(text.as_bytes()).map_err(|e| Error::io(path, e))
        })
    } else {
        let text = out.to_text();
        write_atomic(path, |w| {
            w.write_all(text.as_bytes())
                .and_then(|_| w.write_all(b"\n"))
                .and_then(|_| write_data(w, data, encoding, level, row))
                .map_err(|e| Error::io(path, e))
        })
    }
}

/// The data file beside a detached header: `x.nhdr` -> `x.raw.gz` (by encoding).
pub fn data_file_path(header_path: &Path, encoding: Encoding) -> PathBuf {
    let name = header_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let lower = name.to_ascii_lowercase();
    let stem = if lower.ends_with(".nhdr") || lower.ends_with(".nrrd") {
        &name[..name.len() - 5]
    } else {
        name.as_str()
    };
    header_path.with_file_name(format!("{stem}{}", encoding.data_file_suffix()))
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.to_string_lossy().eq_ignore_ascii_case(ext))
}

/// The header and data agree with each other and with the spec.
fn check(h: &Header, data: DataRef<'_>) -> std::result::Result<(), String> {
    let dim = h.dimension();
    if !(1..=super::header::MAX_DIMENSION).contains(&dim) {
        return Err(format!("dimension {dim} is out of range (1 to 16)"));
    }
    if h.axes.iter().any(|a| a.size == 0) {
        return Err("an axis has size 0".into());
    }
    if h.data_type != data.data_type() {
        return Err(format!(
            "the header says type '{}' but the data holds '{}'",
            h.data_type.nrrd_name(),
            data.data_type().nrrd_name()
        ));
    }
    let count = h.element_count();
    if count != Some(data.len() as u64) {
        return Err(format!(
            "sizes {:?} need {} samples but the data holds {}",
            h.sizes(),
            count.map_or_else(|| "too many".to_string(), |c| c.to_string()),
            data.len()
        ));
    }
    if let DataRef::Block { size, bytes } = data {
        if size == 0 || bytes.len() % size != 0 {
            return Err(format!(
                "{} bytes are not whole blocks of {size}",
                bytes.len()
            ));
        }
    }
    if let Some(problem) = h.key_values.iter().find_map(|(k, _)| key_problem(k)) {
        return Err(problem);
    }
    let sd = h.space_dimension;
    if let Some(s) = h.space {
        if s.dimension() != sd {
            return Err(format!(
                "space '{}' is {}-D but space_dimension is {sd}",
                s.name(),
                s.dimension()
            ));
        }
    }
    for (a, axis) in h.axes.iter().enumerate() {
        if let Some(d) = &axis.space_direction {
            if d.len() != sd {
                return Err(format!(
                    "the space direction of axis {a} has {} components but the space is {sd}-D",
                    d.len()
                ));
            }
        }
        if let Some(k) = axis.kind {
            if let Some(n) = k.required_size() {
                if n != axis.size {
                    return Err(format!(
                        "axis {a} has kind '{}', which needs size {n}, but its size is {}",
                        k.name(),
                        axis.size
                    ));
                }
            }
        }
    }
    if let Some(o) = &h.space_origin {
        if o.len() != sd {
            return Err(format!(
                "space origin has {} components but the space is {sd}-D",
                o.len()
            ));
        }
    }
    if let Some(u) = &h.space_units {
        if u.len() != sd {
            return Err(format!(
                "space units has {} entries but the space is {sd}-D",
                u.len()
            ));
        }
    }
    if let Some(m) = &h.measurement_frame {
        if m.len() != sd || m.iter().any(|c| c.len() != sd) {
            return Err(format!(
                "the measurement frame is not {sd} vectors of {sd} numbers"
            ));
        }
    }
    Ok(())
}

/// Writes the samples in `encoding`; ascii lines hold one row of the first axis (at most
/// [`ASCII_SAMPLES_PER_LINE`] samples).
fn write_data<W: Write>(
    w: &mut W,
    data: DataRef<'_>,
    encoding: Encoding,
    level: u32,
    row: usize,
) -> std::io::Result<()> {
    match encoding {
        Encoding::Raw => data.for_each_le_chunk(|c| w.write_all(c)),
        // Compressed on every core as one gzip member, from the samples' own memory.
        Encoding::Gzip => crate::io::gzip::write_gzip(w, &data.le_bytes(), level),
        Encoding::Bzip2 => {
            let mut enc = bzip2::write::BzEncoder::new(w, bzip2::Compression::new(BZIP2_LEVEL));
            data.for_each_le_chunk(|c| enc.write_all(c))?;
            enc.finish().map(|_| ())
        }
        Encoding::Hex => {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            let mut line = Vec::with_capacity(HEX_BYTES_PER_LINE * 2 + 1);
            let mut in_line = 0usize;
            data.for_each_le_chunk(|c| {
                for &b in c {
                    line.push(DIGITS[usize::from(b >> 4)]);
                    line.push(DIGITS[usize::from(b & 0x0f)]);
                    in_line += 1;
                    if in_line == HEX_BYTES_PER_LINE {
                        line.push(b'\n');
                        w.write_all(&line)?;
                        line.clear();
                        in_line = 0;
                    }
                }
                Ok::<(), std::io::Error>(())
            })?;
            if in_line > 0 {
                line.push(b'\n');
                w.write_all(&line)?;
            }
            Ok(())
        }
        Encoding::Ascii => {
            let per_line = row.clamp(1, ASCII_SAMPLES_PER_LINE);
            let len = data.len();
            let result = data.for_each_text(|n, text| {
                w.write_all(text.as_bytes())?;
                let end_of_line = (n + 1) % per_line == 0 || n + 1 == len;
                w.write_all(if end_of_line { b"\n" } else { b" " })
            });
            result.unwrap_or_else(|| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "block data cannot be written as ascii",
                ))
            })
        }
    }
}
