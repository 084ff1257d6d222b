//! NIfTI-1 orientation (qform and sform) to and from segkit's LPS [`Geometry`].
//!
//! NIfTI world coordinates are RAS+ millimetres, so `x` and `y` change sign on the way
//! in and out. The three methods of `nifti1.h`, in the order a reader prefers them:
//! - **sform** (`sform_code > 0`): a general 3x4 affine, `srow_x`, `srow_y`, `srow_z`;
//! - **qform** (`qform_code > 0`): a rotation as a unit quaternion `(a, b, c, d)` with
//!   `a = sqrt(1 - b² - c² - d²)`, voxel sizes `pixdim[1..=3]`, the handedness factor
//!   `qfac = pixdim[0]` (−1 flips k; 0 is read as 1, as nifti1_io does) and an offset;
//! - **method 1** (neither): `x = pixdim[1]·i`, `y = pixdim[2]·j`, `z = pixdim[3]·k`.
//!
//! A qform stores only `(b, c, d)` in float32, so rotations within about 0.04° of a half
//! turn come back snapped to it (`a` is below float32's resolution); the sform has no
//! such limit, which is one reason readers prefer it.
//!
//! A method whose numbers are not finite or describe a degenerate lattice is skipped for
//! the next one, so reading never fails because of the orientation. The quaternion is
//! converted here rather than by the `nifti` crate, whose `affine()` panics on
//! `pixdim[0] == 0` and on negative voxel sizes.

// Matrix code reads best with explicit row and column indices.
#![allow(clippy::needless_range_loop)]

use super::header::Header;
use crate::volume::{invert3, norm, Geometry};

/// The sign of each world axis between RAS (NIfTI) and LPS (segkit).
const RAS_TO_LPS: [f64; 3] = [-1.0, -1.0, 1.0];

/// Which of the three methods gave the geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Sform,
    Qform,
    /// "Method 1": voxel sizes only.
    Pixdim,
}

/// The geometry a header describes, and which method gave it.
pub(super) fn geometry_from_header(h: &Header) -> (Geometry, Method) {
    let scale = unit_scale_mm(h.xyzt_units);
    if h.sform_code > 0 {
        if let Some(g) = sform_geometry(h, scale) {
            return (g, Method::Sform);
        }
    }
    if h.qform_code > 0 {
        if let Some(g) = qform_geometry(h, scale) {
            return (g, Method::Qform);
        }
    }
    let spacing = [1, 2, 3].map(|n| voxel_size(h.pixdim[n]) * scale);
    let mut direction = [[0.0; 3]; 3];
    for r in 0..3 {
        direction[r][r] = RAS_TO_LPS[r];
    }
    let g = Geometry {
        origin: [0.0; 3],
        spacing,
        direction,
    };
    (g, Method::Pixdim)
}

/// Millimetres per unit of the spatial code in `xyzt_units` (1 metre, 2 mm, 3 micron);
/// an unknown unit (0 or anything else) is taken as millimetres, as ITK does.
fn unit_scale_mm(xyzt_units: u8) -> f64 {
    match xyzt_units & 0x07 {
        1 => 1000.0,
        3 => 0.001,
        _ => 1.0,
    }
}

/// A `pixdim` entry as a voxel size: nifti1_io reads zero, negative and non-finite as 1.
fn voxel_size(p: f32) -> f64 {
    if p.is_finite() && p > 0.0 {
        p as f64
    } else {
        1.0
    }
}

fn is_proper_lattice(g: &Geometry) -> bool {
    g.origin
        .iter()
        .chain(g.spacing.iter())
        .all(|v| v.is_finite())
        && g.direction.iter().flatten().all(|v| v.is_finite())
        && invert3(g.direction).is_some()
}

fn sform_geometry(h: &Header, scale: f64) -> Option<Geometry> {
    let mut steps = [[0.0; 3]; 3];
    let mut origin = [0.0; 3];
    for r in 0..3 {
        for a in 0..3 {
            steps[a][r] = RAS_TO_LPS[r] * h.srow[r][a] as f64 * scale;
        }
        origin[r] = RAS_TO_LPS[r] * h.srow[r][3] as f64 * scale;
    }
    Geometry::from_steps(origin, steps)
        .ok()
        .filter(is_proper_lattice)
}

fn qform_geometry(h: &Header, scale: f64) -> Option<Geometry> {
    let [b, c, d] = h.quatern.map(f64::from);
    let rotation = quaternion_to_rotation(b, c, d)?;
    let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
    let mut direction = [[0.0; 3]; 3];
    let mut origin = [0.0; 3];
    for r in 0..3 {
        for a in 0..3 {
            let flip = if a == 2 { qfac } else { 1.0 };
            direction[r][a] = RAS_TO_LPS[r] * rotation[r][a] * flip;
        }
        origin[r] = RAS_TO_LPS[r] * h.qoffset[r] as f64 * scale;
    }
    let spacing = [1, 2, 3].map(|n| voxel_size(h.pixdim[n]) * scale);
    Some(Geometry {
        origin,
        spacing,
        direction,
    })
    .filter(is_proper_lattice)
}

/// The rotation matrix of the unit quaternion `(a, b, c, d)`, `a` recovered from the
/// other three. When `b² + c² + d²` is 1 or more (rounding, or a sloppy writer), `a` is 0
/// and `(b, c, d)` is normalised, as nifti1_io does.
fn quaternion_to_rotation(b: f64, c: f64, d: f64) -> Option<[[f64; 3]; 3]> {
    if !(b.is_finite() && c.is_finite() && d.is_finite()) {
        return None;
    }
    let bcd = b * b + c * c + d * d;
    let (a, b, c, d) = if 1.0 - bcd < 1e-7 {
        let n = bcd.sqrt();
        (0.0, b / n, c / n, d / n)
    } else {
        ((1.0 - bcd).sqrt(), b, c, d)
    };
    Some([
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - b * b - c * c,
        ],
    ])
}

/// `(b, c, d)` of the unit quaternion of a rotation matrix, with `a ≥ 0` (Shepperd's
/// method: divide by the largest of the four candidates, for accuracy at every angle).
fn rotation_to_quaternion(r: [[f64; 3]; 3]) -> [f64; 3] {
    let trace = r[0][0] + r[1][1] + r[2][2];
    let (a, b, c, d) = if trace > 0.0 {
        let s = 2.0 * (trace + 1.0).sqrt(); // 4a
        (
            0.25 * s,
            (r[2][1] - r[1][2]) / s,
            (r[0][2] - r[2][0]) / s,
            (r[1][0] - r[0][1]) / s,
        )
    } else if r[0][0] > r[1][1] && r[0][0] > r[2][2] {
        let s = 2.0 * (1.0 + r[0][0] - r[1][1] - r[2][2]).sqrt(); // 4b
        (
            (r[2][1] - r[1][2]) / s,
            0.25 * s,
            (r[0][1] + r[1][0]) / s,
            (r[0][2] + r[2][0]) / s,
        )
    } else if r[1][1] > r[2][2] {
        let s = 2.0 * (1.0 + r[1][1] - r[0][0] - r[2][2]).sqrt(); // 4c
        (
            (r[0][2] - r[2][0]) / s,
            (r[0][1] + r[1][0]) / s,
            0.25 * s,
            (r[1][2] + r[2][1]) / s,
        )
    } else {
        let s = 2.0 * (1.0 + r[2][2] - r[0][0] - r[1][1]).sqrt(); // 4d
        (
            (r[1][0] - r[0][1]) / s,
            (r[0][2] + r[2][0]) / s,
            (r[1][2] + r[2][1]) / s,
            0.25 * s,
        )
    };
    if a < 0.0 {
        [-b, -c, -d]
    } else {
        [b, c, d]
    }
}

fn transpose(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut t = [[0.0; 3]; 3];
    for r in 0..3 {
        for c in 0..3 {
            t[r][c] = m[c][r];
        }
    }
    t
}

/// The rotation closest to `m` (the orthogonal factor of its polar decomposition), by
/// Newton's iteration `X ← (X + X⁻ᵀ) / 2`, which converges quadratically for any
/// non-singular matrix. `None` when `m` is singular.
fn nearest_rotation(m: [[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let mut x = m;
    for _ in 0..100 {
        let inv_t = transpose(invert3(x)?);
        let mut next = [[0.0; 3]; 3];
        let mut change: f64 = 0.0;
        for r in 0..3 {
            for c in 0..3 {
                next[r][c] = 0.5 * (x[r][c] + inv_t[r][c]);
                change = change.max((next[r][c] - x[r][c]).abs());
            }
        }
        x = next;
        if change < 1e-15 {
            break;
        }
    }
    Some(x)
}

/// The orientation fields written for a geometry, in RAS, as the header stores them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Xforms {
    pub srow: [[f32; 4]; 3],
    pub quatern: [f32; 3],
    pub qoffset: [f32; 3],
    /// `pixdim[0..=3]`: qfac, then the voxel sizes.
    pub pixdim: [f32; 4],
}

/// The sform (exact up to float32) and qform of a geometry. A sheared lattice has no
/// qform; it gets the qform of the nearest rotation, and readers that prefer the sform
/// (nibabel, segkit, ITK when the codes are equal) see the exact lattice. `Err` names
/// what makes the geometry unwritable.
pub(super) fn xforms_from_geometry(g: &Geometry) -> Result<Xforms, String> {
    let m = g.index_to_lps_matrix();
    let mut ras = [[0.0; 3]; 3];
    for r in 0..3 {
        for a in 0..3 {
            ras[r][a] = RAS_TO_LPS[r] * m[r][a];
        }
    }
    let mut srow = [[0.0f32; 4]; 3];
    for r in 0..3 {
        for a in 0..3 {
            srow[r][a] = ras[r][a] as f32;
        }
        srow[r][3] = (RAS_TO_LPS[r] * g.origin[r]) as f32;
    }
    if srow.iter().flatten().any(|v| !v.is_finite()) {
        return Err(format!(
            "origin {:?}, spacing {:?} or direction {:?} is not finite in float32",
            g.origin, g.spacing, g.direction
        ));
    }
    let mut spacing = [0.0; 3];
    let mut rotation = [[0.0; 3]; 3];
    for a in 0..3 {
        spacing[a] = norm([ras[0][a], ras[1][a], ras[2][a]]);
        if !(spacing[a].is_finite() && spacing[a] > 0.0) {
            return Err(format!("axis {a} has spacing {}", g.spacing[a]));
        }
        for r in 0..3 {
            rotation[r][a] = ras[r][a] / spacing[a];
        }
    }
    let det = crate::volume::dot(rotation[0], crate::volume::cross(rotation[1], rotation[2]));
    let qfac = if det < 0.0 { -1.0 } else { 1.0 };
    for row in rotation.iter_mut() {
        row[2] *= qfac;
    }
    let rotation = nearest_rotation(rotation)
        .ok_or_else(|| format!("direction {:?} is degenerate", g.direction))?;
    let q = rotation_to_quaternion(rotation);
    Ok(Xforms {
        srow,
        quatern: q.map(|v| v as f32),
        qoffset: [srow[0][3], srow[1][3], srow[2][3]],
        pixdim: [
            qfac as f32,
            spacing[0] as f32,
            spacing[1] as f32,
            spacing[2] as f32,
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::IDENTITY;

    fn close(a: [[f64; 3]; 3], b: [[f64; 3]; 3], tol: f64) -> bool {
        (0..3).all(|r| (0..3).all(|c| (a[r][c] - b[r][c]).abs() <= tol))
    }

    #[test]
    fn quaternion_round_trips_through_rotations() {
        // Rotations about each axis by angles on both sides of the branch points.
        for angle in [0.0f64, 0.3, 1.5, 3.0, std::f64::consts::PI - 1e-5, -2.0] {
            let (s, c) = angle.sin_cos();
            for r in [
                [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]],
                [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]],
                [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]],
            ] {
                let [b, cc, d] = rotation_to_quaternion(r);
                let back = quaternion_to_rotation(b, cc, d).unwrap();
                // Within about 6e-4 rad of 180 degrees, `a² < 1e-7` is below float32's
                // resolution of 1 - b² - c² - d², and `a` is taken as 0: the qform itself
                // cannot hold these rotations more finely (nifti1_io snaps the same way).
                let tol = if (angle.abs() - std::f64::consts::PI).abs() < 1e-3 {
                    1e-3
                } else {
                    1e-12
                };
                assert!(close(back, r, tol), "{angle}: {back:?} vs {r:?}");
            }
        }
    }

    #[test]
    fn identity_quaternion_is_ras_so_lps_flips_x_and_y() {
        let h = Header {
            qform_code: 1,
            pixdim: [0.0, 0.5, 0.5, 2.0, 0.0, 0.0, 0.0, 0.0], // qfac 0 reads as 1
            qoffset: [10.0, 20.0, 30.0],
            ..Header::default()
        };
        let (g, method) = geometry_from_header(&h);
        assert_eq!(method, Method::Qform);
        assert_eq!(g.origin, [-10.0, -20.0, 30.0]);
        assert_eq!(g.spacing, [0.5, 0.5, 2.0]);
        assert_eq!(g.orientation_code(), "RAS");
    }

    #[test]
    fn qfac_minus_one_flips_k() {
        let h = Header {
            qform_code: 1,
            pixdim: [-1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
            ..Header::default()
        };
        assert_eq!(geometry_from_header(&h).0.orientation_code(), "RAI");
    }

    #[test]
    fn sform_wins_and_degenerate_sform_falls_back() {
        let mut h = Header {
            qform_code: 1,
            sform_code: 2,
            pixdim: [1.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0],
            srow: [
                [-3.0, 0.0, 0.0, 5.0],
                [0.0, -3.0, 0.0, 6.0],
                [0.0, 0.0, 3.0, 7.0],
            ],
            ..Header::default()
        };
        let (g, method) = geometry_from_header(&h);
        assert_eq!(method, Method::Sform);
        assert_eq!(g.origin, [-5.0, -6.0, 7.0]);
        assert_eq!(g.spacing, [3.0; 3]);
        assert_eq!(g.direction, IDENTITY);

        h.srow[2] = [0.0; 4];
        let (g, method) = geometry_from_header(&h);
        assert_eq!(method, Method::Qform);
        assert_eq!(g.spacing, [2.0; 3]);

        h.quatern = [f32::NAN, 0.0, 0.0];
        let (g, method) = geometry_from_header(&h);
        assert_eq!(method, Method::Pixdim);
        assert_eq!(g.spacing, [2.0; 3]);
        assert_eq!(g.orientation_code(), "RAS");
    }

    #[test]
    fn units_are_converted_to_millimetres() {
        let h = Header {
            sform_code: 1,
            xyzt_units: 1, // metres
            srow: [
                [0.001, 0.0, 0.0, 0.1],
                [0.0, 0.001, 0.0, 0.0],
                [0.0, 0.0, 0.002, 0.0],
            ],
            ..Header::default()
        };
        let g = geometry_from_header(&h).0;
        assert!((g.origin[0] + 100.0).abs() < 1e-3);
        assert!((g.spacing[2] - 2.0).abs() < 1e-4);
    }

    #[test]
    fn sheared_lattice_keeps_its_sform_and_gets_a_nearby_qform() {
        let g = Geometry::from_axes(
            [1.0, 2.0, 3.0],
            [1.0, 1.0, 2.0],
            [
                [1.0, 0.0, 0.0],
                [0.0, 1.0, 0.0],
                [0.0, 0.3f64.sin(), 0.3f64.cos()],
            ],
        );
        let x = xforms_from_geometry(&g).unwrap();
        let h = Header {
            sform_code: 1,
            qform_code: 1,
            srow: x.srow,
            quatern: x.quatern,
            qoffset: x.qoffset,
            pixdim: [
                x.pixdim[0],
                x.pixdim[1],
                x.pixdim[2],
                x.pixdim[3],
                0.0,
                0.0,
                0.0,
                0.0,
            ],
            ..Header::default()
        };
        let (back, _) = geometry_from_header(&h);
        assert!(back.approx_eq(&g, 1e-5), "{back:?}");
        let q = qform_geometry(&h, 1.0).unwrap();
        assert_eq!(q.orientation_code(), "LPS");
        assert!(q.obliquity_degrees() < 10.0);
    }

    #[test]
    fn nearest_rotation_of_a_rotation_is_itself() {
        let (s, c) = 0.7f64.sin_cos();
        let r = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]];
        assert!(close(nearest_rotation(r).unwrap(), r, 1e-12));
        assert!(nearest_rotation([[0.0; 3]; 3]).is_none());
    }

    #[test]
    fn unwritable_geometries_are_refused() {
        let mut g = Geometry::default();
        g.spacing[1] = 0.0;
        assert!(xforms_from_geometry(&g).is_err());
        let mut g = Geometry::default();
        g.origin[0] = f64::NAN;
        assert!(xforms_from_geometry(&g).is_err());
        let mut g = Geometry::default();
        g.origin[0] = 1e300;
        assert!(xforms_from_geometry(&g).is_err());
    }
}
