//! gzip on every core: one gzip member whose deflate stream is compressed in blocks in
//! parallel, the way pigz does it, by libdeflate.
//!
//! # Method
//! The data is cut into [`BLOCK_BYTES`] blocks. Each block is compressed on its own as a
//! raw deflate stream (RFC 1951) by [libdeflate](https://github.com/ebiggers/libdeflate),
//! which compresses two to three times faster than zlib at a smaller size. libdeflate
//! only writes complete streams: its last deflate block has BFINAL set and the stream is
//! padded to a byte. So every block but the last is then *opened*: a scan of its deflate
//! blocks (headers and Huffman codes, no output written; `final_block`) finds the bit
//! where its final block starts and the bit where the stream ends; BFINAL is cleared and
//! an empty stored block is appended at the end bit, which brings the stream to a byte
//! boundary without ending it (what zlib's sync flush writes). The blocks, joined, are
//! one valid deflate stream; the gzip header and trailer (RFC 1952) go around it, with
//! the CRC-32 of the whole data combined from the blocks' CRCs. The output is a single
//! gzip member, so every reader reads it (zlib's `inflate`, Python's
//! `zlib.decompressobj`, Teem, ITK, nibabel).
//!
//! Each block starts without the previous block's 32 KiB window, which costs well under
//! 1% of compression ratio at 1 MiB blocks. Should a scan ever not understand a stream,
//! that block is compressed again by zlib (flate2) with a sync flush instead.

use rayon::prelude::*;
use std::io::{self, Write};

/// Bytes compressed per task.
pub const BLOCK_BYTES: usize = 1 << 20;

/// Bytes given to libdeflate at once at levels 0 and 1: few enough that its fastest level
/// writes them as one deflate block (it ends blocks at 64 KiB or 8192 matches), whose end
/// is found without reading the symbols (`single_block_end`). Restarting the window
/// every 32 KiB costs about 3% of compressed size on CT; above level 1, where
/// compressing costs more than scanning, libdeflate gets the whole block.
pub const FAST_PIECE_BYTES: usize = 32 << 10;

/// The highest level [`write_gzip`] takes (zlib's scale; libdeflate's go to 12).
pub const MAX_LEVEL: u32 = 9;

/// An empty stored block's LEN and NLEN, after its 3 header bits and the padding.
const EMPTY_STORED: [u8; 4] = [0, 0, 0xff, 0xff];

/// Zero bytes kept after a stream while it is scanned, so that a 64-bit read at any bit
/// of the stream stays inside the buffer.
const SCAN_PADDING: usize = 8;

/// Writes `data` gzip-compressed at `level` (0 to 9) to `w`, compressing blocks in parallel.
pub fn write_gzip<W: Write + ?Sized>(w: &mut W, data: &[u8], level: u32) -> io::Result<()> {
    let level = level.min(MAX_LEVEL);
    let n_blocks = data.len().div_ceil(BLOCK_BYTES).max(1);
    let blocks: Vec<io::Result<(Vec<u8>, crc32fast::Hasher)>> = (0..n_blocks)
        .into_par_iter()
        .map_init(
            || {
                (
                    libdeflater::Compressor::new(libdeflate_level(level)),
                    Vec::new(),
                )
            },
            |(compressor, scratch), b| {
                let start = b * BLOCK_BYTES;
                let chunk = &data[start.min(data.len())..(start + BLOCK_BYTES).min(data.len())];
                let last = b + 1 == n_blocks;
                let mut crc = crc32fast::Hasher::new();
                crc.update(chunk);
                let bytes = deflate_block(compressor, scratch, chunk, level, last)?;
                Ok((bytes, crc))
            },
        )
        .collect();

    // Header: magic, deflate, no flags, no time, no extra flags, unknown OS.
    w.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
    let mut crc = crc32fast::Hasher::new();
    for block in blocks {
        let (bytes, block_crc) = block?;
        w.write_all(&bytes)?;
        crc.combine(&block_crc);
    }
    w.write_all(&crc.finalize().to_le_bytes())?;
    // ISIZE: the length modulo 2^32.
    w.write_all(&(data.len() as u32).to_le_bytes())?;
    Ok(())
}

fn libdeflate_level(level: u32) -> libdeflater::CompressionLvl {
    // Levels 0 to 9 are all valid libdeflate levels.
    libdeflater::CompressionLvl::new(level as i32).unwrap_or_default()
}

/// Raw deflate of one block, [`FAST_PIECE_BYTES`] at a time at levels 0 and 1: a
/// complete stream when `last`,
/// otherwise one that continues (no final block) and ends on a byte boundary.
fn deflate_block(
    compressor: &mut libdeflater::Compressor,
    scratch: &mut Vec<u8>,
    chunk: &[u8],
    level: u32,
    last: bool,
) -> io::Result<Vec<u8>> {
    let piece_bytes = if level <= 1 {
        FAST_PIECE_BYTES
    } else {
        BLOCK_BYTES
    };
    let mut out = Vec::with_capacity(compressor.deflate_compress_bound(chunk.len()));
    let n_pieces = chunk.len().div_ceil(piece_bytes).max(1);
    for p in 0..n_pieces {
        let start = (p * piece_bytes).min(chunk.len());
        let piece = &chunk[start..(start + piece_bytes).min(chunk.len())];
        let bound = compressor.deflate_compress_bound(piece.len());
        scratch.resize(bound + SCAN_PADDING, 0);
        let len = compressor
            .deflate_compress(piece, &mut scratch[..bound])
            .map_err(|e| io::Error::other(format!("libdeflate: {e:?}")))?;
        if last && p + 1 == n_pieces {
            out.extend_from_slice(&scratch[..len]);
        } else {
            match open_stream(scratch, len) {
                Some(len) => out.extend_from_slice(&scratch[..len]),
                None => out.extend(zlib_block(piece, level)?),
            }
        }
    }
    Ok(out)
}

/// Turns the complete deflate stream in `buf[..len]` into one that goes on: its final
/// block's BFINAL cleared and an empty stored block appended at its end bit. Returns the
/// new length, or `None` when the stream cannot be read. `buf` must hold
/// [`SCAN_PADDING`] bytes after `len`.
fn open_stream(buf: &mut [u8], len: usize) -> Option<usize> {
    // libdeflate may have written scratch bytes past the end; the scan reads zeros there.
    buf[len..len + SCAN_PADDING].fill(0);
    let padded = &buf[..len + SCAN_PADDING];
    let (final_bit, end_bit) = single_block_end(padded, len)
        .map(|end| (0, end))
        .or_else(|| final_block(padded, len))?;
    buf[final_bit / 8] &= !(1 << (final_bit % 8));
    if end_bit % 8 != 0 {
        // Zero the padding: the empty stored block's header goes there.
        buf[end_bit / 8] &= (1u8 << (end_bit % 8)) - 1;
    }
    let mut new_len = len;
    if len * 8 - end_bit < 3 {
        // The 3 header bits do not fit in the padding: a byte for them and the rest.
        buf[new_len] = 0;
        new_len += 1;
    }
    buf[new_len..new_len + EMPTY_STORED.len()].copy_from_slice(&EMPTY_STORED);
    Some(new_len + EMPTY_STORED.len())
}

/// The end bit of a stream that is one final dynamic-Huffman block, found without
/// reading its symbols; `None` for any other stream (then [`final_block`] scans it).
/// `padded` holds the stream's `len` bytes and [`SCAN_PADDING`] zero bytes.
///
/// The stream ends with the block's end-of-block code followed by zero bits up to the
/// byte boundary. When that code has a 1 bit, the stream's last 1 bit is the code's last
/// 1 bit, and the code's trailing zeros follow it: that gives the end exactly. The code
/// is then read back at that end as a check.
fn single_block_end(padded: &[u8], len: usize) -> Option<usize> {
    let stream = &padded[..len];
    // BFINAL set on the first block: it is the only one. BTYPE 2: dynamic codes.
    if stream.first()? & 0b111 != 0b101 {
        return None;
    }
    let mut bits = Bits {
        data: padded,
        pos: 3,
    };
    let (lengths, n_lit, _) = read_dynamic_lengths(&mut bits)?;
    let (code, code_len) = canonical_code(&lengths[..n_lit], 256)?;
    if code == 0 {
        return None;
    }
    let last_byte = stream.iter().rposition(|&b| b != 0)?;
    let last_one = last_byte * 8 + 7 - stream[last_byte].leading_zeros() as usize;
    let end = last_one + 1 + code.trailing_zeros() as usize;
    if end > stream.len() * 8 || end + 8 <= stream.len() * 8 || end < code_len {
        return None;
    }
    // Read the code back (stored highest bit first).
    let mut read = 0u32;
    for k in end - code_len..end {
        read = read << 1 | u32::from(stream[k / 8] >> (k % 8) & 1);
    }
    (read == code).then_some(end)
}

/// The canonical code (RFC 1951 3.2.2) of `symbol` and its length.
fn canonical_code(lengths: &[u8], symbol: usize) -> Option<(u32, usize)> {
    let len = usize::from(*lengths.get(symbol)?);
    if len == 0 {
        return None;
    }
    let mut count = [0u32; 16];
    for &l in lengths {
        *count.get_mut(usize::from(l))? += 1;
    }
    count[0] = 0;
    let mut code = 0u32;
    for &c in &count[1..len] {
        code = (code + c) << 1;
    }
    // `code` is now the first code of length `len`; earlier symbols of that length come first.
    let before = lengths[..symbol]
        .iter()
        .filter(|&&l| usize::from(l) == len)
        .count() as u32;
    Some((code + before, len))
}

/// The fallback: raw deflate of one block by zlib, ended by a sync flush.
fn zlib_block(chunk: &[u8], level: u32) -> io::Result<Vec<u8>> {
    use flate2::{Compress, Compression, FlushCompress, Status};
    let mut c = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(chunk.len() / 2 + 1024);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(1024));
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&chunk[consumed..], &mut out, FlushCompress::Sync)
            .map_err(|e| io::Error::other(format!("deflate: {e}")))?;
        let done_input = c.total_in() as usize == chunk.len();
        match status {
            // A sync flush is complete when all input is in and output space was left over.
            Status::Ok | Status::BufError | Status::StreamEnd
                if done_input && out.len() < out.capacity() =>
            {
                return Ok(out)
            }
            Status::Ok | Status::BufError | Status::StreamEnd => {}
        }
    }
}

/// Where the final deflate block of the stream in `stream[..len]` starts and where the
/// stream ends, both in bits from the start; `None` unless the stream is valid deflate
/// ending in the last byte of `len` (then the caller falls back to zlib).
///
/// `stream` must hold [`SCAN_PADDING`] zero bytes after `len`. Each block's header and
/// Huffman tables are read and its symbols skipped, bits only: nothing is decompressed.
fn final_block(stream: &[u8], len: usize) -> Option<(usize, usize)> {
    let end_limit = len * 8;
    let mut bits = Bits {
        data: stream,
        pos: 0,
    };
    loop {
        let header = bits.pos;
        let h = bits.take(3)?;
        match h >> 1 {
            0 => {
                // Stored: to the byte boundary, LEN, NLEN, LEN bytes.
                bits.pos = bits.pos.div_ceil(8) * 8;
                let n = bits.take(16)?;
                if bits.take(16)? != !n & 0xffff {
                    return None;
                }
                bits.pos += n as usize * 8;
            }
            1 => skip_symbols(&mut bits, &Huffman::fixed_lit()?, &Huffman::fixed_dist()?)?,
            2 => {
                let (lit, dist) = read_dynamic_tables(&mut bits)?;
                skip_symbols(&mut bits, &lit, &dist)?;
            }
            _ => return None,
        }
        if bits.pos > end_limit {
            return None;
        }
        if h & 1 == 1 {
            // Final: the stream must end in its last byte.
            return (bits.pos + 8 > end_limit).then_some((header, bits.pos));
        }
    }
}

/// Extra bits of the length symbols 257 to 285.
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Extra bits of the distance symbols 0 to 29.
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// The order in which code length code lengths are stored.
const CODE_LENGTH_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// What a decoded symbol is, in a [`Huffman`] table entry (bits 5 and 6).
const LITERAL: u16 = 1 << 5;
const LENGTH: u16 = 2 << 5;
const END_OF_BLOCK: u16 = 3 << 5;
const KIND: u16 = 3 << 5;

/// The kind and extra bits of a literal/length symbol; `None` for 286 and 287.
fn lit_info(sym: u16) -> Option<(u16, u8)> {
    match sym {
        0..=255 => Some((LITERAL, 0)),
        256 => Some((END_OF_BLOCK, 0)),
        _ => Some((LENGTH, *LENGTH_EXTRA.get(usize::from(sym) - 257)?)),
    }
}

/// The kind and extra bits of a distance symbol; `None` for 30 and 31.
fn dist_info(sym: u16) -> Option<(u16, u8)> {
    Some((LITERAL, *DIST_EXTRA.get(usize::from(sym))?))
}

/// A code length code symbol: always one kind, no extra bits here.
fn plain_info(_: u16) -> Option<(u16, u8)> {
    Some((LITERAL, 0))
}

/// Bits a literal/length and its distance can take at most with their extra bits:
/// 15 + 5 + 15 + 13.
const MAX_SYMBOL_BITS: u32 = 48;

/// Skips the symbols of one compressed block, up to and including its end-of-block.
fn skip_symbols(bits: &mut Bits<'_>, lit: &Huffman, dist: &Huffman) -> Option<()> {
    let mut pos = bits.pos;
    let mut word = 0u64;
    let mut avail = 0u32;
    loop {
        if avail < MAX_SYMBOL_BITS {
            word = bits.peek_at(pos)?;
            avail = 56;
        }
        let mut e = lit.table[word as usize & TABLE_MASK];
        if e == 0 {
            e = lit.decode_long(word)?;
        }
        let n = u32::from(e & 31);
        word >>= n;
        avail -= n;
        pos += n as usize;
        match e & KIND {
            LITERAL => {}
            LENGTH => {
                let mut d = dist.table[word as usize & TABLE_MASK];
                if d == 0 {
                    d = dist.decode_long(word)?;
                }
                let m = u32::from(d & 31);
                word >>= m;
                avail -= m;
                pos += m as usize;
            }
            _ => {
                bits.pos = pos;
                return Some(());
            }
        }
    }
}

/// Reads a dynamic block's header (RFC 1951 3.2.7) and returns its two codes.
fn read_dynamic_tables(bits: &mut Bits<'_>) -> Option<(Huffman, Huffman)> {
    let (lengths, n_lit, total) = read_dynamic_lengths(bits)?;
    Some((
        Huffman::new(&lengths[..n_lit], lit_info)?.with_literal_pairs(),
        Huffman::new(&lengths[n_lit..total], dist_info)?,
    ))
}

/// Reads a dynamic block's code lengths: literal/length codes then distance codes, with
/// the number of each.
fn read_dynamic_lengths(bits: &mut Bits<'_>) -> Option<([u8; 288 + 32], usize, usize)> {
    let n_lit = bits.take(5)? as usize + 257;
    let n_dist = bits.take(5)? as usize + 1;
    let n_code = bits.take(4)? as usize + 4;
    let mut code_lengths = [0u8; 19];
    for &i in &CODE_LENGTH_ORDER[..n_code] {
        code_lengths[i] = bits.take(3)? as u8;
    }
    let code = Huffman::new(&code_lengths, plain_info)?;
    let mut lengths = [0u8; 288 + 32];
    let total = n_lit + n_dist;
    let mut i = 0;
    while i < total {
        let (sym, used) = code.decode(bits.peek_at(bits.pos)?)?;
        bits.pos += used;
        let (value, repeat) = match sym {
            0..=15 => (sym as u8, 1),
            16 => (*lengths.get(i.checked_sub(1)?)?, 3 + bits.take(2)? as usize),
            17 => (0, 3 + bits.take(3)? as usize),
            _ => (0, 11 + bits.take(7)? as usize),
        };
        if i + repeat > total {
            return None;
        }
        lengths[i..i + repeat].fill(value);
        i += repeat;
    }
    if lengths[256] == 0 {
        return None;
    }
    Some((lengths, n_lit, total))
}

/// A little-endian bit reader over a buffer with [`SCAN_PADDING`] bytes after the data.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    /// At least 56 bits from bit `pos`, lowest first.
    #[inline]
    fn peek_at(&self, pos: usize) -> Option<u64> {
        let i = pos / 8;
        let word: [u8; 8] = self.data.get(i..i + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(word) >> (pos % 8))
    }

    fn take(&mut self, n: usize) -> Option<u32> {
        let v = (self.peek_at(self.pos)? & ((1 << n) - 1)) as u32;
        self.pos += n;
        Some(v)
    }
}

/// Bits looked up at once when decoding; longer codes are decoded bit by bit.
const TABLE_BITS: usize = 12;
const TABLE_MASK: usize = (1 << TABLE_BITS) - 1;

/// A canonical Huffman code (RFC 1951 3.2.2), read for the lengths of its codes.
struct Huffman {
    /// Indexed by the next [`TABLE_BITS`] bits: the bits the symbol takes with its extra
    /// bits (low 5 bits) and its kind ([`LITERAL`], [`LENGTH`], [`END_OF_BLOCK`]); 0 when
    /// the code is longer than the table (or not a code).
    table: Vec<u16>,
    /// Number of codes of each length.
    count: [u16; 16],
    /// Symbols in code order.
    symbols: Vec<u16>,
    info: fn(u16) -> Option<(u16, u8)>,
}

impl Huffman {
    /// The code with these lengths (0: symbol unused); `None` when over-subscribed.
    fn new(lengths: &[u8], info: fn(u16) -> Option<(u16, u8)>) -> Option<Huffman> {
        let mut count = [0u16; 16];
        for &l in lengths {
            *count.get_mut(usize::from(l))? += 1;
        }
        count[0] = 0;
        let mut left: i32 = 1;
        for &c in &count[1..] {
            left = left * 2 - i32::from(c);
            if left < 0 {
                return None;
            }
        }
        let mut offset = [0u16; 16];
        for l in 1..15 {
            offset[l + 1] = offset[l] + count[l];
        }
        let mut symbols = vec![0u16; lengths.len()];
        let mut table = vec![0u16; 1 << TABLE_BITS];
        let mut next_code = [0u32; 16];
        let mut code = 0u32;
        for l in 1..16 {
            code = (code + u32::from(count[l - 1])) << 1;
            next_code[l] = code;
        }
        for (sym, &l) in lengths.iter().enumerate() {
            let l = usize::from(l);
            if l == 0 {
                continue;
            }
            let sym = sym as u16;
            symbols[usize::from(offset[l])] = sym;
            offset[l] += 1;
            let c = next_code[l];
            next_code[l] += 1;
            if l <= TABLE_BITS {
                // A symbol that cannot occur keeps 0: the long path rejects it.
                let Some((kind, extra)) = info(sym) else {
                    continue;
                };
                // Codes are stored highest bit first: index by the reversed code.
                let reversed = (c.reverse_bits() >> (32 - l)) as usize;
                let entry = kind | (l as u16 + u16::from(extra));
                for slot in table.iter_mut().skip(reversed).step_by(1 << l) {
                    *slot = entry;
                }
            }
        }
        Some(Huffman {
            table,
            count,
            symbols,
            info,
        })
    }

    /// Makes the entries of a literal followed by another literal that both fit in the
    /// table decode the pair: the bits of both, as one [`LITERAL`].
    fn with_literal_pairs(mut self) -> Huffman {
        let single = self.table.clone();
        for (i, e) in self.table.iter_mut().enumerate() {
            if *e & KIND != LITERAL {
                continue;
            }
            let first = usize::from(*e & 31);
            let second = single[i >> first];
            let second_bits = usize::from(second & 31);
            if second & KIND == LITERAL && first + second_bits <= TABLE_BITS {
                *e = LITERAL | (first + second_bits) as u16;
            }
        }
        self
    }

    fn fixed_lit() -> Option<Huffman> {
        let mut lengths = [8u8; 288];
        lengths[144..256].fill(9);
        lengths[256..280].fill(7);
        Some(Huffman::new(&lengths, lit_info)?.with_literal_pairs())
    }

    fn fixed_dist() -> Option<Huffman> {
        Huffman::new(&[5; 30], dist_info)
    }

    /// The table entry of a code longer than the table.
    #[cold]
    fn decode_long(&self, word: u64) -> Option<u16> {
        let (sym, l) = self.decode(word)?;
        let (kind, extra) = (self.info)(sym)?;
        Some(kind | (l as u16 + u16::from(extra)))
    }

    /// The symbol whose code starts `word` and the code's length: canonical decoding,
    /// one bit at a time (as zlib's puff.c).
    fn decode(&self, word: u64) -> Option<(u16, usize)> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for l in 1..16 {
            code |= ((word >> (l - 1)) & 1) as i32;
            let count = i32::from(self.count[l]);
            if code - count < first {
                return Some((*self.symbols.get((index + code - first) as usize)?, l));
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        // A single-member decoder: the output must be one gzip member.
        let mut d = flate2::read::GzDecoder::new(bytes);
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        out
    }

    fn sample(n: usize) -> Vec<u8> {
        // Compressible but not trivial: a slow ramp with noise.
        let mut x: u32 = 12345;
        (0..n)
            .map(|i| {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                ((i / 1000) as u8).wrapping_add((x >> 28) as u8)
            })
            .collect()
    }

    #[test]
    fn round_trips_across_block_boundaries() {
        for n in [
            0,
            1,
            1000,
            BLOCK_BYTES - 1,
            BLOCK_BYTES,
            BLOCK_BYTES + 1,
            3 * BLOCK_BYTES + 17,
        ] {
            round_trips_at_every_level(&sample(n), &format!("n={n}"));
        }
    }

    #[test]
    fn round_trips_stored_fixed_and_long_codes() {
        // Noise (libdeflate stores it), runs of one byte (a fixed-code block or very few
        // symbols), a skewed alphabet (codes longer than the lookup table), and those
        // mixed inside one block.
        let mut x: u64 = 7;
        let mut noise = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let random: Vec<u8> = (0..3 * BLOCK_BYTES).map(|_| noise() as u8).collect();
        let runs = vec![42u8; 3 * BLOCK_BYTES + 5];
        let skewed: Vec<u8> = (0..3 * BLOCK_BYTES)
            .map(|_| (noise() as u32).leading_zeros() as u8 * 9)
            .collect();
        let mut mixed = Vec::new();
        for i in 0..3 * BLOCK_BYTES / 4096 {
            match i % 3 {
                0 => mixed.extend_from_slice(&random[i * 4096..(i + 1) * 4096]),
                1 => mixed.extend_from_slice(&runs[..4096]),
                _ => mixed.extend_from_slice(&skewed[i * 4096..(i + 1) * 4096]),
            }
        }
        for (what, data) in [
            ("random", random),
            ("runs", runs),
            ("skewed", skewed),
            ("mixed", mixed),
        ] {
            round_trips_at_every_level(&data, what);
        }
    }

    /// `data` written at levels 0 (stored) to 9 reads back the same.
    fn round_trips_at_every_level(data: &[u8], what: &str) {
        for level in [0, 1, 2, 6, 9] {
            let mut gz = Vec::new();
            write_gzip(&mut gz, data, level).unwrap();
            assert_eq!(gunzip(&gz), data, "{what} level={level}");
        }
    }

    #[test]
    fn final_block_rejects_what_it_cannot_read() {
        let data = sample(BLOCK_BYTES);
        let mut c = libdeflater::Compressor::new(libdeflate_level(6));
        let mut out = vec![0; c.deflate_compress_bound(data.len()) + SCAN_PADDING];
        let len = c.deflate_compress(&data, &mut out).unwrap();
        out[len..len + SCAN_PADDING].fill(0);
        assert!(final_block(&out[..len + SCAN_PADDING], len).is_some());
        // A stream cut short, or one that ends before its reported length.
        assert_eq!(final_block(&out[..len / 2 + SCAN_PADDING], len / 2), None);
        assert_eq!(final_block(&out[..len + SCAN_PADDING + 1], len + 1), None);
        // Reserved block type 3.
        assert_eq!(final_block(&[0b111, 0, 0, 0, 0, 0, 0, 0, 0], 1), None);
    }

    #[test]
    fn fast_end_agrees_with_the_scan() {
        let data = sample(2 * BLOCK_BYTES);
        let mut c = libdeflater::Compressor::new(libdeflate_level(1));
        let mut fast = 0;
        for piece in data.chunks(FAST_PIECE_BYTES) {
            let mut out = vec![0; c.deflate_compress_bound(piece.len()) + SCAN_PADDING];
            let len = c.deflate_compress(piece, &mut out).unwrap();
            out[len..].fill(0);
            let scanned = final_block(&out, len).unwrap();
            if let Some(end) = single_block_end(&out, len) {
                assert_eq!((0, end), scanned);
                fast += 1;
            }
        }
        assert_eq!(fast, 2 * BLOCK_BYTES / FAST_PIECE_BYTES);
    }

    #[test]
    fn zlib_fallback_joins_like_a_scanned_block() {
        let data = sample(2 * BLOCK_BYTES);
        let (a, b) = data.split_at(BLOCK_BYTES);
        let mut c = libdeflater::Compressor::new(libdeflate_level(2));
        let mut stream = zlib_block(a, 2).unwrap();
        stream.extend(deflate_block(&mut c, &mut Vec::new(), b, 2, true).unwrap());
        let mut inflated = Vec::new();
        flate2::read::DeflateDecoder::new(&stream[..])
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(inflated, data);
    }

    #[test]
    fn compresses_about_as_well_as_one_stream() {
        let data = sample(4 * BLOCK_BYTES);
        let mut ours = Vec::new();
        write_gzip(&mut ours, &data, 6).unwrap();
        let mut c = libdeflater::Compressor::new(libdeflate_level(6));
        let mut single = vec![0; c.gzip_compress_bound(data.len())];
        let len = c.gzip_compress(&data, &mut single).unwrap();
        single.truncate(len);
        assert!(
            (ours.len() as f64) < single.len() as f64 * 1.01,
            "{} vs {}",
            ours.len(),
            single.len()
        );
    }
}
