//! Reading: find the header, find the data (attached or in detached files), decode it.
//!
//! Sizes are checked before anything is allocated: the declared data must fit
//! [`MAX_VOLUME_BYTES`]; raw data must be present in the file; compressed data is read
//! through a limit one byte past the declared size, so memory grows only with what the
//! stream really yields. How much data is accepted:
//! - **raw**: at least the declared bytes; bytes after them are ignored (Teem does the same,
//!   and a header may describe the start of a bigger file);
//! - **gzip, bzip2, ascii, hex**: exactly the declared amount (after `byte skip`); more is
//!   an error, because it means the header does not describe the stream (the classic case:
//!   a `.nhdr` pointing into a `.nii.gz` without `byte skip: -1`).

use super::data::{NrrdData, Sink};
use super::header::{format_file_number, ByteSkip, DataFile, Encoding, Header, MAX_DIMENSION};
use super::Nrrd;
use crate::error::{Error, Result};
use crate::volume::MAX_VOLUME_BYTES;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Largest header accepted, in bytes (headers of DWI files with hundreds of gradients and
/// segmentations with hundreds of segments stay far below it).
pub const MAX_HEADER_BYTES: u64 = 16 << 20;

/// Largest number of detached data files one header may name.
pub const MAX_DATA_FILES: u64 = 1 << 20;

/// Longest ascii sample accepted, in characters.
const MAX_TOKEN_CHARS: usize = 256;

/// Size of the buffer data is read through.
const CHUNK: usize = 1 << 18;

const FMT: &str = "NRRD";

/// Reads a NRRD file of any dimension and type: attached (`.nrrd`) or detached (`.nhdr`),
/// in any encoding the spec defines.
///
/// The header is kept as written (space, kinds, measurement frame, `key:=value` pairs), so
/// a [`write()`](super::write()) of the result round-trips everything but comments and the
/// storage details (`encoding`, `line skip`, ...).
pub fn read(path: &Path) -> Result<Nrrd> {
    let (header, data_offset) = read_header_at(path)?;
    let data = read_data(path, &header, data_offset)?;
    Ok(Nrrd { header, data })
}

/// Reads only the header (fast: no data is decoded, only sizes are checked).
pub fn read_header(path: &Path) -> Result<Header> {
    read_header_at(path).map(|(h, _)| h)
}

/// The header and the byte offset where attached data starts.
pub(crate) fn read_header_at(path: &Path) -> Result<(Header, u64)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::new(file).take(MAX_HEADER_BYTES);
    let mut text = Vec::new();
    let mut offset = 0u64;
    let mut line = Vec::new();
    let mut first = true;
    let mut ended = false;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        offset += n as u64;
        if first {
            first = false;
            if !line.starts_with(b"NRRD") {
                return Err(Error::format(
                    path,
                    FMT,
                    "not a NRRD file (it does not start with the magic NRRD000X)",
                ));
            }
        }
        let content = line.strip_suffix(b"\n").unwrap_or(&line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.iter().all(|b| b.is_ascii_whitespace()) {
            ended = true;
            break;
        }
        text.extend_from_slice(&line);
        if !line.ends_with(b"\n") {
            break;
        }
    }
    if !ended && reader.limit() == 0 {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            what: "the NRRD header (no blank line ends it)".into(),
            requested: MAX_HEADER_BYTES + 1,
            limit: MAX_HEADER_BYTES,
        });
    }
    let text = String::from_utf8_lossy(&text);
    let header = Header::parse(&text).map_err(|e| Error::format(path, FMT, e))?;
    if header.data_file.is_none() && !ended {
        return Err(Error::format(
            path,
            FMT,
            "the header has no blank line after it and no 'data file' field: the data is missing (truncated file?)",
        ));
    }
    let bytes = header.data_bytes().unwrap_or(u64::MAX);
    if bytes > MAX_VOLUME_BYTES {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            what: format!(
                "the data ({} samples of {} bytes, sizes {})",
                header
                    .element_count()
                    .map_or_else(|| "more than 2^64".to_string(), |n| n.to_string()),
                header.data_type.size(),
                sizes_text(&header)
            ),
            requested: bytes,
            limit: MAX_VOLUME_BYTES,
        });
    }
    if usize::try_from(bytes).is_err() {
        return Err(Error::unsupported(
            path,
            format!("{bytes} bytes of data do not fit in memory on this machine"),
        ));
    }
    Ok((header, offset))
}

fn sizes_text(h: &Header) -> String {
    h.axes
        .iter()
        .map(|a| a.size.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One file (or the attached part of the header's file) holding `bytes` of data.
struct Piece {
    path: PathBuf,
    /// Where the data part starts in the file (after the header for attached data).
    offset: u64,
    /// Declared bytes of data in this piece (after decompression).
    bytes: u64,
}

/// Reads and decodes every piece of the data.
pub(crate) fn read_data(path: &Path, header: &Header, data_offset: u64) -> Result<NrrdData> {
    let pieces = pieces(path, header, data_offset)?;
    let total = header.element_count().unwrap_or(0) as usize;
    let mut sink = Sink::new(header.data_type, header.endian, total);
    for piece in &pieces {
        read_piece(path, header, piece, &mut sink)?;
    }
    let data = sink.finish();
    if data.len() != total {
        // Each piece checks its own size, so this only guards the bookkeeping.
        return Err(Error::format(
            path,
            FMT,
            format!("declares {total} samples but {} were read", data.len()),
        ));
    }
    Ok(data)
}

fn pieces(path: &Path, header: &Header, data_offset: u64) -> Result<Vec<Piece>> {
    let total = header.data_bytes().unwrap_or(0);
    let dir = path.parent().unwrap_or(Path::new(""));
    let (count, subdim) = match &header.data_file {
        None => {
            return Ok(vec![Piece {
                path: path.to_path_buf(),
                offset: data_offset,
                bytes: total,
            }])
        }
        Some(DataFile::Single(name)) => {
            return Ok(vec![Piece {
                path: dir.join(name),
                offset: 0,
                bytes: total,
            }])
        }
        Some(DataFile::List { files, subdim }) => (files.len() as u64, *subdim),
        Some(DataFile::Pattern {
            first,
            last,
            step,
            subdim,
            ..
        }) => {
            let span = (i128::from(*last) - i128::from(*first)) / i128::from(*step);
            (u64::try_from(span + 1).unwrap_or(u64::MAX), *subdim)
        }
    };
    if count > MAX_DATA_FILES {
        return Err(Error::unsupported(
            path,
            format!("'data file' names {count} files, above the limit of {MAX_DATA_FILES}"),
        ));
    }
    // The count is checked against the sizes before any name is made: a pattern names
    // as many files as its numbering says, each as long as the pattern.
    let dim = header.dimension();
    let piece_bytes = {
        let subdim = subdim
            .unwrap_or(dim.saturating_sub(1))
            .clamp(1, MAX_DIMENSION);
        let sizes = header.sizes();
        if subdim < dim {
            let pieces: u64 = sizes[subdim..].iter().map(|&s| s as u64).product();
            if pieces != count {
                return Err(Error::format(
                    path,
                    FMT,
                    format!(
                        "'data file' names {count} files but sizes {} split into {pieces} pieces of dimension {subdim}",
                        sizes_text(header)
                    ),
                ));
            }
            total / pieces.max(1)
        } else {
            let slowest = sizes[dim - 1] as u64;
            if count > slowest || !slowest.is_multiple_of(count.max(1)) {
                return Err(Error::format(
                    path,
                    FMT,
                    format!(
                        "'data file' names {count} files, which does not divide the slowest axis size {slowest}"
                    ),
                ));
            }
            total / count.max(1)
        }
    };
    let names = match &header.data_file {
        Some(DataFile::List { files, .. }) => files.clone(),
        Some(DataFile::Pattern {
            format,
            first,
            step,
            ..
        }) => {
            // first + n * step stays between first and last, so it cannot overflow.
            (0..count as i128)
                .map(|n| {
                    let number = i128::from(*first) + n * i128::from(*step);
                    format_file_number(format, number as i64)
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::format(path, FMT, e))?
        }
        None | Some(DataFile::Single(_)) => unreachable!("returned above"),
    };
    Ok(names
        .into_iter()
        .map(|name| Piece {
            path: dir.join(name),
            offset: 0,
            bytes: piece_bytes,
        })
        .collect())
}

/// Where a piece's data was read from, for error messages.
fn describe(header_path: &Path, piece: &Piece) -> String {
    if piece.path == header_path {
        "the attached data".to_string()
    } else {
        format!("data file {}", piece.path.display())
    }
}

fn read_piece(path: &Path, header: &Header, piece: &Piece, sink: &mut Sink) -> Result<()> {
    let what = describe(path, piece);
    let mut file = File::open(&piece.path).map_err(|e| Error::io(&piece.path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| Error::io(&piece.path, e))?
        .len();
    file.seek(SeekFrom::Start(piece.offset))
        .map_err(|e| Error::io(&piece.path, e))?;
    let mut reader = BufReader::with_capacity(CHUNK, file);
    let mut pos = piece.offset;
    for n in 0..header.line_skip {
        let skipped = skip_line(&mut reader).map_err(|e| Error::io(&piece.path, e))?;
        if skipped == 0 {
            return Err(Error::format(
                path,
                FMT,
                format!(
                    "line skip {} but {what} has only {n} lines",
                    header.line_skip
                ),
            ));
        }
        pos += skipped;
    }
    let available = file_len.saturating_sub(pos);
    let short = |holds: u64| {
        Error::format(
            path,
            FMT,
            format!(
                "declares {} bytes of data but {what} holds {holds}",
                piece.bytes
            ),
        )
    };
    match header.encoding {
        Encoding::Raw => {
            let skip = match header.byte_skip {
                ByteSkip::Bytes(n) => n,
                ByteSkip::FromEnd => available
                    .checked_sub(piece.bytes)
                    .ok_or_else(|| short(available))?,
            };
            let holds = available.saturating_sub(skip);
            if holds < piece.bytes {
                return Err(short(holds));
            }
            reader
                .seek_relative(skip as i64)
                .map_err(|e| Error::io(&piece.path, e))?;
            sink.reserve_exact((piece.bytes / header.data_type.size().max(1) as u64) as usize);
            let got =
                pump(&mut reader, piece.bytes, sink).map_err(|e| Error::io(&piece.path, e))?;
            if got < piece.bytes {
                return Err(short(got));
            }
        }
        Encoding::Gzip | Encoding::Bzip2 => {
            let name = header.encoding.name();
            let mut decoder = decompressor(header.encoding, reader)
                .map_err(|e| Error::format(path, FMT, format!("{what}: {e}")))?;
            let corrupt = |e: io::Error| {
                Error::format(path, FMT, format!("{what}: corrupt {name} data: {e}"))
            };
            match header.byte_skip {
                ByteSkip::Bytes(skip) => {
                    let skipped = io::copy(&mut (&mut decoder).take(skip), &mut io::sink())
                        .map_err(corrupt)?;
                    if skipped < skip {
                        return Err(Error::format(
                            path,
                            FMT,
                            format!(
                                "byte skip {skip} but {what} decompresses to only {skipped} bytes"
                            ),
                        ));
                    }
                    let got = pump(&mut decoder, piece.bytes, sink).map_err(corrupt)?;
                    if got < piece.bytes {
                        return Err(Error::format(
                            path,
                            FMT,
                            format!(
                                "declares {} bytes of data but {what} decompresses to {}",
                                piece.bytes,
                                got + skip
                            ),
                        ));
                    }
                    let mut one = [0u8; 1];
                    if read_some(&mut decoder, &mut one).map_err(corrupt)? > 0 {
                        return Err(Error::format(
                            path,
                            FMT,
                            format!(
                                "declares {} bytes of data (byte skip {skip}) but {what} decompresses to more; \
                                 if the data is at the end of a bigger stream the header needs 'byte skip: -1'",
                                piece.bytes
                            ),
                        ));
                    }
                }
                ByteSkip::FromEnd => {
                    let (tail, total) = read_tail(&mut decoder, piece.bytes).map_err(corrupt)?;
                    if (tail.len() as u64) < piece.bytes {
                        return Err(Error::format(
                            path,
                            FMT,
                            format!(
                                "declares {} bytes of data but {what} decompresses to {total}",
                                piece.bytes
                            ),
                        ));
                    }
                    sink.push_bytes(&tail);
                }
            }
        }
        Encoding::Ascii => {
            let ByteSkip::Bytes(skip) = header.byte_skip else {
                return Err(Error::format(path, FMT, "byte skip -1 with ascii encoding"));
            };
            let samples = piece.bytes / header.data_type.size().max(1) as u64;
            let holds = available.saturating_sub(skip);
            // Every sample needs at least one character and one separator.
            if samples > holds.div_ceil(2) + 1 {
                return Err(Error::format(
                    path,
                    FMT,
                    format!("declares {samples} ascii samples but {what} holds only {holds} bytes"),
                ));
            }
            reader
                .seek_relative(skip.min(i64::MAX as u64) as i64)
                .map_err(|e| Error::io(&piece.path, e))?;
            read_ascii(&mut reader, samples, sink)
                .map_err(|e| Error::format(path, FMT, format!("{what}: {e}")))?;
        }
        Encoding::Hex => {
            let ByteSkip::Bytes(skip) = header.byte_skip else {
                return Err(Error::format(path, FMT, "byte skip -1 with hex encoding"));
            };
            let holds = available.saturating_sub(skip);
            if holds / 2 < piece.bytes {
                return Err(Error::format(
                    path,
                    FMT,
                    format!(
                        "declares {} bytes of hex data but {what} holds at most {}",
                        piece.bytes,
                        holds / 2
                    ),
                ));
            }
            reader
                .seek_relative(skip.min(i64::MAX as u64) as i64)
                .map_err(|e| Error::io(&piece.path, e))?;
            read_hex(&mut reader, piece.bytes, sink)
                .map_err(|e| Error::format(path, FMT, format!("{what}: {e}")))?;
        }
    }
    Ok(())
}

/// The reader of a compressed stream. `gzip` also accepts a zlib stream, which some
/// writers produce under that name.
fn decompressor(
    encoding: Encoding,
    mut reader: BufReader<File>,
) -> std::result::Result<Box<dyn Read>, String> {
    if encoding == Encoding::Bzip2 {
        return Ok(Box::new(bzip2::bufread::MultiBzDecoder::new(reader)));
    }
    let head: Vec<u8> = reader
        .fill_buf()
        .map_err(|e| e.to_string())?
        .iter()
        .take(4)
        .copied()
        .collect();
    match head.as_slice() {
        [0x1f, 0x8b, ..] => Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader))),
        [a, b, ..] if a & 0x0f == 8 && (u16::from(*a) << 8 | u16::from(*b)) % 31 == 0 => {
            Ok(Box::new(flate2::bufread::ZlibDecoder::new(reader)))
        }
        [] => Err("the gzip data is empty".into()),
        _ => Err(format!(
            "the data is not gzip (it starts with bytes {head:02x?})"
        )),
    }
}

/// Skips one line (through its `\n`); returns the bytes skipped, 0 at the end of the file.
fn skip_line(reader: &mut impl BufRead) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(total);
        }
        if let Some(p) = buf.iter().position(|&b| b == b'\n') {
            reader.consume(p + 1);
            return Ok(total + p as u64 + 1);
        }
        let n = buf.len();
        reader.consume(n);
        total += n as u64;
    }
}

/// `read` that retries on `Interrupted`.
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Moves up to `limit` bytes from `r` into `sink`; returns how many there were.
fn pump(r: &mut impl Read, limit: u64, sink: &mut Sink) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    while total < limit {
        let want = (limit - total).min(CHUNK as u64) as usize;
        let n = read_some(r, &mut buf[..want])?;
        if n == 0 {
            break;
        }
        sink.push_bytes(&buf[..n]);
        total += n as u64;
    }
    Ok(total)
}

/// The last `keep` bytes of a stream (all of it when shorter), and the stream's length.
/// Memory stays below about `2 * keep` plus one buffer.
fn read_tail(r: &mut impl Read, keep: u64) -> io::Result<(Vec<u8>, u64)> {
    let keep = keep as usize;
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = read_some(r, &mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > keep.saturating_mul(2).max(CHUNK) {
            tail.drain(..tail.len() - keep);
        }
    }
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
    }
    Ok((tail, total))
}

/// Reads exactly `samples` numbers separated by white space or commas.
fn read_ascii(
    r: &mut impl BufRead,
    samples: u64,
    sink: &mut Sink,
) -> std::result::Result<(), String> {
    let mut token = String::new();
    let mut count = 0u64;
    let mut flush = |token: &mut String, count: &mut u64| -> std::result::Result<(), String> {
        if token.is_empty() {
            return Ok(());
        }
        if *count == samples {
            return Err(format!(
                "holds more than the declared {samples} ascii samples (next: '{token}')"
            ));
        }
        sink.push_text(token)
            .map_err(|e| format!("sample {}: {e}", *count))?;
        *count += 1;
        token.clear();
        Ok(())
    };
    loop {
        let buf = r.fill_buf().map_err(|e| e.to_string())?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        for &b in buf {
            if b.is_ascii_whitespace() || b == b',' {
                flush(&mut token, &mut count)?;
            } else {
                if token.len() >= MAX_TOKEN_CHARS {
                    return Err(format!(
                        "sample {count} is longer than {MAX_TOKEN_CHARS} characters (not ascii numbers?)"
                    ));
                }
                token.push(char::from(b));
            }
        }
        r.consume(n);
    }
    flush(&mut token, &mut count)?;
    if count < samples {
        return Err(format!(
            "declares {samples} ascii samples but holds only {count}"
        ));
    }
    Ok(())
}

/// Reads exactly `bytes` bytes written as pairs of hex digits (white space ignored).
fn read_hex(r: &mut impl BufRead, bytes: u64, sink: &mut Sink) -> std::result::Result<(), String> {
    let mut out = Vec::with_capacity(CHUNK);
    let mut high: Option<u8> = None;
    let mut count = 0u64;
    loop {
        let buf = r.fill_buf().map_err(|e| e.to_string())?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        for &b in buf {
            if b.is_ascii_whitespace() {
                continue;
            }
            let Some(d) = char::from(b).to_digit(16) else {
                return Err(format!(
                    "byte {:?} (0x{b:02x}) is not a hex digit",
                    char::from(b)
                ));
            };
            match high.take() {
                None => high = Some(d as u8),
                Some(h) => {
                    if count == bytes {
                        return Err(format!(
                            "holds more than the declared {bytes} bytes of hex data"
                        ));
                    }
                    out.push(h << 4 | d as u8);
                    count += 1;
                    if out.len() == CHUNK {
                        sink.push_bytes(&out);
                        out.clear();
                    }
                }
            }
        }
        r.consume(n);
    }
    sink.push_bytes(&out);
    if high.is_some() {
        return Err("hex data ends in the middle of a byte".into());
    }
    if count < bytes {
        return Err(format!(
            "declares {bytes} bytes of hex data but holds only {count}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const BALL: [i16; 6] = [0, 1, -2, 300, -400, 32767];

    fn le_bytes() -> Vec<u8> {
        BALL.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn bz2(bytes: &[u8]) -> Vec<u8> {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn header(encoding: &str, extra: &str) -> String {
        format!(
            "NRRD0004\ntype: short\ndimension: 2\nsizes: 3 2\nendian: little\nencoding: {encoding}\n{extra}"
        )
    }

    /// Writes `head` + blank line + `data` as `name` in a fresh folder.
    fn file(dir: &tempfile::TempDir, name: &str, head: &str, data: &[u8]) -> PathBuf {
        let p = dir.path().join(name);
        let mut bytes = head.as_bytes().to_vec();
        bytes.push(b'\n');
        bytes.extend_from_slice(data);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn samples(p: &Path) -> Result<NrrdData> {
        read(p).map(|n| n.data)
    }

    fn expect_err(r: Result<impl std::fmt::Debug>, needle: &str) {
        let e = r.unwrap_err().to_string();
        assert!(e.contains(needle), "{e:?} should contain {needle:?}");
    }

    #[test]
    fn every_encoding_reads_the_same_samples() {
        let dir = tempfile::tempdir().unwrap();
        let want = NrrdData::I16(BALL.to_vec());
        let raw = file(&dir, "raw.nrrd", &header("raw", ""), &le_bytes());
        assert_eq!(samples(&raw).unwrap(), want);
        let gzip = file(&dir, "gz.nrrd", &header("gz", ""), &gz(&le_bytes()));
        assert_eq!(samples(&gzip).unwrap(), want);
        let bzip = file(&dir, "bz.nrrd", &header("bz2", ""), &bz2(&le_bytes()));
        assert_eq!(samples(&bzip).unwrap(), want);
        let text = file(
            &dir,
            "a.nrrd",
            &header("text", ""),
            b"0 1 -2\n300,-400\t32767\n",
        );
        assert_eq!(samples(&text).unwrap(), want);
        let hex: String = le_bytes().iter().map(|b| format!("{b:02X}")).collect();
        let hex = format!("{}\n {}\n", &hex[..5], &hex[5..]);
        let h = file(&dir, "h.nrrd", &header("hex", ""), hex.as_bytes());
        assert_eq!(samples(&h).unwrap(), want);
        let big: Vec<u8> = BALL.iter().flat_map(|v| v.to_be_bytes()).collect();
        let be = file(
            &dir,
            "be.nrrd",
            &header("raw", "").replace("little", "big"),
            &big,
        );
        assert_eq!(samples(&be).unwrap(), want);
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(&le_bytes()).unwrap();
        let z = file(&dir, "z.nrrd", &header("gzip", ""), &zlib.finish().unwrap());
        assert_eq!(samples(&z).unwrap(), want);
    }

    #[test]
    fn line_skip_and_byte_skip_find_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = b"junk line\r\nsecond\nXYZ".to_vec();
        data.extend(le_bytes());
        let p = file(
            &dir,
            "s.nrrd",
            &header("raw", "line skip: 2\nbyte skip: 3\n"),
            &data,
        );
        assert_eq!(samples(&p).unwrap(), NrrdData::I16(BALL.to_vec()));
        // Compressed: lines are skipped in the file, bytes in the decompressed stream.
        let mut inner = b"ABCD".to_vec();
        inner.extend(le_bytes());
        let mut data = b"one line\n".to_vec();
        data.extend(gz(&inner));
        let p = file(
            &dir,
            "g.nrrd",
            &header("gzip", "line skip: 1\nbyte skip: 4\n"),
            &data,
        );
        assert_eq!(samples(&p).unwrap(), NrrdData::I16(BALL.to_vec()));
        let p = file(
            &dir,
            "l.nrrd",
            &header("raw", "line skip: 3\n"),
            b"only\none line",
        );
        expect_err(samples(&p), "line skip 3");
    }

    #[test]
    fn byte_skip_minus_one_takes_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = vec![9u8; 17];
        data.extend(le_bytes());
        let p = file(&dir, "r.nrrd", &header("raw", "byte skip: -1\n"), &data);
        assert_eq!(samples(&p).unwrap(), NrrdData::I16(BALL.to_vec()));
        let p = file(
            &dir,
            "g.nrrd",
            &header("gzip", "byte skip: -1\n"),
            &gz(&data),
        );
        assert_eq!(samples(&p).unwrap(), NrrdData::I16(BALL.to_vec()));
        let p = file(
            &dir,
            "b.nrrd",
            &header("bzip2", "byte skip: -1\n"),
            &bz2(&data),
        );
        assert_eq!(samples(&p).unwrap(), NrrdData::I16(BALL.to_vec()));
        let p = file(
            &dir,
            "s.nrrd",
            &header("gzip", "byte skip: -1\n"),
            &gz(&[1, 2, 3]),
        );
        expect_err(samples(&p), "decompresses to 3");
    }

    #[test]
    fn tail_keeps_the_last_bytes_of_a_long_stream() {
        let data: Vec<u8> = (0..3 * CHUNK + 11).map(|i| i as u8).collect();
        let (tail, total) = read_tail(&mut data.as_slice(), 1000).unwrap();
        assert_eq!(total as usize, data.len());
        assert_eq!(tail, &data[data.len() - 1000..]);
    }

    #[test]
    fn detached_data_in_every_form() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = le_bytes();
        std::fs::write(dir.path().join("d.raw"), &bytes).unwrap();
        let nhdr = |name: &str, extra: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, header("raw", extra)).unwrap();
            p
        };
        let want = NrrdData::I16(BALL.to_vec());
        assert_eq!(
            samples(&nhdr("a.nhdr", "data file: ./d.raw\n")).unwrap(),
            want
        );
        // One row (3 samples) per file: pattern and LIST.
        std::fs::write(dir.path().join("row01.raw"), &bytes[..6]).unwrap();
        std::fs::write(dir.path().join("row02.raw"), gz(&bytes[6..])).unwrap();
        std::fs::write(dir.path().join("row03.raw"), &bytes[6..]).unwrap();
        assert_eq!(
            samples(&nhdr("p.nhdr", "data file: row%02d.raw 1 3 2\n")).unwrap(),
            want
        );
        assert_eq!(
            samples(&nhdr("l.nhdr", "data file: LIST 1\nrow01.raw\nrow03.raw\n")).unwrap(),
            want
        );
        // Slabs of full dimension: 2 files dividing the slowest axis.
        assert_eq!(
            samples(&nhdr("s.nhdr", "data file: LIST 2\nrow01.raw\nrow03.raw\n")).unwrap(),
            want
        );
        expect_err(
            samples(&nhdr("n.nhdr", "data file: LIST\nrow01.raw\n")),
            "names 1 files but sizes 3 2 split into 2 pieces",
        );
        expect_err(
            samples(&nhdr("m.nhdr", "data file: missing.raw\n")),
            "missing.raw",
        );
    }

    #[test]
    fn short_and_long_data_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(&dir, "t.nrrd", &header("raw", ""), &le_bytes()[..11]);
        expect_err(
            samples(&p),
            "declares 12 bytes of data but the attached data holds 11",
        );
        // Raw data may be followed by more bytes.
        let mut longer = le_bytes();
        longer.extend([1, 2, 3]);
        let p = file(&dir, "r.nrrd", &header("raw", ""), &longer);
        assert!(samples(&p).is_ok());
        let p = file(&dir, "g.nrrd", &header("gzip", ""), &gz(&longer));
        expect_err(samples(&p), "byte skip: -1");
        let p = file(&dir, "gs.nrrd", &header("gzip", ""), &gz(&le_bytes()[..7]));
        expect_err(samples(&p), "decompresses to 7");
        let mut cut = gz(&le_bytes());
        cut.truncate(cut.len() - 9);
        let p = file(&dir, "gc.nrrd", &header("gzip", ""), &cut);
        assert!(samples(&p).is_err());
        let p = file(&dir, "a.nrrd", &header("ascii", ""), b"1 2 3 4 5 6 7");
        expect_err(samples(&p), "more than the declared 6");
        let p = file(&dir, "a2.nrrd", &header("ascii", ""), b"1 2 3 4 5");
        expect_err(samples(&p), "holds only 5");
        let p = file(&dir, "a3.nrrd", &header("ascii", ""), b"1 2 3 4 5 x");
        expect_err(samples(&p), "'x' is not a valid short value");
        let p = file(
            &dir,
            "h.nrrd",
            &header("hex", ""),
            b"00112233445566778899aabbz",
        );
        expect_err(samples(&p), "not a hex digit");
        let p = file(&dir, "n.nrrd", &header("gzip", ""), b"plain text, not gzip");
        expect_err(samples(&p), "not gzip");
    }

    #[test]
    fn absurd_sizes_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let head = "NRRD0004\ntype: double\ndimension: 3\nsizes: 100000 100000 100000\nendian: little\nencoding: gzip\n";
        let p = file(&dir, "big.nrrd", head, &gz(&[0; 8]));
        let e = read(&p).unwrap_err();
        assert!(matches!(e, Error::TooLarge { .. }), "{e}");
        let head = "NRRD0004\ntype: double\ndimension: 4\nsizes: 4294967296 4294967296 4294967296 2\nendian: little\nencoding: raw\n";
        let p = file(&dir, "overflow.nrrd", head, &[0; 8]);
        assert!(matches!(read(&p).unwrap_err(), Error::TooLarge { .. }));
        // Within the limit but not in the file: refused by the size check, not by a failed
        // allocation.
        let head = "NRRD0004\ntype: double\ndimension: 3\nsizes: 2000 2000 2000\nendian: little\nencoding: raw\n";
        let p = file(&dir, "absent.nrrd", head, &[0; 8]);
        expect_err(
            read(&p),
            "declares 64000000000 bytes of data but the attached data holds 8",
        );
        let head = "NRRD0004\ntype: uchar\ndimension: 1\nsizes: 4000000000\nencoding: ascii\n";
        let p = file(&dir, "ascii.nrrd", head, b"1 2 3");
        expect_err(read(&p), "holds only 5 bytes");
    }

    #[test]
    fn a_data_file_pattern_is_counted_against_the_sizes_before_names_are_made() {
        // A million names of 4 kB each would be 4 GB: refused from the count alone.
        let dir = tempfile::tempdir().unwrap();
        let pattern = format!("{}%d", "x".repeat(4096));
        let head = format!(
            "NRRD0004\ntype: uchar\ndimension: 2\nsizes: 2 2\nencoding: raw\ndata file: {pattern} 1 1000000 1\n"
        );
        let p = file(&dir, "many.nhdr", &head, b"");
        expect_err(
            read(&p),
            "'data file' names 1000000 files but sizes 2 2 split into 2 pieces of dimension 1",
        );
    }

    #[test]
    fn headers_without_an_end_or_magic_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cut.nrrd");
        std::fs::write(&p, header("raw", "")).unwrap();
        expect_err(read(&p), "no blank line");
        std::fs::write(&p, b"\x89PNG\r\n\x1a\n").unwrap();
        expect_err(read(&p), "not a NRRD file");
        std::fs::write(&p, b"").unwrap();
        expect_err(read(&p), "not a NRRD file");
    }

    #[test]
    fn blocks_read_as_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let head = "NRRD0004\ntype: block\nblock size: 3\ndimension: 1\nsizes: 2\nencoding: raw\n";
        let p = file(&dir, "b.nrrd", head, b"abcdef");
        assert_eq!(
            samples(&p).unwrap(),
            NrrdData::Block {
                size: 3,
                bytes: b"abcdef".to_vec()
            }
        );
    }
}
