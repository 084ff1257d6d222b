//! The NRRD header: what the lines between the magic and the data say, parsed from and
//! formatted back to text as the Teem spec defines them
//! (<http://teem.sourceforge.net/nrrd/format.html>).
//!
//! A header is a magic line (`NRRD0001` to `NRRD0005`), then lines of three kinds until the
//! first empty line (or the end of a detached header):
//! - `# comment`, ignored;
//! - `field: description`, one of the fields the spec defines (names are case-insensitive and
//!   may be written without spaces: `byteskip`, `spacedirections`; `centerings` = `centers`);
//!   each field may appear once;
//! - `key:=value`, free-form pairs (NRRD0002 and later) in which `\n` and `\\` are escapes.
//!
//! A line is a field when the text before its first `": "` names a field; otherwise a line
//! with `:=` is a key/value pair (so `byte skip:= -1` is a pair, not the field), and anything
//! else is an error that quotes the line.
//!
//! Per-axis information (`sizes`, `spacings`, `kinds`, `space directions`, ...) lives in one
//! [`Axis`] per axis, fastest axis first, as the file lists them.

use crate::volume::ScalarType;
use std::collections::HashSet;
use std::fmt::Write as _;

/// Largest `dimension` accepted (Teem's `NRRD_DIM_MAX`).
pub const MAX_DIMENSION: usize = 16;

/// Largest `space dimension` accepted (the number of components of a space vector).
pub const MAX_SPACE_DIMENSION: usize = 16;

/// Largest `block size` accepted, in bytes.
pub const MAX_BLOCK_SIZE: usize = 1 << 20;

/// The value type of the samples (`type:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
    /// Opaque blocks of the given number of bytes (`type: block` with `block size: N`).
    Block(usize),
}

impl DataType {
    /// Bytes per sample.
    pub fn size(self) -> usize {
        match self {
            DataType::Block(n) => n,
            other => other.scalar_type().map_or(0, ScalarType::size),
        }
    }

    /// The name Teem, ITK and Slicer write (`short`, `unsigned char`, `double`, ...).
    pub fn nrrd_name(self) -> &'static str {
        match self {
            DataType::I8 => "signed char",
            DataType::U8 => "unsigned char",
            DataType::I16 => "short",
            DataType::U16 => "unsigned short",
            DataType::I32 => "int",
            DataType::U32 => "unsigned int",
            DataType::I64 => "long long int",
            DataType::U64 => "unsigned long long int",
            DataType::F32 => "float",
            DataType::F64 => "double",
            DataType::Block(_) => "block",
        }
    }

    /// Parses any of the spec's spellings (case-insensitive, runs of spaces allowed):
    /// `short`, `short int`, `signed short`, `signed short int`, `int16`, `int16_t`, ...
    /// A `block` comes back with size 0; `block size` fills it in.
    pub fn parse(text: &str) -> Option<DataType> {
        let norm = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase();
        let t = match norm.as_str() {
            "signed char" | "int8" | "int8_t" => DataType::I8,
            "uchar" | "unsigned char" | "uint8" | "uint8_t" => DataType::U8,
            "short" | "short int" | "signed short" | "signed short int" | "int16" | "int16_t" => {
                DataType::I16
            }
            "ushort" | "unsigned short" | "unsigned short int" | "uint16" | "uint16_t" => {
                DataType::U16
            }
            "int" | "signed int" | "int32" | "int32_t" => DataType::I32,
            "uint" | "unsigned int" | "uint32" | "uint32_t" => DataType::U32,
            "longlong"
            | "long long"
            | "long long int"
            | "signed long long"
            | "signed long long int"
            | "int64"
            | "int64_t" => DataType::I64,
            "ulonglong"
            | "unsigned long long"
            | "unsigned long long int"
            | "uint64"
            | "uint64_t" => DataType::U64,
            "float" => DataType::F32,
            "double" => DataType::F64,
            "block" => DataType::Block(0),
            _ => return None,
        };
        Some(t)
    }

    /// The volume scalar type, or `None` for blocks.
    pub fn scalar_type(self) -> Option<ScalarType> {
        Some(match self {
            DataType::I8 => ScalarType::I8,
            DataType::U8 => ScalarType::U8,
            DataType::I16 => ScalarType::I16,
            DataType::U16 => ScalarType::U16,
            DataType::I32 => ScalarType::I32,
            DataType::U32 => ScalarType::U32,
            DataType::I64 => ScalarType::I64,
            DataType::U64 => ScalarType::U64,
            DataType::F32 => ScalarType::F32,
            DataType::F64 => ScalarType::F64,
            DataType::Block(_) => return None,
        })
    }

    /// The NRRD type of a volume scalar type.
    pub fn from_scalar(t: ScalarType) -> DataType {
        match t {
            ScalarType::I8 => DataType::I8,
            ScalarType::U8 => DataType::U8,
            ScalarType::I16 => DataType::I16,
            ScalarType::U16 => DataType::U16,
            ScalarType::I32 => DataType::I32,
            ScalarType::U32 => DataType::U32,
            ScalarType::I64 => DataType::I64,
            ScalarType::U64 => DataType::U64,
            ScalarType::F32 => DataType::F32,
            ScalarType::F64 => DataType::F64,
        }
    }
}

/// How the samples are stored (`encoding:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    /// The bytes as they are in memory, in the declared `endian`.
    Raw,
    /// Numbers as text separated by white space (`ascii`, `text`, `txt`).
    Ascii,
    /// Two hexadecimal digits per byte, white space ignored.
    Hex,
    /// Raw bytes compressed with gzip (`gzip`, `gz`): what Slicer and ITK write.
    #[default]
    Gzip,
    /// Raw bytes compressed with bzip2 (`bzip2`, `bz2`).
    Bzip2,
}

impl Encoding {
    /// The canonical name (`raw`, `ascii`, `hex`, `gzip`, `bzip2`).
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Ascii => "ascii",
            Encoding::Hex => "hex",
            Encoding::Gzip => "gzip",
            Encoding::Bzip2 => "bzip2",
        }
    }

    /// Parses any of the spec's spellings, case-insensitive.
    pub fn parse(text: &str) -> Option<Encoding> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "raw" => Encoding::Raw,
            "ascii" | "text" | "txt" => Encoding::Ascii,
            "hex" => Encoding::Hex,
            "gzip" | "gz" => Encoding::Gzip,
            "bzip2" | "bz2" => Encoding::Bzip2,
            _ => return None,
        })
    }

    /// True when the bytes of the samples are visible (so `endian` matters).
    pub fn exposes_bytes(self) -> bool {
        !matches!(self, Encoding::Ascii)
    }

    /// The suffix the spec suggests for a detached data file in this encoding.
    pub fn data_file_suffix(self) -> &'static str {
        match self {
            Encoding::Raw => ".raw",
            Encoding::Ascii => ".txt",
            Encoding::Hex => ".hex",
            Encoding::Gzip => ".raw.gz",
            Encoding::Bzip2 => ".raw.bz2",
        }
    }
}

/// Byte order of multi-byte samples (`endian:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endian {
    Little,
    Big,
}

impl Endian {
    /// `little` or `big`.
    pub fn name(self) -> &'static str {
        match self {
            Endian::Little => "little",
            Endian::Big => "big",
        }
    }
}

/// The named world spaces of `space:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    RightAnteriorSuperior,
    LeftAnteriorSuperior,
    LeftPosteriorSuperior,
    RightAnteriorSuperiorTime,
    LeftAnteriorSuperiorTime,
    LeftPosteriorSuperiorTime,
    ScannerXyz,
    ScannerXyzTime,
    RightHanded3D,
    LeftHanded3D,
    RightHanded3DTime,
    LeftHanded3DTime,
}

/// (space, canonical name, abbreviation, dimension)
const SPACES: [(Space, &str, &str, usize); 12] = [
    (
        Space::RightAnteriorSuperior,
        "right-anterior-superior",
        "RAS",
        3,
    ),
    (
        Space::LeftAnteriorSuperior,
        "left-anterior-superior",
        "LAS",
        3,
    ),
    (
        Space::LeftPosteriorSuperior,
        "left-posterior-superior",
        "LPS",
        3,
    ),
    (
        Space::RightAnteriorSuperiorTime,
        "right-anterior-superior-time",
        "RAST",
        4,
    ),
    (
        Space::LeftAnteriorSuperiorTime,
        "left-anterior-superior-time",
        "LAST",
        4,
    ),
    (
        Space::LeftPosteriorSuperiorTime,
        "left-posterior-superior-time",
        "LPST",
        4,
    ),
    (Space::ScannerXyz, "scanner-xyz", "scanner-xyz", 3),
    (
        Space::ScannerXyzTime,
        "scanner-xyz-time",
        "scanner-xyz-time",
        4,
    ),
    (
        Space::RightHanded3D,
        "3D-right-handed",
        "3D-right-handed",
        3,
    ),
    (Space::LeftHanded3D, "3D-left-handed", "3D-left-handed", 3),
    (
        Space::RightHanded3DTime,
        "3D-right-handed-time",
        "3D-right-handed-time",
        4,
    ),
    (
        Space::LeftHanded3DTime,
        "3D-left-handed-time",
        "3D-left-handed-time",
        4,
    ),
];

fn squash(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_' | '\t'))
        .collect::<String>()
        .to_ascii_lowercase()
}

impl Space {
    /// The canonical name Teem writes (`left-posterior-superior`, ...).
    pub fn name(self) -> &'static str {
        SPACES
            .iter()
            .find(|s| s.0 == self)
            .map_or("left-posterior-superior", |s| s.1)
    }

    /// Number of components of positions and directions in this space (3, or 4 with time).
    pub fn dimension(self) -> usize {
        SPACES.iter().find(|s| s.0 == self).map_or(3, |s| s.3)
    }

    /// Parses a name or abbreviation (`RAS`, `right-anterior-superior`, ...), ignoring case,
    /// spaces, dashes and underscores.
    pub fn parse(text: &str) -> Option<Space> {
        let want = squash(text);
        SPACES
            .iter()
            .find(|s| squash(s.1) == want || squash(s.2) == want)
            .map(|s| s.0)
    }

    /// Signs that turn this space's x, y, z into LPS: RAS negates x and y, LAS negates x.
    /// Spaces with no anatomical meaning (`scanner-xyz`, `3D-right-handed`, ...) are taken
    /// as LPS unchanged.
    pub fn to_lps_signs(self) -> [f64; 3] {
        match self {
            Space::RightAnteriorSuperior | Space::RightAnteriorSuperiorTime => [-1.0, -1.0, 1.0],
            Space::LeftAnteriorSuperior | Space::LeftAnteriorSuperiorTime => [-1.0, 1.0, 1.0],
            _ => [1.0, 1.0, 1.0],
        }
    }
}

/// Where a sample sits in its cell (`centers:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Center {
    Cell,
    Node,
}

impl Center {
    /// `cell` or `node`.
    pub fn name(self) -> &'static str {
        match self {
            Center::Cell => "cell",
            Center::Node => "node",
        }
    }
}

macro_rules! kinds {
    ($( $variant:ident = $name:literal, $size:literal; )*) => {
        /// What an axis means (`kinds:`). Kinds with a fixed number of components
        /// (`3-vector`, `RGB-color`, `3D-symmetric-matrix`, ...) require that size.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Kind { $( $variant, )* }

        const KINDS: &[(Kind, &str, usize)] = &[ $( (Kind::$variant, $name, $size), )* ];
    };
}

kinds! {
    Domain = "domain", 0;
    Space = "space", 0;
    Time = "time", 0;
    List = "list", 0;
    Point = "point", 0;
    Vector = "vector", 0;
    CovariantVector = "covariant-vector", 0;
    Normal = "normal", 0;
    Stub = "stub", 1;
    Scalar = "scalar", 1;
    Complex = "complex", 2;
    Vector2 = "2-vector", 2;
    Color3 = "3-color", 3;
    RgbColor = "RGB-color", 3;
    HsvColor = "HSV-color", 3;
    XyzColor = "XYZ-color", 3;
    Color4 = "4-color", 4;
    RgbaColor = "RGBA-color", 4;
    Vector3 = "3-vector", 3;
    Gradient3 = "3-gradient", 3;
    Normal3 = "3-normal", 3;
    Vector4 = "4-vector", 4;
    Quaternion = "quaternion", 4;
    SymMatrix2D = "2D-symmetric-matrix", 3;
    MaskedSymMatrix2D = "2D-masked-symmetric-matrix", 4;
    Matrix2D = "2D-matrix", 4;
    MaskedMatrix2D = "2D-masked-matrix", 5;
    SymMatrix3D = "3D-symmetric-matrix", 6;
    MaskedSymMatrix3D = "3D-masked-symmetric-matrix", 7;
    Matrix3D = "3D-matrix", 9;
    MaskedMatrix3D = "3D-masked-matrix", 10;
}

impl Kind {
    /// The name as the spec writes it (`domain`, `RGB-color`, ...).
    pub fn name(self) -> &'static str {
        KINDS.iter().find(|k| k.0 == self).map_or("???", |k| k.1)
    }

    /// Parses a kind name, case-insensitive.
    pub fn parse(text: &str) -> Option<Kind> {
        KINDS
            .iter()
            .find(|k| k.1.eq_ignore_ascii_case(text.trim()))
            .map(|k| k.0)
    }

    /// The axis size this kind requires, if it requires one.
    pub fn required_size(self) -> Option<usize> {
        KINDS
            .iter()
            .find(|k| k.0 == self)
            .and_then(|k| (k.2 > 0).then_some(k.2))
    }

    /// True for the kinds that mean "an axis of the sampling lattice" (`domain`, `space`).
    pub fn is_spatial(self) -> bool {
        matches!(self, Kind::Domain | Kind::Space)
    }
}

/// `byte skip:`: bytes to skip before the data, or `-1`: the data is the last bytes of the
/// (decompressed) file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByteSkip {
    /// Skip this many bytes (0 by default).
    Bytes(u64),
    /// `-1`: skip whatever precedes the last `data size` bytes.
    FromEnd,
}

impl Default for ByteSkip {
    fn default() -> Self {
        ByteSkip::Bytes(0)
    }
}

/// Where a detached header's data is (`data file:`), in one of the spec's three forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataFile {
    /// One file, relative to the header's folder (absolute paths are used as they are).
    Single(String),
    /// Numbered files from a printf-style pattern with one integer conversion:
    /// `data file: slice%03d.raw 1 50 1 [subdim]`.
    Pattern {
        format: String,
        first: i64,
        last: i64,
        step: i64,
        /// Dimension of the piece each file holds (default: `dimension - 1`).
        subdim: Option<usize>,
    },
    /// `data file: LIST [subdim]`: the file names follow, one per line, to the end of the
    /// header.
    List {
        files: Vec<String>,
        subdim: Option<usize>,
    },
}

/// Everything NRRD says about one axis. Missing information is `None`; on writing, a
/// per-axis field is written when at least one axis has a value (the others get the
/// spec's "unknown": `NaN`, `???`, `none`, `""`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Axis {
    /// Number of samples (`sizes:`), at least 1.
    pub size: usize,
    /// Distance between samples (`spacings:`), when there are no space directions.
    pub spacing: Option<f64>,
    /// Sample thickness (`thicknesses:`).
    pub thickness: Option<f64>,
    /// Position of the first sample, or its cell's edge (`axis mins:`).
    pub min: Option<f64>,
    /// Position of the last sample, or its cell's edge (`axis maxs:`).
    pub max: Option<f64>,
    /// `centers:` (`centerings:`).
    pub center: Option<Center>,
    /// `kinds:`.
    pub kind: Option<Kind>,
    /// `labels:`.
    pub label: Option<String>,
    /// `units:`.
    pub unit: Option<String>,
    /// The world step between samples (`space directions:`, `none` = `None`), with
    /// `space dimension` components in the header's space (not converted to LPS).
    pub space_direction: Option<Vec<f64>>,
}

impl Axis {
    /// An axis of `size` samples with nothing else known.
    pub fn new(size: usize) -> Self {
        Axis {
            size,
            ..Axis::default()
        }
    }
}

/// A parsed NRRD header.
///
/// Everything is kept as the file says it, in the file's space: conversion to LPS happens
/// only when a [`Volume`](crate::volume::Volume) is made. `encoding`, `endian`,
/// `line_skip`, `byte_skip` and `data_file` describe how the data was stored; a writer
/// chooses its own (see [`WriteOptions`](super::WriteOptions)).
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// The `X` of the magic `NRRD000X` (1 to 5).
    pub version: u32,
    /// `type:` (with `block size:`).
    pub data_type: DataType,
    /// One entry per axis, fastest first; `dimension` is `axes.len()`.
    pub axes: Vec<Axis>,
    /// `encoding:`.
    pub encoding: Encoding,
    /// `endian:`, required when samples have more than one byte and the encoding shows bytes.
    pub endian: Option<Endian>,
    /// `space:`, when the file names one.
    pub space: Option<Space>,
    /// Components of world vectors: the named space's dimension, or `space dimension:`,
    /// or 0 when the file has no world space.
    pub space_dimension: usize,
    /// `space units:`, one per space component (`""` = unknown).
    pub space_units: Option<Vec<String>>,
    /// `space origin:`: world position of the first sample.
    pub space_origin: Option<Vec<f64>>,
    /// `measurement frame:`: `space_dimension` vectors as written.
    pub measurement_frame: Option<Vec<Vec<f64>>>,
    /// `content:`.
    pub content: Option<String>,
    /// `sample units:`.
    pub sample_units: Option<String>,
    /// `min:`.
    pub min: Option<f64>,
    /// `max:`.
    pub max: Option<f64>,
    /// `old min:`.
    pub old_min: Option<f64>,
    /// `old max:`.
    pub old_max: Option<f64>,
    /// `number:` (informational; Teem ignores it).
    pub number: Option<String>,
    /// `line skip:`: lines to skip in each data file before the data.
    pub line_skip: u64,
    /// `byte skip:`: bytes to skip after the lines (in the decompressed stream for gzip/bzip2).
    pub byte_skip: ByteSkip,
    /// `data file:` of a detached header; `None` when the data follows the header.
    pub data_file: Option<DataFile>,
    /// `key:=value` pairs in file order, unescaped. Keys may repeat; the last one counts.
    pub key_values: Vec<(String, String)>,
}

impl Header {
    /// A minimal header: `type`, `sizes` (fastest axis first), gzip, little endian,
    /// no world space.
    pub fn new(data_type: DataType, sizes: &[usize]) -> Header {
        Header {
            version: 4,
            data_type,
            axes: sizes.iter().map(|&s| Axis::new(s)).collect(),
            encoding: Encoding::Gzip,
            endian: Some(Endian::Little),
            space: None,
            space_dimension: 0,
            space_units: None,
            space_origin: None,
            measurement_frame: None,
            content: None,
            sample_units: None,
            min: None,
            max: None,
            old_min: None,
            old_max: None,
            number: None,
            line_skip: 0,
            byte_skip: ByteSkip::Bytes(0),
            data_file: None,
            key_values: Vec::new(),
        }
    }

    /// `dimension:`.
    pub fn dimension(&self) -> usize {
        self.axes.len()
    }

    /// `sizes:`, fastest axis first.
    pub fn sizes(&self) -> Vec<usize> {
        self.axes.iter().map(|a| a.size).collect()
    }

    /// Number of samples, or `None` when the product overflows.
    pub fn element_count(&self) -> Option<u64> {
        self.axes
            .iter()
            .try_fold(1u64, |acc, a| acc.checked_mul(a.size as u64))
    }

    /// Bytes of data in memory, or `None` when the product overflows.
    pub fn data_bytes(&self) -> Option<u64> {
        self.element_count()?
            .checked_mul(self.data_type.size() as u64)
    }

    /// The value of `key:=` (the last one when the key repeats).
    pub fn key_value(&self, key: &str) -> Option<&str> {
        self.key_values
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key:=value`, replacing every earlier value of the key.
    pub fn set_key_value(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        self.key_values.retain(|(k, _)| *k != key);
        self.key_values.push((key, value.into()));
    }

    /// Parses header text: the magic line, then fields, comments and `key:=value` lines up
    /// to the first empty line or the end of the text. The error names the offending line
    /// or value.
    ///
    /// ```
    /// use segkit::io::nrrd::{DataType, Encoding, Header};
    /// let h = Header::parse("NRRD0004\ntype: short\ndimension: 2\nsizes: 3 4\nendian: little\nencoding: raw\n").unwrap();
    /// assert_eq!(h.data_type, DataType::I16);
    /// assert_eq!(h.sizes(), vec![3, 4]);
    /// assert_eq!(h.encoding, Encoding::Raw);
    /// ```
    pub fn parse(text: &str) -> Result<Header, String> {
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let magic = lines.next().unwrap_or("");
        let version = parse_magic(magic)?;

        let mut fields: Vec<(Field, String)> = Vec::new();
        let mut seen = HashSet::new();
        let mut key_values = Vec::new();
        let mut list_files: Option<Vec<String>> = None;
        for line in lines {
            if let Some(files) = list_files.as_mut() {
                // After `data file: LIST`, every line up to the end of the header is a file.
                if line.trim().is_empty() {
                    break;
                }
                files.push(line.trim().to_string());
                continue;
            }
            if line.trim().is_empty() {
                break;
            }
            if line.starts_with('#') {
                continue;
            }
            match classify(line) {
                Line::Field(field, desc) => {
                    if !seen.insert(field) {
                        return Err(format!("field '{}' appears twice", field.name()));
                    }
                    if field == Field::DataFile && is_list(&desc) {
                        list_files = Some(Vec::new());
                    }
                    fields.push((field, desc));
                }
                Line::KeyValue(k, v) => key_values.push((unescape(&k), unescape(&v))),
                Line::UnknownField(name) => {
                    return Err(format!("unknown field '{name}' in line '{line}'"))
                }
                Line::Garbage => {
                    return Err(format!(
                        "line '{}' is neither 'field: value' nor 'key:=value'",
                        shorten(line)
                    ))
                }
            }
        }
        let mut header = interpret(version, &fields, list_files)?;
        header.key_values = key_values;
        Ok(header)
    }

    /// The header as text, from the magic line to the last field (no blank line after it).
    /// Fields are written in the order Teem and ITK use; numbers with the shortest text
    /// that reads back to the same `f64`.
    pub fn to_text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "NRRD{:04}", self.version.clamp(1, 5));
        t.push_str("# Complete NRRD file format specification at:\n");
        t.push_str("# http://teem.sourceforge.net/nrrd/format.html\n");
        if let Some(c) = &self.content {
            let _ = writeln!(t, "content: {}", one_line(c));
        }
        let _ = writeln!(t, "type: {}", self.data_type.nrrd_name());
        if let DataType::Block(n) = self.data_type {
            let _ = writeln!(t, "block size: {n}");
        }
        let _ = writeln!(t, "dimension: {}", self.dimension());
        match self.space {
            Some(s) => {
                let _ = writeln!(t, "space: {}", s.name());
            }
            None if self.space_dimension > 0 => {
                let _ = writeln!(t, "space dimension: {}", self.space_dimension);
            }
            None => {}
        }
        let sizes: Vec<String> = self.axes.iter().map(|a| a.size.to_string()).collect();
        let _ = writeln!(t, "sizes: {}", sizes.join(" "));
        if self.space_dimension > 0 && self.axes.iter().any(|a| a.space_direction.is_some()) {
            let dirs: Vec<String> = self
                .axes
                .iter()
                .map(|a| match &a.space_direction {
                    Some(v) => fmt_vector(v),
                    None => "none".to_string(),
                })
                .collect();
            let _ = writeln!(t, "space directions: {}", dirs.join(" "));
        }
        self.write_axis_numbers(&mut t, "spacings", |a| a.spacing);
        self.write_axis_numbers(&mut t, "thicknesses", |a| a.thickness);
        self.write_axis_numbers(&mut t, "axis mins", |a| a.min);
        self.write_axis_numbers(&mut t, "axis maxs", |a| a.max);
        if self.axes.iter().any(|a| a.center.is_some()) {
            let c: Vec<&str> = self
                .axes
                .iter()
                .map(|a| a.center.map_or("???", Center::name))
                .collect();
            let _ = writeln!(t, "centers: {}", c.join(" "));
        }
        if self.axes.iter().any(|a| a.kind.is_some()) {
            let k: Vec<&str> = self
                .axes
                .iter()
                .map(|a| a.kind.map_or("???", Kind::name))
                .collect();
            let _ = writeln!(t, "kinds: {}", k.join(" "));
        }
        self.write_axis_strings(&mut t, "labels", |a| a.label.as_deref());
        self.write_axis_strings(&mut t, "units", |a| a.unit.as_deref());
        for (name, v) in [
            ("min", self.min),
            ("max", self.max),
            ("old min", self.old_min),
            ("old max", self.old_max),
        ] {
            if let Some(v) = v {
                let _ = writeln!(t, "{name}: {}", fmt_f64(v));
            }
        }
        if let Some(u) = &self.sample_units {
            let _ = writeln!(t, "sample units: {}", one_line(u));
        }
        if let Some(e) = self.endian {
            let _ = writeln!(t, "endian: {}", e.name());
        }
        let _ = writeln!(t, "encoding: {}", self.encoding.name());
        if self.space_dimension > 0 {
            if let Some(units) = &self.space_units {
                let _ = writeln!(
                    t,
                    "space units: {}",
                    quoted_list(units.iter().map(|s| s.as_str()))
                );
            }
            if let Some(o) = &self.space_origin {
                let _ = writeln!(t, "space origin: {}", fmt_vector(o));
            }
            if let Some(m) = &self.measurement_frame {
                let v: Vec<String> = m.iter().map(|c| fmt_vector(c)).collect();
                let _ = writeln!(t, "measurement frame: {}", v.join(" "));
            }
        }
        if self.line_skip > 0 {
            let _ = writeln!(t, "line skip: {}", self.line_skip);
        }
        match self.byte_skip {
            ByteSkip::Bytes(0) => {}
            ByteSkip::Bytes(n) => {
                let _ = writeln!(t, "byte skip: {n}");
            }
            ByteSkip::FromEnd => t.push_str("byte skip: -1\n"),
        }
        for (k, v) in &self.key_values {
            let _ = writeln!(t, "{}:={}", escape(k), escape(v));
        }
        match &self.data_file {
            None => {}
            Some(DataFile::Single(name)) => {
                let _ = writeln!(t, "data file: {}", one_line(name));
            }
            Some(DataFile::Pattern {
                format,
                first,
                last,
                step,
                subdim,
            }) => {
                let _ = write!(t, "data file: {format} {first} {last} {step}");
                if let Some(d) = subdim {
                    let _ = write!(t, " {d}");
                }
                t.push('\n');
            }
            Some(DataFile::List { files, subdim }) => {
                t.push_str("data file: LIST");
                if let Some(d) = subdim {
                    let _ = write!(t, " {d}");
                }
                t.push('\n');
                for f in files {
                    let _ = writeln!(t, "{}", one_line(f));
                }
            }
        }
        t
    }

    fn write_axis_numbers(&self, t: &mut String, name: &str, get: impl Fn(&Axis) -> Option<f64>) {
        if self.axes.iter().any(|a| get(a).is_some()) {
            let v: Vec<String> = self
                .axes
                .iter()
                .map(|a| get(a).map_or_else(|| "NaN".to_string(), fmt_f64))
                .collect();
            let _ = writeln!(t, "{name}: {}", v.join(" "));
        }
    }

    fn write_axis_strings(&self, t: &mut String, name: &str, get: impl Fn(&Axis) -> Option<&str>) {
        if self.axes.iter().any(|a| get(a).is_some()) {
            let _ = writeln!(
                t,
                "{name}: {}",
                quoted_list(self.axes.iter().map(|a| get(a).unwrap_or("")))
            );
        }
    }
}

/// The fields of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Field {
    Content,
    Number,
    Type,
    BlockSize,
    Dimension,
    Space,
    SpaceDimension,
    Sizes,
    Spacings,
    Thicknesses,
    AxisMins,
    AxisMaxs,
    SpaceDirections,
    Centers,
    Kinds,
    Labels,
    Units,
    Min,
    Max,
    OldMin,
    OldMax,
    Endian,
    Encoding,
    LineSkip,
    ByteSkip,
    SampleUnits,
    SpaceUnits,
    SpaceOrigin,
    MeasurementFrame,
    DataFile,
}

const FIELDS: [(Field, &str); 30] = [
    (Field::Content, "content"),
    (Field::Number, "number"),
    (Field::Type, "type"),
    (Field::BlockSize, "block size"),
    (Field::Dimension, "dimension"),
    (Field::Space, "space"),
    (Field::SpaceDimension, "space dimension"),
    (Field::Sizes, "sizes"),
    (Field::Spacings, "spacings"),
    (Field::Thicknesses, "thicknesses"),
    (Field::AxisMins, "axis mins"),
    (Field::AxisMaxs, "axis maxs"),
    (Field::SpaceDirections, "space directions"),
    (Field::Centers, "centers"),
    (Field::Kinds, "kinds"),
    (Field::Labels, "labels"),
    (Field::Units, "units"),
    (Field::Min, "min"),
    (Field::Max, "max"),
    (Field::OldMin, "old min"),
    (Field::OldMax, "old max"),
    (Field::Endian, "endian"),
    (Field::Encoding, "encoding"),
    (Field::LineSkip, "line skip"),
    (Field::ByteSkip, "byte skip"),
    (Field::SampleUnits, "sample units"),
    (Field::SpaceUnits, "space units"),
    (Field::SpaceOrigin, "space origin"),
    (Field::MeasurementFrame, "measurement frame"),
    (Field::DataFile, "data file"),
];

impl Field {
    fn name(self) -> &'static str {
        FIELDS.iter().find(|f| f.0 == self).map_or("?", |f| f.1)
    }

    /// Case-insensitive, with or without the spaces (`byteskip`), plus `centerings`.
    fn from_name(name: &str) -> Option<Field> {
        let want: String = name
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        if want == "centerings" {
            return Some(Field::Centers);
        }
        FIELDS
            .iter()
            .find(|f| f.1.replace(' ', "") == want)
            .map(|f| f.0)
    }
}

enum Line {
    Field(Field, String),
    KeyValue(String, String),
    UnknownField(String),
    Garbage,
}

/// Why `key` cannot be written as `key:=value` and read back as the same key, if it cannot:
/// an empty key, a key starting with `#` (a comment), or one whose line would read as a
/// field (`type: x`) or split elsewhere (`a:=b`).
pub(crate) fn key_problem(key: &str) -> Option<String> {
    let escaped = escape(key);
    let ok = !key.is_empty()
        && !key.starts_with('#')
        && !key.trim().is_empty()
        && matches!(classify(&format!("{escaped}:=v")), Line::KeyValue(k, _) if k == escaped);
    (!ok).then(|| format!("key '{}' cannot be written as 'key:=value'", shorten(key)))
}

fn classify(line: &str) -> Line {
    let field_split = line
        .find(": ")
        .map(|p| (&line[..p], &line[p + 2..]))
        .or_else(|| line.strip_suffix(':').map(|n| (n, "")));
    if let Some((name, desc)) = field_split {
        if let Some(f) = Field::from_name(name) {
            return Line::Field(f, desc.trim().to_string());
        }
    }
    if let Some(p) = line.find(":=") {
        return Line::KeyValue(line[..p].to_string(), line[p + 2..].to_string());
    }
    match field_split {
        Some((name, _)) => Line::UnknownField(name.to_string()),
        None => Line::Garbage,
    }
}

fn parse_magic(magic: &str) -> Result<u32, String> {
    let magic = magic.trim_end();
    let Some(rest) = magic.strip_prefix("NRRD") else {
        return Err(format!(
            "not a NRRD file: the first line is '{}', not the magic NRRD000X",
            shorten(magic)
        ));
    };
    if rest == "00.01" {
        return Ok(1);
    }
    match rest.parse::<u32>() {
        Ok(v @ 1..=5) if rest.len() == 4 => Ok(v),
        Ok(v) if rest.len() == 4 => Err(format!(
            "NRRD format version {v} (magic '{magic}') is not supported: this reader knows NRRD0001 to NRRD0005"
        )),
        _ => Err(format!("bad NRRD magic '{}'", shorten(magic))),
    }
}

fn is_list(desc: &str) -> bool {
    desc == "LIST" || desc.starts_with("LIST ") || desc.starts_with("LIST\t")
}

/// Turns the raw field list into a checked header.
fn interpret(
    version: u32,
    fields: &[(Field, String)],
    list_files: Option<Vec<String>>,
) -> Result<Header, String> {
    let get = |f: Field| fields.iter().find(|x| x.0 == f).map(|x| x.1.as_str());
    let require =
        |f: Field| get(f).ok_or_else(|| format!("required field '{}' is missing", f.name()));

    let dim_text = require(Field::Dimension)?;
    let dim: usize = dim_text
        .parse()
        .map_err(|_| format!("dimension '{dim_text}' is not a whole number"))?;
    if !(1..=MAX_DIMENSION).contains(&dim) {
        return Err(format!(
            "dimension {dim} is out of range (1 to {MAX_DIMENSION})"
        ));
    }

    let type_text = require(Field::Type)?;
    let mut data_type =
        DataType::parse(type_text).ok_or_else(|| format!("unknown type '{type_text}'"))?;
    if data_type == DataType::Block(0) {
        let bs = get(Field::BlockSize).ok_or("type 'block' needs a 'block size' field")?;
        let n: usize = bs
            .parse()
            .map_err(|_| format!("block size '{bs}' is not a whole number"))?;
        if !(1..=MAX_BLOCK_SIZE).contains(&n) {
            return Err(format!(
                "block size {n} is out of range (1 to {MAX_BLOCK_SIZE})"
            ));
        }
        data_type = DataType::Block(n);
    }

    let enc_text = require(Field::Encoding)?;
    let encoding =
        Encoding::parse(enc_text).ok_or_else(|| format!("unknown encoding '{enc_text}'"))?;
    if encoding == Encoding::Ascii && matches!(data_type, DataType::Block(_)) {
        return Err("type 'block' cannot be stored in ascii encoding".into());
    }

    let endian = match get(Field::Endian) {
        None => None,
        Some(e) => Some(match e.to_ascii_lowercase().as_str() {
            "little" => Endian::Little,
            "big" => Endian::Big,
            _ => return Err(format!("unknown endian '{e}' (expected little or big)")),
        }),
    };
    let needs_endian = data_type.size() > 1
        && encoding.exposes_bytes()
        && !matches!(data_type, DataType::Block(_));
    if needs_endian && endian.is_none() {
        return Err(format!(
            "required field 'endian' is missing (needed for {}-byte '{}' samples in {} encoding)",
            data_type.size(),
            data_type.nrrd_name(),
            encoding.name()
        ));
    }

    let sizes_text = require(Field::Sizes)?;
    let sizes = parse_words(sizes_text, dim, "sizes")?;
    let mut axes = Vec::with_capacity(dim);
    for s in sizes {
        let n: usize = s
            .parse()
            .map_err(|_| format!("size '{s}' in 'sizes' is not a whole number"))?;
        if n == 0 {
            return Err("sizes must be at least 1 (found 0)".into());
        }
        axes.push(Axis::new(n));
    }

    // Space: a named space or a bare dimension (they must agree when both are given).
    let space = match get(Field::Space) {
        None => None,
        Some(s) => Some(Space::parse(s).ok_or_else(|| format!("unknown space '{s}'"))?),
    };
    let mut space_dimension = space.map_or(0, Space::dimension);
    if let Some(sd) = get(Field::SpaceDimension) {
        let n: usize = sd
            .parse()
            .map_err(|_| format!("space dimension '{sd}' is not a whole number"))?;
        if !(1..=MAX_SPACE_DIMENSION).contains(&n) {
            return Err(format!(
                "space dimension {n} is out of range (1 to {MAX_SPACE_DIMENSION})"
            ));
        }
        if space_dimension != 0 && space_dimension != n {
            return Err(format!(
                "space dimension {n} contradicts space '{}' ({space_dimension}-D)",
                get(Field::Space).unwrap_or_default()
            ));
        }
        space_dimension = n;
    }
    let need_space = |f: Field| {
        if space_dimension == 0 {
            Err(format!(
                "field '{}' needs a 'space' or 'space dimension' field",
                f.name()
            ))
        } else {
            Ok(())
        }
    };

    if let Some(text) = get(Field::Spacings) {
        for (a, v) in parse_numbers(text, dim, "spacings")?
            .into_iter()
            .enumerate()
        {
            axes[a].spacing = v;
        }
    }
    if let Some(text) = get(Field::Thicknesses) {
        for (a, v) in parse_numbers(text, dim, "thicknesses")?
            .into_iter()
            .enumerate()
        {
            axes[a].thickness = v;
        }
    }
    if let Some(text) = get(Field::AxisMins) {
        for (a, v) in parse_numbers(text, dim, "axis mins")?
            .into_iter()
            .enumerate()
        {
            axes[a].min = v;
        }
    }
    if let Some(text) = get(Field::AxisMaxs) {
        for (a, v) in parse_numbers(text, dim, "axis maxs")?
            .into_iter()
            .enumerate()
        {
            axes[a].max = v;
        }
    }
    if let Some(text) = get(Field::Centers) {
        for (a, w) in parse_words(text, dim, "centers")?.into_iter().enumerate() {
            axes[a].center = match w.to_ascii_lowercase().as_str() {
                "cell" => Some(Center::Cell),
                "node" => Some(Center::Node),
                "???" | "none" => None,
                _ => return Err(format!("unknown center '{w}' (expected cell, node or ???)")),
            };
        }
    }
    if let Some(text) = get(Field::Kinds) {
        for (a, w) in parse_words(text, dim, "kinds")?.into_iter().enumerate() {
            if w == "???" || w.eq_ignore_ascii_case("none") {
                continue;
            }
            let kind = Kind::parse(w).ok_or_else(|| format!("unknown kind '{w}'"))?;
            if let Some(n) = kind.required_size() {
                if axes[a].size != n {
                    return Err(format!(
                        "axis {a} has kind '{}', which needs size {n}, but its size is {}",
                        kind.name(),
                        axes[a].size
                    ));
                }
            }
            axes[a].kind = Some(kind);
        }
    }
    if let Some(text) = get(Field::Labels) {
        for (a, s) in parse_quoted(text, dim, "labels")?.into_iter().enumerate() {
            axes[a].label = (!s.is_empty()).then_some(s);
        }
    }
    if let Some(text) = get(Field::Units) {
        for (a, s) in parse_quoted(text, dim, "units")?.into_iter().enumerate() {
            axes[a].unit = (!s.is_empty()).then_some(s);
        }
    }
    if let Some(text) = get(Field::SpaceDirections) {
        need_space(Field::SpaceDirections)?;
        let dirs = parse_vectors(text, "space directions")?;
        if dirs.len() != dim {
            return Err(format!(
                "space directions has {} entries but dimension is {dim}",
                dirs.len()
            ));
        }
        for (a, d) in dirs.into_iter().enumerate() {
            if let Some(v) = &d {
                if v.len() != space_dimension {
                    return Err(format!(
                        "space direction of axis {a} has {} components but the space is {space_dimension}-D",
                        v.len()
                    ));
                }
            }
            axes[a].space_direction = d;
        }
    }
    let space_units = match get(Field::SpaceUnits) {
        None => None,
        Some(text) => {
            need_space(Field::SpaceUnits)?;
            Some(parse_quoted(text, space_dimension, "space units")?)
        }
    };
    let space_origin = match get(Field::SpaceOrigin) {
        None => None,
        Some(text) => {
            need_space(Field::SpaceOrigin)?;
            let v = parse_vectors(text, "space origin")?;
            match v.as_slice() {
                [Some(o)] if o.len() == space_dimension => Some(o.clone()),
                [None] => None,
                _ => {
                    return Err(format!(
                        "space origin '{}' is not one vector of {space_dimension} numbers",
                        shorten(text)
                    ))
                }
            }
        }
    };
    let measurement_frame = match get(Field::MeasurementFrame) {
        None => None,
        Some(text) => {
            need_space(Field::MeasurementFrame)?;
            let v = parse_vectors(text, "measurement frame")?;
            if v.len() != space_dimension
                || v.iter()
                    .any(|c| c.as_ref().is_none_or(|c| c.len() != space_dimension))
            {
                return Err(format!(
                    "measurement frame '{}' is not {space_dimension} vectors of {space_dimension} numbers",
                    shorten(text)
                ));
            }
            Some(v.into_iter().flatten().collect())
        }
    };

    let number = |f: Field| -> Result<Option<f64>, String> {
        match get(f) {
            None => Ok(None),
            Some(t) => parse_f64(t)
                .map(|v| (!v.is_nan()).then_some(v))
                .ok_or_else(|| format!("{} '{t}' is not a number", f.name())),
        }
    };

    let line_skip = match get(Field::LineSkip) {
        None => 0,
        Some(t) => {
            let n: i64 = t
                .parse()
                .map_err(|_| format!("line skip '{t}' is not a whole number"))?;
            u64::try_from(n).map_err(|_| format!("line skip {n} is negative"))?
        }
    };
    let byte_skip = match get(Field::ByteSkip) {
        None => ByteSkip::Bytes(0),
        Some(t) => {
            let n: i64 = t
                .parse()
                .map_err(|_| format!("byte skip '{t}' is not a whole number"))?;
            match n {
                -1 => ByteSkip::FromEnd,
                n if n < -1 => {
                    return Err(format!(
                        "byte skip {n} is invalid: only -1 (data at the end of the file) or a count >= 0 is allowed"
                    ))
                }
                n => ByteSkip::Bytes(n as u64),
            }
        }
    };
    if byte_skip == ByteSkip::FromEnd && matches!(encoding, Encoding::Ascii | Encoding::Hex) {
        return Err(format!(
            "byte skip -1 cannot be used with {} encoding (only raw, gzip, bzip2)",
            encoding.name()
        ));
    }
    let data_file = match get(Field::DataFile) {
        None => None,
        Some(text) => Some(parse_data_file(text, list_files, dim)?),
    };

    Ok(Header {
        version,
        data_type,
        axes,
        encoding,
        endian,
        space,
        space_dimension,
        space_units,
        space_origin,
        measurement_frame,
        content: get(Field::Content).map(str::to_string),
        sample_units: get(Field::SampleUnits).map(str::to_string),
        min: number(Field::Min)?,
        max: number(Field::Max)?,
        old_min: number(Field::OldMin)?,
        old_max: number(Field::OldMax)?,
        number: get(Field::Number).map(str::to_string),
        line_skip,
        byte_skip,
        data_file,
        key_values: Vec::new(),
    })
}

fn parse_data_file(
    text: &str,
    list_files: Option<Vec<String>>,
    dim: usize,
) -> Result<DataFile, String> {
    let check_subdim = |s: &str| -> Result<usize, String> {
        let d: usize = s
            .parse()
            .map_err(|_| format!("data file sub-dimension '{s}' is not a whole number"))?;
        if !(1..=dim).contains(&d) {
            return Err(format!(
                "data file sub-dimension {d} is out of range (1 to dimension {dim})"
            ));
        }
        Ok(d)
    };
    if let Some(files) = list_files {
        let words: Vec<&str> = text.split_whitespace().collect();
        let subdim = match words.as_slice() {
            ["LIST"] => None,
            ["LIST", d] => Some(check_subdim(d)?),
            _ => return Err(format!("bad 'data file: {}'", shorten(text))),
        };
        if files.is_empty() {
            return Err("'data file: LIST' is not followed by any file name".into());
        }
        return Ok(DataFile::List { files, subdim });
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    if (4..=5).contains(&words.len()) && words[0].contains('%') {
        let ints: Option<Vec<i64>> = words[1..4].iter().map(|w| w.parse().ok()).collect();
        if let Some(ints) = ints {
            let (first, last, step) = (ints[0], ints[1], ints[2]);
            if step == 0 || (step > 0 && first > last) || (step < 0 && first < last) {
                return Err(format!(
                    "data file numbering '{first} {last} {step}' never reaches its end"
                ));
            }
            format_file_number(words[0], first)?;
            let subdim = match words.get(4) {
                Some(d) => Some(check_subdim(d)?),
                None => None,
            };
            return Ok(DataFile::Pattern {
                format: words[0].to_string(),
                first,
                last,
                step,
                subdim,
            });
        }
    }
    if text.is_empty() {
        return Err("'data file' names no file".into());
    }
    Ok(DataFile::Single(text.to_string()))
}

/// Formats the one integer conversion of a `data file` pattern (`%d`, `%i`, `%u`, with
/// optional flags `0`, `-`, `+`, space, and a width; `%%` is a literal `%`).
pub(crate) fn format_file_number(format: &str, n: i64) -> Result<String, String> {
    let bad = || format!("data file pattern '{format}' needs exactly one %d conversion");
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut done = false;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        if done {
            return Err(bad());
        }
        let (mut zero, mut left, mut plus, mut space) = (false, false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '0' => zero = true,
                '-' => left = true,
                '+' => plus = true,
                ' ' => space = true,
                _ => break,
            }
            chars.next();
        }
        let mut width = 0usize;
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            width = width.saturating_mul(10).saturating_add(d as usize);
            chars.next();
        }
        if width > 64 {
            return Err(format!("data file pattern '{format}' has a width above 64"));
        }
        match chars.next() {
            Some('d' | 'i' | 'u') => {}
            _ => return Err(bad()),
        }
        let digits = n.unsigned_abs().to_string();
        let sign = if n < 0 {
            "-"
        } else if plus {
            "+"
        } else if space {
            " "
        } else {
            ""
        };
        let len = sign.len() + digits.len();
        let pad = width.saturating_sub(len);
        if left {
            out.push_str(sign);
            out.push_str(&digits);
            out.extend(std::iter::repeat_n(' ', pad));
        } else if zero {
            out.push_str(sign);
            out.extend(std::iter::repeat_n('0', pad));
            out.push_str(&digits);
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(sign);
            out.push_str(&digits);
        }
        done = true;
    }
    if done {
        Ok(out)
    } else {
        Err(bad())
    }
}

/// Splits on white space and checks there are exactly `n` words.
fn parse_words<'a>(text: &'a str, n: usize, field: &str) -> Result<Vec<&'a str>, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() != n {
        return Err(format!(
            "'{field}' has {} entries but dimension is {n}: '{}'",
            words.len(),
            shorten(text)
        ));
    }
    Ok(words)
}

/// `n` numbers where `nan` means unknown (`None`).
fn parse_numbers(text: &str, n: usize, field: &str) -> Result<Vec<Option<f64>>, String> {
    parse_words(text, n, field)?
        .into_iter()
        .map(|w| {
            parse_f64(w)
                .map(|v| (!v.is_nan()).then_some(v))
                .ok_or_else(|| format!("'{w}' in '{field}' is not a number"))
        })
        .collect()
}

/// A floating-point number as C's `strtod` would read it (also `nan`, `inf`, `-inf`).
pub(crate) fn parse_f64(text: &str) -> Option<f64> {
    let t = text.trim();
    t.parse::<f64>()
        .ok()
        .or_else(|| match t.to_ascii_lowercase().as_str() {
            "pinf" | "+inf" => Some(f64::INFINITY),
            "ninf" => Some(f64::NEG_INFINITY),
            "-nan" | "+nan" => Some(f64::NAN),
            _ => None,
        })
}

/// Vectors `(a,b,c)` and the word `none`, separated by white space.
fn parse_vectors(text: &str, field: &str) -> Result<Vec<Option<Vec<f64>>>, String> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('(') {
            let end = inner
                .find(')')
                .ok_or_else(|| format!("'{field}' has a '(' without ')': '{}'", shorten(text)))?;
            let v = inner[..end]
                .split(',')
                .map(|x| {
                    parse_f64(x)
                        .ok_or_else(|| format!("'{}' in '{field}' is not a number", x.trim()))
                })
                .collect::<Result<Vec<f64>, String>>()?;
            out.push(Some(v));
            rest = inner[end + 1..].trim_start();
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '(')
                .unwrap_or(rest.len());
            let word = &rest[..end];
            if !word.eq_ignore_ascii_case("none") {
                return Err(format!(
                    "'{word}' in '{field}' is neither a vector '(x,y,z)' nor 'none'"
                ));
            }
            out.push(None);
            rest = rest[end..].trim_start();
        }
        if out.len() > MAX_DIMENSION.max(MAX_SPACE_DIMENSION) {
            return Err(format!("'{field}' has too many vectors"));
        }
    }
    Ok(out)
}

/// `n` double-quoted strings (`\"` inside a string is a quote).
fn parse_quoted(text: &str, n: usize, field: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some('"') => {}
            Some(c) => {
                return Err(format!(
                    "'{field}' must be double-quoted strings, found '{c}' in '{}'",
                    shorten(text)
                ))
            }
        }
        let mut s = String::new();
        loop {
            match chars.next() {
                None => return Err(format!("'{field}' has an unterminated string")),
                Some('"') => break,
                Some('\\') if chars.peek() == Some(&'"') => {
                    chars.next();
                    s.push('"');
                }
                Some(c) => s.push(c),
            }
        }
        out.push(s);
    }
    if out.len() != n {
        return Err(format!(
            "'{field}' has {} entries but needs {n}: '{}'",
            out.len(),
            shorten(text)
        ));
    }
    Ok(out)
}

fn quoted_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items
        .map(|s| format!("\"{}\"", one_line(s).replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Undoes Teem's key/value escapes: `\n` is a newline and `\\` a backslash; any other
/// backslash stays as it is.
pub(crate) fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('n') => {
                    chars.next();
                    out.push('\n');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Teem's key/value escapes: a backslash becomes `\\`, a newline `\n`. A carriage return,
/// which the format cannot carry, becomes a space.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Field descriptions are single lines: line breaks become spaces.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// The shortest text that reads back to the same `f64` (`1`, `0.5`, `1e-7`, `NaN`).
pub(crate) fn fmt_f64(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else if x == 0.0 {
        "0".into()
    } else {
        let s = format!("{x:?}");
        match s.strip_suffix(".0") {
            Some(t) => t.to_string(),
            None => s,
        }
    }
}

/// `(a,b,c)`.
pub(crate) fn fmt_vector(v: &[f64]) -> String {
    let parts: Vec<String> = v.iter().map(|&x| fmt_f64(x)).collect();
    format!("({})", parts.join(","))
}

/// A line cut to a length fit for an error message.
pub(crate) fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str =
        "NRRD0004\ntype: short\ndimension: 3\nsizes: 2 3 4\nendian: little\nencoding: raw\n";

    fn parse(extra: &str) -> Result<Header, String> {
        Header::parse(&format!("{MINIMAL}{extra}"))
    }

    #[test]
    fn every_type_spelling_parses() {
        for (names, t) in [
            ("signed char|int8|int8_t", DataType::I8),
            ("uchar|unsigned char|uint8|uint8_t", DataType::U8),
            ("short|short int|signed short|signed short int|int16|int16_t", DataType::I16),
            ("ushort|unsigned short|unsigned short int|uint16|uint16_t", DataType::U16),
            ("int|signed int|int32|int32_t", DataType::I32),
            ("uint|unsigned int|uint32|uint32_t", DataType::U32),
            (
                "longlong|long long|long long int|signed long long|signed long long int|int64|int64_t",
                DataType::I64,
            ),
            (
                "ulonglong|unsigned long long|unsigned long long int|uint64|uint64_t",
                DataType::U64,
            ),
            ("float|FLOAT", DataType::F32),
            ("double", DataType::F64),
        ] {
            for name in names.split('|') {
                assert_eq!(DataType::parse(name), Some(t), "{name}");
            }
            assert_eq!(DataType::parse(t.nrrd_name()), Some(t));
        }
        assert_eq!(DataType::parse("unsigned   SHORT"), Some(DataType::U16));
        assert_eq!(DataType::parse("complex"), None);
    }

    #[test]
    fn field_names_are_case_and_space_insensitive() {
        let h = Header::parse(
            "NRRD0005\r\nTYPE: uchar\r\nDimension: 2\r\nsizes: 2 2\r\nEncoding: RAW\r\n\
             ByteSkip: 3\r\nlineskip: 1\r\ncenterings: cell node\r\nAxisMins: 0 1\r\n\r\ntrailing",
        )
        .unwrap();
        assert_eq!(h.version, 5);
        assert_eq!(h.byte_skip, ByteSkip::Bytes(3));
        assert_eq!(h.line_skip, 1);
        assert_eq!(h.axes[1].center, Some(Center::Node));
        assert_eq!(h.axes[1].min, Some(1.0));
    }

    #[test]
    fn key_values_are_unescaped_and_byte_skip_pair_is_not_a_field() {
        let h = parse(
            "byte skip:= -1\nnote:=line one\\nline two \\\\ end\nsame:=1\nsame:=2\nodd: key:=v\n",
        )
        .unwrap();
        assert_eq!(h.byte_skip, ByteSkip::Bytes(0));
        assert_eq!(h.key_value("byte skip"), Some(" -1"));
        assert_eq!(h.key_value("note"), Some("line one\nline two \\ end"));
        assert_eq!(h.key_value("same"), Some("2"));
        assert_eq!(h.key_value("odd: key"), Some("v"));
        let text = h.to_text();
        assert!(
            text.contains("note:=line one\\nline two \\\\ end\n"),
            "{text}"
        );
        assert_eq!(Header::parse(&text).unwrap(), h);
    }

    #[test]
    fn comments_and_spaces_are_ignored() {
        let h = parse("# a comment: with a colon\nspacings:   1.5   NaN 2  \n").unwrap();
        assert_eq!(h.axes[0].spacing, Some(1.5));
        assert_eq!(h.axes[1].spacing, None);
    }

    #[test]
    fn space_fields_parse() {
        let h = parse(
            "space: RAS\nspace directions: (1, 0,0) none (0,0,-2.5e0)\nspace origin: ( 1,2,3)\n\
             space units: \"mm\" \"mm\" \"\"\nmeasurement frame: (1,0,0) (0,1,0) (0,0,1)\n",
        )
        .unwrap();
        assert_eq!(h.space, Some(Space::RightAnteriorSuperior));
        assert_eq!(h.space_dimension, 3);
        assert_eq!(h.axes[0].space_direction, Some(vec![1.0, 0.0, 0.0]));
        assert_eq!(h.axes[1].space_direction, None);
        assert_eq!(h.axes[2].space_direction, Some(vec![0.0, 0.0, -2.5]));
        assert_eq!(h.space_origin, Some(vec![1.0, 2.0, 3.0]));
        assert_eq!(h.space_units.as_ref().unwrap()[2], "");
        assert_eq!(
            h.measurement_frame.as_ref().unwrap()[2],
            vec![0.0, 0.0, 1.0]
        );
        assert_eq!(Header::parse(&h.to_text()).unwrap(), h);
        for (name, space) in [
            ("right-anterior-superior", Space::RightAnteriorSuperior),
            ("LAS", Space::LeftAnteriorSuperior),
            ("left posterior superior", Space::LeftPosteriorSuperior),
            ("RAST", Space::RightAnteriorSuperiorTime),
            (
                "left-posterior-superior-time",
                Space::LeftPosteriorSuperiorTime,
            ),
            ("scanner-xyz", Space::ScannerXyz),
            ("scanner-xyz-time", Space::ScannerXyzTime),
            ("3D-right-handed", Space::RightHanded3D),
            ("3d-left-handed-time", Space::LeftHanded3DTime),
        ] {
            assert_eq!(Space::parse(name), Some(space), "{name}");
        }
        let h = parse("space dimension: 2\nspace directions: (1,0) (0,1) none\n").unwrap();
        assert_eq!((h.space, h.space_dimension), (None, 2));
        assert!(parse("space directions: (1,0,0) (0,1,0) (0,0,1)\n")
            .unwrap_err()
            .contains("needs a 'space'"));
        assert!(
            parse("space: LPS\nspace directions: (1,0) (0,1,0) (0,0,1)\n")
                .unwrap_err()
                .contains("2 components")
        );
        assert!(parse("space: LPS\nspace dimension: 4\n")
            .unwrap_err()
            .contains("contradicts"));
    }

    #[test]
    fn quoted_labels_and_kinds_parse() {
        let h = parse("labels: \"x\" \"a \\\"q\\\" b\" \"\"\nkinds: domain SPACE ???\nunits: \"mm\" \"cm\" \"s\"\n")
            .unwrap();
        assert_eq!(h.axes[1].label.as_deref(), Some("a \"q\" b"));
        assert_eq!(h.axes[2].label, None);
        assert_eq!(h.axes[1].kind, Some(Kind::Space));
        assert_eq!(h.axes[2].kind, None);
        assert_eq!(Header::parse(&h.to_text()).unwrap(), h);
        assert!(parse("kinds: domain domain 3-vector\n")
            .unwrap_err()
            .contains("needs size 3"));
        assert!(parse("kinds: domain bogus domain\n")
            .unwrap_err()
            .contains("'bogus'"));
        assert!(parse("labels: x y z\n")
            .unwrap_err()
            .contains("double-quoted"));
    }

    #[test]
    fn data_file_forms_parse() {
        let h = parse("data file: ./dir/ball data.raw\n").unwrap();
        assert_eq!(
            h.data_file,
            Some(DataFile::Single("./dir/ball data.raw".into()))
        );
        let h = parse("data file: s%03d.raw 1 4 1 2\n").unwrap();
        assert_eq!(
            h.data_file,
            Some(DataFile::Pattern {
                format: "s%03d.raw".into(),
                first: 1,
                last: 4,
                step: 1,
                subdim: Some(2)
            })
        );
        let h = parse("data file: LIST\na.raw\nb.raw\n\nignored").unwrap();
        assert_eq!(
            h.data_file,
            Some(DataFile::List {
                files: vec!["a.raw".into(), "b.raw".into()],
                subdim: None
            })
        );
        assert_eq!(Header::parse(&h.to_text()).unwrap(), h);
        assert!(parse("data file: s%d.raw 4 1 1\n")
            .unwrap_err()
            .contains("never reaches"));
        assert!(parse("data file: LIST 7\na\n")
            .unwrap_err()
            .contains("out of range"));
        assert!(parse("data file: LIST\n")
            .unwrap_err()
            .contains("not followed"));
    }

    #[test]
    fn file_numbers_format_like_printf() {
        assert_eq!(format_file_number("s%03d.raw", 7).unwrap(), "s007.raw");
        assert_eq!(format_file_number("s%d.raw", -7).unwrap(), "s-7.raw");
        assert_eq!(format_file_number("%-3d|", 7).unwrap(), "7  |");
        assert_eq!(format_file_number("%3i|100%%", 7).unwrap(), "  7|100%");
        assert!(format_file_number("%s", 1).is_err());
        assert!(format_file_number("%d%d", 1).is_err());
        assert!(format_file_number("plain", 1).is_err());
    }

    #[test]
    fn bad_headers_are_refused_with_the_value() {
        let bad = |text: &str, needle: &str| {
            let e = Header::parse(text).unwrap_err();
            assert!(e.contains(needle), "{e:?} should contain {needle:?}");
        };
        bad("PNG\n", "not a NRRD file");
        bad("NRRD0006\ntype: short\n", "version 6");
        bad("NRRDxyz\n", "bad NRRD magic");
        bad("NRRD0004\ntype: short\n", "'dimension' is missing");
        bad(&format!("{MINIMAL}type: float\n"), "appears twice");
        bad(&format!("{MINIMAL}colour: red\n"), "unknown field 'colour'");
        bad(&format!("{MINIMAL}no separator\n"), "neither");
        bad(
            &format!("{MINIMAL}byte skip: -5\n"),
            "byte skip -5 is invalid",
        );
        bad(
            &format!("{MINIMAL}line skip: -1\n"),
            "line skip -1 is negative",
        );
        bad(&format!("{MINIMAL}spacings: 1 2\n"), "has 2 entries");
        bad(
            "NRRD0004\ntype: short\ndimension: 1\nsizes: 3\nencoding: raw\n",
            "'endian' is missing",
        );
        bad(
            "NRRD0004\ntype: quaternion\ndimension: 1\nsizes: 3\nencoding: raw\n",
            "unknown type 'quaternion'",
        );
        bad(
            "NRRD0004\ntype: uchar\ndimension: 1\nsizes: 3\nencoding: zip\n",
            "unknown encoding 'zip'",
        );
        bad(
            "NRRD0004\ntype: uchar\ndimension: 17\nsizes: 3\nencoding: raw\n",
            "dimension 17",
        );
        bad(
            "NRRD0004\ntype: uchar\ndimension: 1\nsizes: 0\nencoding: raw\n",
            "at least 1",
        );
        bad(
            "NRRD0004\ntype: block\ndimension: 1\nsizes: 3\nencoding: raw\n",
            "block size",
        );
        bad(
            "NRRD0004\ntype: uchar\ndimension: 1\nsizes: 3\nencoding: ascii\nbyte skip: -1\n",
            "cannot be used with ascii",
        );
    }

    #[test]
    fn keys_that_would_read_back_differently_are_caught() {
        assert!(key_problem("DWMRI_b-value").is_none());
        assert!(key_problem("a b: c").is_none());
        for bad in ["", " ", "#note", "a:=b", "type: x", "sizes"] {
            let looks_like_field = bad == "sizes";
            assert_eq!(key_problem(bad).is_some(), !looks_like_field, "{bad:?}");
        }
    }

    #[test]
    fn block_type_carries_its_size() {
        let h = Header::parse(
            "NRRD0004\ntype: block\nblock size: 6\ndimension: 1\nsizes: 3\nencoding: raw\n",
        )
        .unwrap();
        assert_eq!(h.data_type, DataType::Block(6));
        assert_eq!(h.data_bytes(), Some(18));
        assert!(h.to_text().contains("block size: 6\n"));
    }

    #[test]
    fn numbers_are_written_shortest_and_exact() {
        for x in [
            1.0,
            -0.5,
            0.1,
            1e-7,
            1.2345678901234567e300,
            -3.04687595367432,
            9.999999999999996,
        ] {
            assert_eq!(fmt_f64(x).parse::<f64>().unwrap(), x);
        }
        assert_eq!(fmt_f64(1.0), "1");
        assert_eq!(fmt_f64(-0.0), "0");
        assert_eq!(fmt_vector(&[1.0, 0.5, -2.0]), "(1,0.5,-2)");
    }

    #[test]
    fn values_with_newlines_survive_escaping() {
        let mut h = Header::new(DataType::U8, &[1]);
        h.set_key_value("a\\b", "x\ny\\n");
        h.content = Some("two\nlines".into());
        let back = Header::parse(&h.to_text()).unwrap();
        assert_eq!(back.key_value("a\\b"), Some("x\ny\\n"));
        assert_eq!(back.content.as_deref(), Some("two lines"));
    }
}
