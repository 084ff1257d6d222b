//! Developer entry point for the Fast GrowCut kernel (Slicer's Grow from seeds), used by
//! `slicer-extension/tests/test_parity_grow_from_seeds.py` and
//! `benches/bench_grow_from_seeds.py` to run it on exactly the box and seeds given to
//! Slicer's `vtkImageGrowCutSegment`, and to time a first computation and an incremental
//! update in one process (the engine keeps the state between previews the same way).
//!
//! ```text
//! cargo run --release --example grow_from_seeds -- --type i16 --dims I J K \
//!     --spacing 1 1 1 --locality 0 [--locked locked.raw] [--time] \
//!     voxels.raw seeds.raw out.raw [seeds2.raw out2.raw ...]
//! ```
//!
//! Raw files hold `I * J * K` little-endian values, `i` fastest (NRRD / VTK order): the
//! voxels of `--type`, the seeds and outputs as `u16` labels (0 = none), `locked.raw` as
//! `u8` (non-zero = locked). Each further `seedsN.raw outN.raw` pair is an update of the
//! same state (incremental when only seeds were added). `--time` prints one JSON line per
//! computation on stderr: `{"update": n, "seconds": S}`, the kernel's time alone (no file
//! I/O).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use ndarray::Array3;
use segkit::effects::Control;
use segkit::kernels::growcut::{GrowCut, Intensity};

#[derive(Parser)]
#[command(about = "Fast GrowCut (Slicer's Grow from seeds) on raw little-endian volumes")]
struct Args {
    /// Voxel type: u8, i8, u16, i16, u32, i32, f32, f64.
    #[arg(long = "type")]
    kind: String,
    /// Sizes along i, j, k.
    #[arg(long, num_args = 3)]
    dims: Vec<usize>,
    /// Voxel spacing along i, j, k in mm.
    #[arg(long, num_args = 3, default_values_t = [1.0, 1.0, 1.0])]
    spacing: Vec<f64>,
    /// Slicer's SeedLocalityFactor.
    #[arg(long, default_value_t = 0.0)]
    locality: f64,
    /// Locked voxels (u8, non-zero = locked).
    #[arg(long)]
    locked: Option<PathBuf>,
    /// Print the kernel's time of each computation on stderr.
    #[arg(long)]
    time: bool,
    /// The voxels.
    voxels: PathBuf,
    /// Pairs `seeds.raw out.raw`, one per computation.
    #[arg(num_args = 2.., required = true)]
    pairs: Vec<PathBuf>,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grow_from_seeds: {e}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &Path, n: usize, size: usize) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() != n * size {
        return Err(format!(
            "{}: {} bytes, expected {n} x {size}",
            path.display(),
            bytes.len()
        ));
    }
    Ok(bytes)
}

fn run(args: &Args) -> Result<(), String> {
    macro_rules! typed {
        ($t:ty) => {{
            let size = std::mem::size_of::<$t>();
            let n: usize = args.dims.iter().product();
            let bytes = read(&args.voxels, n, size)?;
            let values: Vec<$t> = bytes
                .chunks_exact(size)
                .map(|b| <$t>::from_le_bytes(b.try_into().expect("chunk of the type's size")))
                .collect();
            grow(args, values)
        }};
    }
    match args.kind.as_str() {
        "u8" => typed!(u8),
        "i8" => typed!(i8),
        "u16" => typed!(u16),
        "i16" => typed!(i16),
        "u32" => typed!(u32),
        "i32" => typed!(i32),
        "f32" => typed!(f32),
        "f64" => typed!(f64),
        other => Err(format!("unknown --type {other}")),
    }
}

fn grow<T: Intensity>(args: &Args, values: Vec<T>) -> Result<(), String> {
    let [ni, nj, nk] = args.dims[..] else {
        return Err("--dims needs three sizes".into());
    };
    let [si, sj, sk] = args.spacing[..] else {
        return Err("--spacing needs three numbers".into());
    };
    if !args.pairs.len().is_multiple_of(2) {
        return Err("give seeds and output files in pairs".into());
    }
    let shape = (nk, nj, ni);
    let n = ni * nj * nk;
    let image = Array3::from_shape_vec(shape, values).map_err(|e| e.to_string())?;
    let locked = match &args.locked {
        Some(p) => Some(Array3::from_shape_vec(shape, read(p, n, 1)?).map_err(|e| e.to_string())?),
        None => None,
    };
    let mut state = GrowCut::new(args.locality);
    let control = Control::none();
    for (update, pair) in args.pairs.chunks_exact(2).enumerate() {
        let seeds: Vec<u16> = read(&pair[0], n, 2)?
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        let seeds = Array3::from_shape_vec(shape, seeds).map_err(|e| e.to_string())?;
        let start = Instant::now();
        let labels = state
            .update(
                image.view(),
                seeds.view(),
                locked.as_ref().map(|l| l.view()),
                [si, sj, sk],
                &control,
            )
            .map_err(|e| e.to_string())?;
        if args.time {
            eprintln!(
                "{{\"update\": {update}, \"seconds\": {}}}",
                start.elapsed().as_secs_f64()
            );
        }
        let bytes: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&pair[1], bytes).map_err(|e| format!("{}: {e}", pair[1].display()))?;
    }
    Ok(())
}
