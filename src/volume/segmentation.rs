//! A segmentation as Slicer holds it: named, coloured segments stored as label values in
//! one or more shared label layers on one lattice.

use super::{Geometry, Labelmap, Volume};
use ndarray::Array3;

/// One segment: what Slicer shows in the Segment Editor's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Stable identifier (`Segment_1`, `lung_left`, ...).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Colour, red, green and blue in 0..=1.
    pub color: [f64; 3],
    /// Value of the segment's voxels in its layer.
    pub label_value: u16,
    /// Index of the layer holding the segment.
    pub layer: usize,
    /// Slicer's `key:value|` tags (terminology and others), kept as written.
    pub tags: Vec<(String, String)>,
    /// True when the name was made up by the software, not typed by a user.
    pub name_auto_generated: bool,
    /// True when the colour was made up by the software.
    pub color_auto_generated: bool,
}

impl Segment {
    /// A segment with Slicer's defaults for everything but id, name, label and layer.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        label_value: u16,
        layer: usize,
    ) -> Self {
        Segment {
            id: id.into(),
            name: name.into(),
            color: default_color(label_value),
            label_value,
            layer,
            tags: Vec::new(),
            name_auto_generated: false,
            color_auto_generated: true,
        }
    }
}

/// Slicer-like default colours for label values 1, 2, 3, ... (cycled).
pub fn default_color(label_value: u16) -> [f64; 3] {
    const PALETTE: [[f64; 3]; 8] = [
        [0.502, 0.682, 0.502],
        [0.945, 0.839, 0.569],
        [0.694, 0.478, 0.396],
        [0.435, 0.722, 0.824],
        [0.847, 0.396, 0.310],
        [0.867, 0.510, 0.396],
        [0.565, 0.933, 0.565],
        [0.753, 0.408, 0.694],
    ];
    PALETTE[(label_value.max(1) as usize - 1) % PALETTE.len()]
}

/// Segments stored as label values in one or more layers on one lattice.
#[derive(Debug, Clone, PartialEq)]
pub struct Segmentation {
    /// Lattice of every layer.
    pub geometry: Geometry,
    /// Label layers, each `[k][j][i]` with the same shape; overlapping segments live in
    /// different layers.
    pub layers: Vec<Array3<u16>>,
    /// Segments, in display order.
    pub segments: Vec<Segment>,
    /// Index of voxel (0, 0, 0) in Slicer's reference extent (`Segmentation_ReferenceImageExtentOffset`).
    pub extent_offset: [i64; 3],
    /// Other `Segmentation_*` fields (conversion parameters, ...) kept as read, for round trips.
    pub extra_fields: Vec<(String, String)>,
}

impl Segmentation {
    /// A one-layer segmentation from a label map: one segment per distinct non-zero label,
    /// named `Segment_<label>` as Slicer names them when importing a label map.
    pub fn from_labelmap(labelmap: &Labelmap) -> Self {
        let mut present = vec![false; u16::MAX as usize + 1];
        for &v in labelmap.data.iter() {
            present[v as usize] = true;
        }
        let segments = (1..=u16::MAX)
            .filter(|&v| present[v as usize])
            .map(|v| {
                let mut s = Segment::new(format!("Segment_{v}"), format!("Segment_{v}"), v, 0);
                s.name_auto_generated = true;
                s
            })
            .collect();
        Segmentation {
            geometry: labelmap.geometry,
            layers: vec![labelmap.data.clone()],
            segments,
            extent_offset: [0; 3],
            extra_fields: Vec::new(),
        }
    }

    /// Sizes along (i, j, k) of the layers.
    pub fn size_ijk(&self) -> [usize; 3] {
        match self.layers.first() {
            Some(l) => {
                let (nk, nj, ni) = l.dim();
                [ni, nj, nk]
            }
            None => [0; 3],
        }
    }

    /// The binary mask (0/1) of one segment.
    pub fn segment_mask(&self, index: usize) -> Option<Volume<u8>> {
        let s = self.segments.get(index)?;
        let layer = self.layers.get(s.layer)?;
        let label = s.label_value;
        Some(Volume::new(
            layer.mapv(|v| u8::from(v == label)),
            self.geometry,
        ))
    }

    /// Flattens the segments into one label map the way Slicer's "Export to label map"
    /// does: segment `n` (0-based, display order) gets label `n + 1`, and where segments
    /// overlap the later one wins.
    pub fn to_labelmap(&self) -> Labelmap {
        let [ni, nj, nk] = self.size_ijk();
        let mut out = Array3::<u16>::zeros((nk, nj, ni));
        for (n, s) in self.segments.iter().enumerate() {
            let Some(layer) = self.layers.get(s.layer) else {
                continue;
            };
            let value = (n + 1).min(u16::MAX as usize) as u16;
            ndarray::Zip::from(&mut out).and(layer).for_each(|o, &l| {
                if l == s.label_value {
                    *o = value;
                }
            });
        }
        Volume::new(out, self.geometry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelmap_round_trips_through_segments() {
        let data = Array3::from_shape_vec((1, 2, 3), vec![0u16, 5, 5, 2, 0, 2]).unwrap();
        let lm = Volume::new(data, Geometry::default());
        let seg = Segmentation::from_labelmap(&lm);
        let names: Vec<_> = seg.segments.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["Segment_2", "Segment_5"]);
        assert_eq!(
            seg.segment_mask(1).unwrap().data.as_slice().unwrap(),
            &[0, 1, 1, 0, 0, 0]
        );
        // Export renumbers in display order: label 2 -> 1, label 5 -> 2.
        assert_eq!(
            seg.to_labelmap().data.as_slice().unwrap(),
            &[0, 2, 2, 1, 0, 1]
        );
    }

    #[test]
    fn later_segment_wins_on_export() {
        let a = Array3::from_shape_vec((1, 1, 2), vec![1u16, 1]).unwrap();
        let b = Array3::from_shape_vec((1, 1, 2), vec![0u16, 1]).unwrap();
        let seg = Segmentation {
            geometry: Geometry::default(),
            layers: vec![a, b],
            segments: vec![Segment::new("a", "a", 1, 0), Segment::new("b", "b", 1, 1)],
            extent_offset: [0; 3],
            extra_fields: vec![],
        };
        assert_eq!(seg.to_labelmap().data.as_slice().unwrap(), &[1, 2]);
    }
}
