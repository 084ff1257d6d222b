//! Developer entry point for `scripts/fuzz`: writes the seed corpus of the `mask` fuzz
//! target from real label maps, encoded by the engine's own codec.
//!
//! ```text
//! cargo run --example fuzz_mask_seeds -- OUT_DIR LABELS.nrrd [MORE.seg.nrrd ...]
//! ```
//!
//! For each file and each of its first labels, the block of at most 40 voxels a side that
//! starts at the label's first corner becomes a lattice (with a voxel of margin so the mask's
//! extent is a strict part of it), encoded bit-packed and run-length coded in the layout
//! `segkit::fuzzing::mask` reads. A few hand-made masks (empty, full, a checkerboard) are
//! written too.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ndarray::{s, Array3};
use segkit::fuzzing::mask_to_fuzz_input;
use segkit::service::{codec, pb};
use segkit::volume::Geometry;

/// Labels taken from each file.
const LABELS_PER_FILE: usize = 4;

/// Largest side of a seed's block, in voxels.
const BLOCK_VOXELS: usize = 40;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let Some((out, files)) = args.split_first() else {
        eprintln!("usage: fuzz_mask_seeds OUT_DIR LABELS.nrrd [MORE ...]");
        return ExitCode::FAILURE;
    };
    let mut seeds = hand_made();
    for file in files {
        match seeds_of(file) {
            Ok(mut more) => seeds.append(&mut more),
            Err(e) => eprintln!("fuzz_mask_seeds: skipping {e}"),
        }
    }
    if let Err(e) = std::fs::create_dir_all(out) {
        eprintln!("fuzz_mask_seeds: {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    for (n, mask) in seeds.iter().enumerate() {
        for encoding in [pb::MaskEncoding::Bits, pb::MaskEncoding::Runs] {
            let (nk, nj, ni) = mask.dim();
            let m = codec::mask_to_pb(mask.view(), &Geometry::default(), encoding);
            let path = out.join(format!("seed-{n:03}-{}", encoding.as_str_name()));
            if let Err(e) = std::fs::write(&path, mask_to_fuzz_input(&m, [ni, nj, nk])) {
                eprintln!("fuzz_mask_seeds: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{} mask seeds in {}", 2 * seeds.len(), out.display());
    ExitCode::SUCCESS
}

fn hand_made() -> Vec<Array3<u8>> {
    let empty = Array3::zeros((2, 3, 4));
    let full = Array3::from_elem((3, 3, 3), 1);
    let checkerboard = Array3::from_shape_fn((4, 5, 6), |(k, j, i)| ((k + j + i) % 2) as u8);
    vec![empty, full, checkerboard]
}

fn seeds_of(file: &Path) -> segkit::Result<Vec<Array3<u8>>> {
    let labels = segkit::io::open(file)?.into_volume().to_f64().data;
    let mut values: Vec<f64> = Vec::new();
    for &v in &labels {
        if v != 0.0 && !values.contains(&v) {
            values.push(v);
            if values.len() == LABELS_PER_FILE {
                break;
            }
        }
    }
    let mut seeds = Vec::new();
    for value in values {
        let Some((first, _)) = labels.indexed_iter().find(|&(_, &v)| v == value) else {
            continue;
        };
        let (k, j, i) = first;
        let (nk, nj, ni) = labels.dim();
        let block = labels.slice(s![
            k..(k + BLOCK_VOXELS).min(nk),
            j.saturating_sub(BLOCK_VOXELS / 2)..(j + BLOCK_VOXELS / 2).min(nj),
            i.saturating_sub(BLOCK_VOXELS / 2)..(i + BLOCK_VOXELS / 2).min(ni),
        ]);
        let (bk, bj, bi) = block.dim();
        let mut lattice = Array3::<u8>::zeros((bk + 2, bj + 2, bi + 2));
        lattice
            .slice_mut(s![1..bk + 1, 1..bj + 1, 1..bi + 1])
            .assign(&block.mapv(|v| u8::from(v == value)));
        seeds.push(lattice);
    }
    Ok(seeds)
}
