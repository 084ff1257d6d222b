//! Where voxels are in the patient: origin, spacing and direction, in LPS millimetres.
//!
//! This is the one coordinate convention of segkit, stated once:
//! - arrays are indexed `[k][j][i]` (slice, row, column), `i` fastest in memory;
//! - world coordinates are LPS millimetres (DICOM PS3.3 C.7.6.2, ITK, NRRD `left-posterior-superior`);
//! - `direction` is a 3x3 matrix whose **columns** are the unit vectors of the i, j and k axes,
//!   so `lps = origin + direction · diag(spacing) · [i, j, k]ᵀ`, the ITK convention.
//!
//! Slicer works in RAS: x and y are negated at the edge that talks to it, never here.

// Matrix code reads best with explicit row and column indices.
#![allow(clippy::needless_range_loop)]

/// Position of a voxel lattice in LPS millimetres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// LPS position (mm) of the centre of voxel (0, 0, 0).
    pub origin: [f64; 3],
    /// Distance (mm) between voxel centres along i, j and k.
    pub spacing: [f64; 3],
    /// Row-major 3x3 matrix; column `a` is the LPS unit vector of axis `a` (0 = i, 1 = j, 2 = k).
    pub direction: [[f64; 3]; 3],
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry {
            origin: [0.0; 3],
            spacing: [1.0; 3],
            direction: IDENTITY,
        }
    }
}

/// The identity direction: i along L, j along P, k along S.
pub const IDENTITY: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

impl Geometry {
    /// A geometry from its origin, spacing and the three axis unit vectors (i, j, k).
    pub fn from_axes(origin: [f64; 3], spacing: [f64; 3], axes: [[f64; 3]; 3]) -> Self {
        let mut direction = [[0.0; 3]; 3];
        for (a, axis) in axes.iter().enumerate() {
            for r in 0..3 {
                direction[r][a] = axis[r];
            }
        }
        Geometry {
            origin,
            spacing,
            direction,
        }
    }

    /// A geometry from the three axis step vectors (unit vector times spacing), as NRRD's
    /// `space directions` stores them. Fails when a vector has zero or non-finite length.
    pub fn from_steps(origin: [f64; 3], steps: [[f64; 3]; 3]) -> Result<Self, String> {
        let mut spacing = [0.0; 3];
        let mut axes = [[0.0; 3]; 3];
        for a in 0..3 {
            let len = norm(steps[a]);
            if !(len.is_finite() && len > 0.0) {
                return Err(format!(
                    "axis {a} direction vector ({}, {}, {}) has no length",
                    steps[a][0], steps[a][1], steps[a][2]
                ));
            }
            spacing[a] = len;
            axes[a] = [steps[a][0] / len, steps[a][1] / len, steps[a][2] / len];
        }
        Ok(Geometry::from_axes(origin, spacing, axes))
    }

    /// The LPS unit vector of axis `a` (0 = i, 1 = j, 2 = k).
    pub fn axis(&self, a: usize) -> [f64; 3] {
        [
            self.direction[0][a],
            self.direction[1][a],
            self.direction[2][a],
        ]
    }

    /// The LPS step vector of axis `a`: its unit vector times its spacing.
    pub fn step(&self, a: usize) -> [f64; 3] {
        let u = self.axis(a);
        let s = self.spacing[a];
        [u[0] * s, u[1] * s, u[2] * s]
    }

    /// LPS position (mm) of continuous index `(i, j, k)`.
    pub fn index_to_lps(&self, ijk: [f64; 3]) -> [f64; 3] {
        let mut p = self.origin;
        for a in 0..3 {
            let s = self.step(a);
            for r in 0..3 {
                p[r] += s[r] * ijk[a];
            }
        }
        p
    }

    /// Continuous index `(i, j, k)` of an LPS position, or `None` when the lattice is degenerate.
    pub fn lps_to_index(&self, lps: [f64; 3]) -> Option<[f64; 3]> {
        let m = self.index_to_lps_matrix();
        let inv = invert3(m)?;
        let d = [
            lps[0] - self.origin[0],
            lps[1] - self.origin[1],
            lps[2] - self.origin[2],
        ];
        Some(mat_vec(inv, d))
    }

    /// The voxel whose centre is nearest to the LPS point `lps`, as `[k, j, i]` on a
    /// lattice of `size_ijk` voxels, rounding each index with `floor(x + 0.5)` as Slicer
    /// does for clicks.
    ///
    /// # Errors
    /// A message naming the point and the lattice when the point is outside it, or when
    /// the geometry is degenerate.
    pub fn nearest_voxel_kji(
        &self,
        lps: [f64; 3],
        size_ijk: [usize; 3],
    ) -> Result<[usize; 3], String> {
        let ijk = self
            .lps_to_index(lps)
            .ok_or_else(|| "the volume's geometry is degenerate".to_string())?;
        let r = ijk.map(|x| (x + 0.5).floor());
        if (0..3).any(|a| !(r[a] >= 0.0 && r[a] < size_ijk[a] as f64)) {
            return Err(format!(
                "point ({}, {}, {}) mm LPS is outside the volume of {} x {} x {} voxels \
                 (index {:.2}, {:.2}, {:.2})",
                lps[0],
                lps[1],
                lps[2],
                size_ijk[0],
                size_ijk[1],
                size_ijk[2],
                ijk[0],
                ijk[1],
                ijk[2]
            ));
        }
        Ok([r[2] as usize, r[1] as usize, r[0] as usize])
    }

    /// The 3x3 matrix `direction · diag(spacing)`.
    pub fn index_to_lps_matrix(&self) -> [[f64; 3]; 3] {
        let mut m = self.direction;
        for row in m.iter_mut() {
            for (a, v) in row.iter_mut().enumerate() {
                *v *= self.spacing[a];
            }
        }
        m
    }

    /// The 4x4 homogeneous index-to-LPS matrix (row-major).
    pub fn index_to_lps_4x4(&self) -> [[f64; 4]; 4] {
        let m = self.index_to_lps_matrix();
        let mut out = [[0.0; 4]; 4];
        for r in 0..3 {
            out[r][..3].copy_from_slice(&m[r]);
            out[r][3] = self.origin[r];
        }
        out[3][3] = 1.0;
        out
    }

    /// The unit normal of the slices (the k axis), as `i × j`; equals `axis(2)` for a
    /// right-handed, non-sheared lattice.
    pub fn slice_normal(&self) -> [f64; 3] {
        cross(self.axis(0), self.axis(1))
    }

    /// True when every field is within `tol_mm` (origin, and each axis step vector).
    pub fn approx_eq(&self, other: &Geometry, tol_mm: f64) -> bool {
        (0..3).all(|r| (self.origin[r] - other.origin[r]).abs() <= tol_mm)
            && (0..3).all(|a| {
                let (s, o) = (self.step(a), other.step(a));
                (0..3).all(|r| (s[r] - o[r]).abs() <= tol_mm)
            })
    }

    /// Largest angle (degrees) between an axis and its closest LPS axis: 0 for a
    /// volume aligned with the patient, non-zero for oblique acquisitions.
    pub fn obliquity_degrees(&self) -> f64 {
        (0..3)
            .map(|a| {
                let u = self.axis(a);
                let c = u.iter().fold(0.0f64, |m, v| m.max(v.abs())).min(1.0);
                c.acos().to_degrees()
            })
            .fold(0.0, f64::max)
    }

    /// The closest of the 48 axis-aligned orientations, as three letters naming the
    /// direction each of i, j, k points to (`LPS`, `RAI`, ...), like ITK's orientation codes.
    pub fn orientation_code(&self) -> String {
        (0..3)
            .map(|a| {
                let u = self.axis(a);
                let r = (0..3)
                    .max_by(|&x, &y| u[x].abs().total_cmp(&u[y].abs()))
                    .unwrap_or(0);
                let positive = u[r] >= 0.0;
                match (r, positive) {
                    (0, true) => 'L',
                    (0, false) => 'R',
                    (1, true) => 'P',
                    (1, false) => 'A',
                    (2, true) => 'S',
                    _ => 'I',
                }
            })
            .collect()
    }
}

/// Euclidean length.
pub fn norm(v: [f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

/// Dot product.
pub fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Cross product.
pub fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn mat_vec(m: [[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    [dot(m[0], v), dot(m[1], v), dot(m[2], v)]
}

/// Inverse of a 3x3 matrix, or `None` when it is singular.
pub fn invert3(m: [[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let c0 = cross(m[1], m[2]);
    let det = dot(m[0], c0);
    if !det.is_finite() || det.abs() < 1e-12 {
        return None;
    }
    let c1 = cross(m[2], m[0]);
    let c2 = cross(m[0], m[1]);
    // Columns of the inverse are the cross products divided by the determinant.
    let mut inv = [[0.0; 3]; 3];
    for r in 0..3 {
        inv[r] = [c0[r] / det, c1[r] / det, c2[r] / det];
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oblique() -> Geometry {
        let (s, c) = (0.3f64.sin(), 0.3f64.cos());
        Geometry::from_axes(
            [10.0, -20.0, 30.0],
            [0.5, 0.75, 2.0],
            [[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]],
        )
    }

    #[test]
    fn index_to_lps_round_trips() {
        let g = oblique();
        let p = g.index_to_lps([3.0, 4.0, 5.0]);
        let back = g.lps_to_index(p).unwrap();
        for a in 0..3 {
            assert!((back[a] - [3.0, 4.0, 5.0][a]).abs() < 1e-12);
        }
    }

    #[test]
    fn identity_geometry_maps_index_times_spacing() {
        let g = Geometry {
            origin: [1.0, 2.0, 3.0],
            spacing: [0.5, 0.5, 2.0],
            direction: IDENTITY,
        };
        assert_eq!(g.index_to_lps([2.0, 4.0, 1.0]), [2.0, 4.0, 5.0]);
        assert_eq!(g.orientation_code(), "LPS");
        assert_eq!(g.obliquity_degrees(), 0.0);
    }

    #[test]
    fn steps_give_spacing_and_unit_axes() {
        let g = Geometry::from_steps(
            [0.0; 3],
            [[-0.5, 0.0, 0.0], [0.0, -0.5, 0.0], [0.0, 0.0, 3.0]],
        )
        .unwrap();
        assert_eq!(g.spacing, [0.5, 0.5, 3.0]);
        assert_eq!(g.axis(0), [-1.0, 0.0, 0.0]);
        assert_eq!(g.orientation_code(), "RAS");
        assert!(
            Geometry::from_steps([0.0; 3], [[0.0; 3], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]).is_err()
        );
    }

    #[test]
    fn oblique_geometry_reports_its_angle() {
        let g = oblique();
        assert!((g.obliquity_degrees() - 0.3f64.to_degrees()).abs() < 1e-9);
        assert!(g.approx_eq(&g, 0.0));
    }
}
