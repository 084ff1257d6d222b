//! Between NRRD and segkit's volumes: which axes are spatial, and the geometry in LPS.
//!
//! An axis is spatial when it has a space direction (or, in a file without space
//! directions, when its kind is `domain`, `space` or unknown). A volume needs exactly three
//! spatial axes; other axes must have size 1 (they are squeezed), except the one list axis
//! of a layered segmentation.
//!
//! Geometry:
//! - with `space directions`: each spatial axis's vector is its step (unit vector times
//!   spacing), the origin is `space origin` (0 when absent); both are converted from the
//!   file's `space` to LPS (RAS negates x and y, LAS negates x; `scanner-xyz`,
//!   `3D-right-handed`, ... and a bare `space dimension` are taken as LPS). In a 4-D space
//!   (`-time`) the fourth component is ignored.
//! - without: identity directions; spacing from `spacings`, else from `axis mins`/`axis
//!   maxs`, else 1 (a negative spacing flips the axis); the origin is the centre of the
//!   first sample from `axis mins` (half a spacing in for cell centring, which Teem and ITK
//!   assume when `centers` is absent), else 0.

use super::data::{NrrdData, NrrdScalar};
use super::header::{Center, DataType, Header, Kind, Space};
use super::Nrrd;
use crate::error::{Error, Result};
use crate::volume::{AnyVolume, Geometry, Volume};
use ndarray::Array3;
use std::path::Path;

/// Which axes of a header are the volume's i, j, k, and which one (if any) is not spatial
/// and has more than one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub spatial: [usize; 3],
    pub list_axis: Option<usize>,
}

/// A short description of a header's shape for error messages:
/// `4-D NRRD (sizes 451 7 7 2, kinds list domain domain domain)`.
pub(crate) fn describe(h: &Header) -> String {
    let sizes: Vec<String> = h.axes.iter().map(|a| a.size.to_string()).collect();
    let kinds: Vec<&str> = h
        .axes
        .iter()
        .map(|a| a.kind.map_or("???", Kind::name))
        .collect();
    format!(
        "{}-D NRRD (sizes {}, kinds {})",
        h.dimension(),
        sizes.join(" "),
        kinds.join(" ")
    )
}

/// Finds the three spatial axes. With `allow_list`, one non-spatial axis may have more
/// than one sample (a segmentation's layers); otherwise every non-spatial axis must have
/// size 1.
pub(crate) fn layout(h: &Header, allow_list: bool) -> std::result::Result<Layout, String> {
    if let DataType::Block(_) = h.data_type {
        return Err(format!(
            "{} holds opaque 'block' samples, not numbers",
            describe(h)
        ));
    }
    let has_dirs = h.axes.iter().any(|a| a.space_direction.is_some());
    let is_spatial = |a: &super::header::Axis| {
        if has_dirs {
            a.space_direction.is_some()
        } else {
            a.kind.is_none_or(Kind::is_spatial)
        }
    };
    let spatial: Vec<usize> = (0..h.dimension())
        .filter(|&a| is_spatial(&h.axes[a]))
        .collect();
    let others: Vec<usize> = (0..h.dimension())
        .filter(|&a| !is_spatial(&h.axes[a]))
        .collect();
    let [i, j, k] = spatial.as_slice() else {
        return Err(format!(
            "{} is not a 3-D volume: it has {} spatial axes{}",
            describe(h),
            spatial.len(),
            if has_dirs {
                " (axes with a space direction)"
            } else {
                ""
            }
        ));
    };
    let big: Vec<usize> = others
        .iter()
        .copied()
        .filter(|&a| h.axes[a].size > 1)
        .collect();
    let list_axis = match big.as_slice() {
        [] => None,
        [a] if allow_list => Some(*a),
        [a, ..] => {
            return Err(format!(
                "{} is not a 3-D scalar volume: axis {a} ({}, size {}) is not spatial; \
                 read it with the general NRRD reader (segkit::io::nrrd::read)",
                describe(h),
                h.axes[*a].kind.map_or("no kind", Kind::name),
                h.axes[*a].size
            ))
        }
    };
    Ok(Layout {
        spatial: [*i, *j, *k],
        list_axis,
    })
}

/// The LPS geometry of the three spatial axes.
pub(crate) fn geometry(h: &Header, spatial: [usize; 3]) -> std::result::Result<Geometry, String> {
    let has_dirs = spatial.iter().any(|&a| h.axes[a].space_direction.is_some());
    if has_dirs {
        let sd = h.space_dimension;
        if sd < 3 {
            return Err(format!("the space is {sd}-D; a volume needs a 3-D space"));
        }
        let signs = h.space.map_or([1.0; 3], Space::to_lps_signs);
        let mut steps = [[0.0; 3]; 3];
        for (n, &a) in spatial.iter().enumerate() {
            let Some(d) = &h.axes[a].space_direction else {
                return Err(format!("axis {a} has no space direction"));
            };
            for r in 0..3 {
                steps[n][r] = d[r] * signs[r];
            }
        }
        let mut origin = [0.0; 3];
        if let Some(o) = &h.space_origin {
            for r in 0..3 {
                origin[r] = o[r] * signs[r];
            }
        }
        if origin.iter().any(|v| !v.is_finite()) {
            return Err(format!(
                "space origin ({}, {}, {}) is not finite",
                origin[0], origin[1], origin[2]
            ));
        }
        return Geometry::from_steps(origin, steps);
    }
    let mut g = Geometry::default();
    for (n, &a) in spatial.iter().enumerate() {
        let axis = &h.axes[a];
        let cell = axis.center.unwrap_or(Center::Cell) == Center::Cell;
        let from_range = match (axis.min, axis.max) {
            (Some(lo), Some(hi)) => {
                let cells = if cell {
                    axis.size
                } else {
                    axis.size.saturating_sub(1)
                };
                (cells > 0).then(|| (hi - lo) / cells as f64)
            }
            _ => None,
        };
        let usable = |s: &f64| s.is_finite() && *s != 0.0;
        let spacing = axis
            .spacing
            .filter(usable)
            .or(from_range.filter(usable))
            .unwrap_or(1.0);
        g.spacing[n] = spacing.abs();
        g.direction[n][n] = spacing.signum();
        let min = axis.min.filter(|m| m.is_finite()).unwrap_or(0.0);
        g.origin[n] = if axis.min.is_some() && cell {
            min + spacing / 2.0
        } else {
            min
        };
    }
    Ok(g)
}

/// A header for a 3-D volume as Slicer and ITK write it: LPS space, space directions,
/// `domain` kinds, space origin.
pub(crate) fn volume_header(data_type: DataType, size_ijk: [usize; 3], g: &Geometry) -> Header {
    let mut h = Header::new(data_type, &size_ijk);
    h.space = Some(Space::LeftPosteriorSuperior);
    h.space_dimension = 3;
    for (a, axis) in h.axes.iter_mut().enumerate() {
        axis.space_direction = Some(g.step(a).to_vec());
        axis.kind = Some(Kind::Domain);
    }
    h.space_origin = Some(g.origin.to_vec());
    h
}

impl Nrrd {
    /// A 3-D NRRD holding a copy of a volume (LPS, space directions, `domain` kinds).
    pub fn from_volume(v: &AnyVolume) -> Nrrd {
        let header = volume_header(
            DataType::from_scalar(v.scalar_type()),
            v.size_ijk(),
            v.geometry(),
        );
        let data =
            crate::with_volume!(v, vol => NrrdScalar::wrap(vol.data.iter().copied().collect()));
        Nrrd { header, data }
    }

    /// The volume this NRRD holds: a 3-D scalar NRRD, or one whose other axes all have
    /// size 1 (they are dropped). Geometry is converted to LPS (see the module docs).
    /// `path` names the file in errors.
    pub fn into_volume(self, path: &Path) -> Result<AnyVolume> {
        let layout = layout(&self.header, false).map_err(|e| Error::unsupported(path, e))?;
        let g =
            geometry(&self.header, layout.spatial).map_err(|e| Error::format(path, "NRRD", e))?;
        let s = layout.spatial.map(|a| self.header.axes[a].size);
        let shape = (s[2], s[1], s[0]);
        let volume = match self.data {
            NrrdData::I8(v) => typed(v, shape, g),
            NrrdData::U8(v) => typed(v, shape, g),
            NrrdData::I16(v) => typed(v, shape, g),
            NrrdData::U16(v) => typed(v, shape, g),
            NrrdData::I32(v) => typed(v, shape, g),
            NrrdData::U32(v) => typed(v, shape, g),
            NrrdData::I64(v) => typed(v, shape, g),
            NrrdData::U64(v) => typed(v, shape, g),
            NrrdData::F32(v) => typed(v, shape, g),
            NrrdData::F64(v) => typed(v, shape, g),
            NrrdData::Block { .. } => None,
        };
        volume.ok_or_else(|| {
            Error::format(
                path,
                "NRRD",
                format!("the data does not match sizes {:?}", s),
            )
        })
    }
}

fn typed<T: NrrdScalar>(v: Vec<T>, shape: (usize, usize, usize), g: Geometry) -> Option<AnyVolume> {
    Array3::from_shape_vec(shape, v)
        .ok()
        .map(|a| Volume::new(a, g).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::IDENTITY;

    fn header(text: &str) -> Header {
        Header::parse(text).unwrap()
    }

    #[test]
    fn ras_directions_become_lps() {
        let h = header(
            "NRRD0004\ntype: uchar\ndimension: 3\nspace: RAS\nsizes: 2 2 2\n\
             space directions: (2,0,0) (0,3,0) (0,0,4)\nspace origin: (10,20,30)\nencoding: raw\n",
        );
        let l = layout(&h, false).unwrap();
        let g = geometry(&h, l.spatial).unwrap();
        assert_eq!(g.origin, [-10.0, -20.0, 30.0]);
        assert_eq!(g.spacing, [2.0, 3.0, 4.0]);
        assert_eq!(g.orientation_code(), "RAS");
    }

    #[test]
    fn las_negates_x_only() {
        let h = header(
            "NRRD0004\ntype: uchar\ndimension: 3\nspace: left-anterior-superior\nsizes: 2 2 2\n\
             space directions: (1,0,0) (0,1,0) (0,0,1)\nspace origin: (1,2,3)\nencoding: raw\n",
        );
        let g = geometry(&h, [0, 1, 2]).unwrap();
        assert_eq!(g.origin, [-1.0, 2.0, 3.0]);
        assert_eq!(g.orientation_code(), "RPS");
    }

    #[test]
    fn spacings_and_axis_mins_give_identity_geometry() {
        let h = header(
            "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 4 4 4\nspacings: 0.5 2 -3\n\
             axis mins: 1 2 3\ncenters: node cell node\nencoding: raw\n",
        );
        let g = geometry(&h, [0, 1, 2]).unwrap();
        assert_eq!(g.spacing, [0.5, 2.0, 3.0]);
        assert_eq!(g.origin, [1.0, 3.0, 3.0]);
        assert_eq!(g.direction[2][2], -1.0);
        let plain = header("NRRD0001\ntype: uchar\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n");
        let g = geometry(&plain, [0, 1, 2]).unwrap();
        assert_eq!(
            (g.origin, g.spacing, g.direction),
            ([0.0; 3], [1.0; 3], IDENTITY)
        );
    }

    #[test]
    fn non_spatial_axes_are_squeezed_or_refused() {
        let h = header(
            "NRRD0004\ntype: double\ndimension: 4\nspace: RAS\nsizes: 1 1 1 1\n\
             space directions: (1.5,0,0) (0,1.5,0) (0,0,1) none\nendian: little\nencoding: raw\n",
        );
        assert_eq!(layout(&h, false).unwrap().spatial, [0, 1, 2]);
        let dwi = header(
            "NRRD0004\ntype: short\ndimension: 4\nspace: RAS\nsizes: 5 2 2 2\n\
             space directions: none (1,0,0) (0,1,0) (0,0,1)\nkinds: list domain domain domain\nendian: little\nencoding: raw\n",
        );
        let e = layout(&dwi, false).unwrap_err();
        assert!(
            e.contains("4-D NRRD (sizes 5 2 2 2, kinds list domain domain domain)"),
            "{e}"
        );
        assert_eq!(layout(&dwi, true).unwrap().list_axis, Some(0));
        let flat = header("NRRD0004\ntype: uchar\ndimension: 2\nsizes: 3 3\nencoding: raw\n");
        assert!(layout(&flat, false).unwrap_err().contains("2 spatial axes"));
    }
}
