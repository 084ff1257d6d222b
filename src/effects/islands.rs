//! Islands: operate on the connected components ("islands") of the selected segment.
//!
//! Reference: Slicer's `SegmentEditorIslandsEffect.py` with `vtkITKIslandMath` (ITK
//! `ConnectedComponentImageFilter` with `FullyConnected = false`, then
//! `RelabelComponentImageFilter` with `MinimumObjectSize`) and `vtkImageThresholdConnectivity`
//! for the click operations.
//!
//! Behaviour, as Slicer's:
//! - islands are 6-connected (face neighbours); every non-zero voxel is in the segment;
//! - an island is kept when its size is **at least** `minimum_size` voxels;
//! - islands are ranked by size, largest first, and **ties keep raster order** of each
//!   island's first voxel (`i` fastest, then `j`, then `k`);
//! - *Keep largest* clears the segment when even the largest island is below `minimum_size`;
//! - the voxels outside the array are background: islands end at the border.
//!
//! # Example
//! ```
//! use ndarray::Array3;
//! use segkit::effects::islands::{islands, IslandOperation, IslandsInput, IslandsParams};
//! // Two islands along i: 3 voxels and 1 voxel.
//! let seg = Array3::from_shape_vec((1, 1, 5), vec![1u8, 1, 1, 0, 1]).unwrap();
//! let params = IslandsParams { operation: IslandOperation::KeepLargestIsland, minimum_size: 2 };
//! let out = islands(&IslandsInput::new(seg.view()), &params).unwrap();
//! assert_eq!(out.modifiers[0].mask.as_slice().unwrap(), &[1, 1, 1, 0, 0]);
//! ```

use super::schema::{ChoiceSpec, EffectSpec, Input, ParamSpec, ParamValues};
use super::{
    check_point, Effect, EffectError, EffectOutput, EffectRequest, ModificationMode, Modifier,
    Target,
};
use crate::kernels::components::{label_runs, Components, Connectivity};
use ndarray::{s, Array3, ArrayView3};

/// What to do with the islands (Slicer's `Operation` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IslandOperation {
    /// Keep only the largest island (cleared when it is below the minimum size).
    #[default]
    KeepLargestIsland,
    /// Keep the islands of at least the minimum size.
    RemoveSmallIslands,
    /// Make each island of at least the minimum size its own segment, largest kept in the
    /// selected segment, the others named `<name>_2`, `<name>_3`, ...
    SplitIslandsToSegments,
    /// Keep only the island under the clicked voxel.
    KeepSelectedIsland,
    /// Remove the island under the clicked voxel.
    RemoveSelectedIsland,
    /// Add the region under the clicked voxel: the connected voxels of the same value in
    /// the merged label map of the visible segments, inside their bounding box padded by 1.
    AddSelectedIsland,
}

impl IslandOperation {
    /// All operations, in Slicer's order.
    pub const ALL: [IslandOperation; 6] = [
        IslandOperation::KeepLargestIsland,
        IslandOperation::RemoveSmallIslands,
        IslandOperation::SplitIslandsToSegments,
        IslandOperation::KeepSelectedIsland,
        IslandOperation::RemoveSelectedIsland,
        IslandOperation::AddSelectedIsland,
    ];

    /// Slicer's parameter value (`KEEP_LARGEST_ISLAND`, ...).
    pub fn slicer_name(self) -> &'static str {
        match self {
            IslandOperation::KeepLargestIsland => "KEEP_LARGEST_ISLAND",
            IslandOperation::RemoveSmallIslands => "REMOVE_SMALL_ISLANDS",
            IslandOperation::SplitIslandsToSegments => "SPLIT_ISLANDS_TO_SEGMENTS",
            IslandOperation::KeepSelectedIsland => "KEEP_SELECTED_ISLAND",
            IslandOperation::RemoveSelectedIsland => "REMOVE_SELECTED_ISLAND",
            IslandOperation::AddSelectedIsland => "ADD_SELECTED_ISLAND",
        }
    }

    /// The operation Slicer names `name`.
    pub fn from_slicer_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.slicer_name() == name)
    }

    /// True for the operations driven by a click on a voxel.
    pub fn needs_point(self) -> bool {
        matches!(
            self,
            IslandOperation::KeepSelectedIsland
                | IslandOperation::RemoveSelectedIsland
                | IslandOperation::AddSelectedIsland
        )
    }
}

/// Parameters of the Islands effect; `Default` gives Slicer's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IslandsParams {
    /// `Operation`, default `KEEP_LARGEST_ISLAND`.
    pub operation: IslandOperation,
    /// `MinimumSize` in voxels, default 1000; islands of at least this size are kept.
    pub minimum_size: u64,
}

impl IslandsParams {
    /// The parameters from checked values (given or the schema's defaults).
    pub fn from_values(v: &ParamValues) -> Result<Self, EffectError> {
        Ok(IslandsParams {
            operation: v.choice("Operation", IslandOperation::from_slicer_name)?,
            minimum_size: v.integer("MinimumSize")?.max(0) as u64,
        })
    }
}

impl Default for IslandsParams {
    /// Slicer's defaults, as the schema states them.
    fn default() -> Self {
        Self::from_values(&ParamValues::defaults(&Islands.spec()))
            .expect("the Islands schema's defaults parse")
    }
}

/// The arrays Islands works on, all `[k][j][i]` on the reference lattice.
#[derive(Debug, Clone)]
pub struct IslandsInput<'a> {
    /// The selected segment: non-zero = inside.
    pub selected: ArrayView3<'a, u8>,
    /// The clicked voxel `[k, j, i]`, for the `*_SELECTED_ISLAND` operations.
    pub point_kji: Option<[usize; 3]>,
    /// Merged label map of the visible segments (later segments win), for
    /// `ADD_SELECTED_ISLAND`.
    pub visible_labels: Option<ArrayView3<'a, u16>>,
}

impl<'a> IslandsInput<'a> {
    /// Input with only the selected segment.
    pub fn new(selected: ArrayView3<'a, u8>) -> Self {
        IslandsInput {
            selected,
            point_kji: None,
            visible_labels: None,
        }
    }
}

/// Runs the Islands effect.
///
/// Returns the modifiers in the order Slicer applies them. For
/// `SPLIT_ISLANDS_TO_SEGMENTS` the new segments come first and the selected segment last,
/// as Slicer does since 2026 (so an editable area of "inside this segment" still holds
/// while the new segments are written). The number of islands found and kept are
/// reported as `islands` and `islands_kept`.
///
/// # Errors
/// A click operation without a point, a point outside the volume, or `ADD_SELECTED_ISLAND`
/// without the visible segments' label map (or with another shape).
pub fn islands(input: &IslandsInput, params: &IslandsParams) -> Result<EffectOutput, EffectError> {
    let shape = input.selected.dim();
    if params.operation.needs_point() {
        let point = input.point_kji.ok_or_else(|| {
            EffectError::Input(format!(
                "{} needs a point (the clicked voxel)",
                params.operation.slicer_name()
            ))
        })?;
        check_point(point, shape)?;
        return match params.operation {
            IslandOperation::AddSelectedIsland => add_selected(input, point),
            op => keep_or_remove_selected(input, point, op),
        };
    }

    let comps = label_runs(input.selected, |&v| v != 0, Connectivity::Faces6);
    let kept: Vec<u32> = comps
        .by_size()
        .into_iter()
        .filter(|&l| comps.sizes[l as usize - 1] >= params.minimum_size)
        .collect();
    let mut output = EffectOutput {
        modifiers: Vec::new(),
        reported: vec![
            ("islands".into(), comps.sizes.len() as f64),
            ("islands_kept".into(), kept.len() as f64),
        ],
        volumes: Vec::new(),
    };
    let selected_mask = |labels: &[u32]| mask_of(&comps, labels);
    match params.operation {
        IslandOperation::KeepLargestIsland => {
            // Empty when no island is large enough: the segment is cleared, as in Slicer.
            output
                .modifiers
                .push(set_selected(selected_mask(&kept[..kept.len().min(1)])));
        }
        IslandOperation::RemoveSmallIslands => {
            output.modifiers.push(set_selected(selected_mask(&kept)));
        }
        IslandOperation::SplitIslandsToSegments => {
            for (n, &label) in kept.iter().enumerate().skip(1) {
                output.modifiers.push(Modifier {
                    bypass_masking: false,
                    overwrite: None,
                    target: Target::NewSegment {
                        suffix: format!("_{}", n + 1),
                    },
                    mode: ModificationMode::Add,
                    mask: selected_mask(&[label]),
                });
            }
            output
                .modifiers
                .push(set_selected(selected_mask(&kept[..kept.len().min(1)])));
        }
        _ => unreachable!("click operations returned above"),
    }
    Ok(output)
}

fn set_selected(mask: Array3<u8>) -> Modifier {
    Modifier {
        bypass_masking: false,
        overwrite: None,
        target: Target::Selected,
        mode: ModificationMode::Set,
        mask,
    }
}

/// A 0/1 mask of the components whose labels are listed.
fn mask_of(comps: &Components, labels: &[u32]) -> Array3<u8> {
    let mut wanted = vec![false; comps.sizes.len() + 1];
    for &l in labels {
        wanted[l as usize] = true;
    }
    let mut mask = Array3::<u8>::zeros(comps.shape);
    comps.paint(&mut mask, |l| wanted[l as usize].then_some(1));
    mask
}

/// Keep / Remove selected island: a 6-connected flood fill of the segment from the click.
/// A click outside the segment changes nothing.
fn keep_or_remove_selected(
    input: &IslandsInput,
    point: [usize; 3],
    op: IslandOperation,
) -> Result<EffectOutput, EffectError> {
    if input.selected[point] == 0 {
        return Ok(EffectOutput::default());
    }
    let comps = label_runs(input.selected, |&v| v != 0, Connectivity::Faces6);
    let label = comps
        .label_at(point)
        .ok_or_else(|| EffectError::Input("clicked voxel has no island".into()))?;
    let mode = if op == IslandOperation::KeepSelectedIsland {
        ModificationMode::Set
    } else {
        ModificationMode::Remove
    };
    Ok(EffectOutput {
        modifiers: vec![Modifier {
            bypass_masking: false,
            overwrite: None,
            target: Target::Selected,
            mode,
            mask: mask_of(&comps, &[label]),
        }],
        reported: vec![(
            "island_voxels".into(),
            comps.sizes[label as usize - 1] as f64,
        )],
        volumes: Vec::new(),
    })
}

/// Add selected island: flood fill of the clicked value in the merged label map of the
/// visible segments, limited to the bounding box of their voxels padded by one voxel
/// (Slicer's `EXTENT_UNION_OF_SEGMENTS_PADDED`). A click outside that box changes nothing.
fn add_selected(input: &IslandsInput, point: [usize; 3]) -> Result<EffectOutput, EffectError> {
    let labels = input.visible_labels.ok_or_else(|| {
        EffectError::Input("ADD_SELECTED_ISLAND needs the label map of the visible segments".into())
    })?;
    let shape = input.selected.dim();
    if labels.dim() != shape {
        return Err(EffectError::Input(format!(
            "visible segments' label map has shape {:?}, the segment {:?}",
            labels.dim(),
            shape
        )));
    }
    let Some(bbox) = crate::kernels::bbox::nonzero_box(labels, 1) else {
        return Ok(EffectOutput::default());
    };
    if (0..3).any(|a| point[a] < bbox[a].0 || point[a] >= bbox[a].1) {
        return Ok(EffectOutput::default());
    }
    let view = labels.slice(s![
        bbox[0].0..bbox[0].1,
        bbox[1].0..bbox[1].1,
        bbox[2].0..bbox[2].1
    ]);
    let value = labels[point];
    let local = [
        point[0] - bbox[0].0,
        point[1] - bbox[1].0,
        point[2] - bbox[2].0,
    ];
    let comps = label_runs(view, |&v| v == value, Connectivity::Faces6);
    let label = comps
        .label_at(local)
        .ok_or_else(|| EffectError::Input("clicked voxel has no region".into()))?;
    let local_mask = mask_of(&comps, &[label]);
    let mut mask = Array3::<u8>::zeros(shape);
    mask.slice_mut(s![
        bbox[0].0..bbox[0].1,
        bbox[1].0..bbox[1].1,
        bbox[2].0..bbox[2].1
    ])
    .assign(&local_mask);
    Ok(EffectOutput {
        modifiers: vec![Modifier {
            bypass_masking: false,
            overwrite: None,
            target: Target::Selected,
            mode: ModificationMode::Add,
            mask,
        }],
        reported: vec![(
            "island_voxels".into(),
            comps.sizes[label as usize - 1] as f64,
        )],
        volumes: Vec::new(),
    })
}

/// The Islands effect in the catalog.
pub struct Islands;

impl Effect for Islands {
    fn spec(&self) -> EffectSpec {
        let op = |o: IslandOperation, title, help| {
            let c = ChoiceSpec::new(o.slicer_name(), title, help);
            match o {
                // Floods the merged label map of the visible segments.
                IslandOperation::AddSelectedIsland => {
                    c.needs(&[Input::Point, Input::VisibleSegments])
                }
                _ if o.needs_point() => c.needs(&[Input::Point]),
                _ => c,
            }
        };
        let operations = vec![
            op(
                IslandOperation::KeepLargestIsland,
                "Keep largest island",
                "Keep only the largest island; the segment is cleared when it is below the minimum size.",
            ),
            op(
                IslandOperation::RemoveSmallIslands,
                "Remove small islands",
                "Remove the islands smaller than the minimum size.",
            ),
            op(
                IslandOperation::SplitIslandsToSegments,
                "Split islands to segments",
                "Make a segment of each island of at least the minimum size, ordered by size.",
            ),
            op(
                IslandOperation::KeepSelectedIsland,
                "Keep selected island",
                "Click an island to keep it and remove the others.",
            ),
            op(
                IslandOperation::RemoveSelectedIsland,
                "Remove selected island",
                "Click an island to remove it.",
            ),
            op(
                IslandOperation::AddSelectedIsland,
                "Add selected island",
                "Click a region (a hole, another segment's island) to add it to the segment.",
            ),
        ];
        let operation =
            ParamSpec::choice("Operation", "Operation", operations, "KEEP_LARGEST_ISLAND");
        let size = ParamSpec::integer("MinimumSize", "Minimum size", "1000")
            .help(
                "Islands of fewer voxels than this are removed (an island of exactly this size is kept).",
            )
            .range(0.0, i32::MAX as f64)
            .step(1.0)
            .unit("voxels")
            .visible_when(
                "Operation",
                &[
                    "KEEP_LARGEST_ISLAND",
                    "REMOVE_SMALL_ISLANDS",
                    "SPLIT_ISLANDS_TO_SEGMENTS",
                ],
            );
        let mut spec = EffectSpec::new(
            "Islands",
            "islands",
            "Islands",
            "Edit the islands (6-connected components) of the selected segment.",
        );
        spec.inputs = vec![Input::SelectedSegment];
        spec.params = vec![operation, size];
        spec.reported = vec![
            ("islands", "Number of islands in the segment."),
            (
                "islands_kept",
                "Number of islands of at least the minimum size.",
            ),
            (
                "island_voxels",
                "Size of the clicked island (click operations).",
            ),
        ];
        spec
    }

    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
        let p = IslandsParams::from_values(request.params)?;
        let selected = request.selected_mask();
        let merged =
            (p.operation == IslandOperation::AddSelectedIsland).then(|| request.merged_visible());
        let input = IslandsInput {
            selected: selected.view(),
            point_kji: request.point(),
            visible_labels: merged.as_ref().map(|m| m.view()),
        };
        islands(&input, &p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(nj: usize, ni: usize, rows: &str) -> Array3<u8> {
        let v: Vec<u8> = rows
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| u8::from(c == '#'))
            .collect();
        Array3::from_shape_vec((1, nj, ni), v).unwrap()
    }

    fn run(selected: &Array3<u8>, op: IslandOperation, min: u64) -> EffectOutput {
        islands(
            &IslandsInput::new(selected.view()),
            &IslandsParams {
                operation: op,
                minimum_size: min,
            },
        )
        .unwrap()
    }

    fn flat(m: &Modifier) -> String {
        m.mask
            .iter()
            .map(|&v| if v != 0 { '#' } else { '.' })
            .collect()
    }

    #[test]
    fn keep_largest_keeps_the_first_of_equal_islands() {
        // Two islands of 2 voxels; the one met first in raster order wins.
        let s = seg(2, 4, "..## ##..");
        let out = run(&s, IslandOperation::KeepLargestIsland, 0);
        assert_eq!(flat(&out.modifiers[0]), "..##....");
        assert_eq!(out.modifiers[0].mode, ModificationMode::Set);
    }

    #[test]
    fn keep_largest_clears_a_segment_below_the_minimum_size() {
        let s = seg(1, 4, "##.#");
        let out = run(&s, IslandOperation::KeepLargestIsland, 3);
        assert_eq!(flat(&out.modifiers[0]), "....");
        // Exactly the minimum size is kept.
        let out = run(&s, IslandOperation::KeepLargestIsland, 2);
        assert_eq!(flat(&out.modifiers[0]), "##..");
    }

    #[test]
    fn remove_small_keeps_islands_of_at_least_the_minimum() {
        let s = seg(1, 8, "###.##.#");
        let out = run(&s, IslandOperation::RemoveSmallIslands, 2);
        assert_eq!(flat(&out.modifiers[0]), "###.##..");
    }

    #[test]
    fn split_writes_new_segments_first_in_size_order() {
        let s = seg(1, 9, "#.###.##.");
        let out = run(&s, IslandOperation::SplitIslandsToSegments, 1);
        let targets: Vec<_> = out
            .modifiers
            .iter()
            .map(|m| (m.target.clone(), flat(m)))
            .collect();
        assert_eq!(
            targets,
            vec![
                (
                    Target::NewSegment {
                        suffix: "_2".into()
                    },
                    "......##.".to_string()
                ),
                (
                    Target::NewSegment {
                        suffix: "_3".into()
                    },
                    "#........".to_string()
                ),
                (Target::Selected, "..###....".to_string()),
            ]
        );
    }

    #[test]
    fn click_operations_follow_the_clicked_island() {
        let s = seg(2, 4, "##.# #..#");
        let keep = IslandsParams {
            operation: IslandOperation::KeepSelectedIsland,
            minimum_size: 1000,
        };
        let mut input = IslandsInput::new(s.view());
        input.point_kji = Some([0, 1, 3]);
        let out = islands(&input, &keep).unwrap();
        assert_eq!(flat(&out.modifiers[0]), "...#...#");
        assert_eq!(out.modifiers[0].mode, ModificationMode::Set);
        let remove = IslandsParams {
            operation: IslandOperation::RemoveSelectedIsland,
            ..keep
        };
        let out = islands(&input, &remove).unwrap();
        assert_eq!(out.modifiers[0].mode, ModificationMode::Remove);
        // A click on background changes nothing.
        input.point_kji = Some([0, 1, 1]);
        assert!(islands(&input, &keep).unwrap().modifiers.is_empty());
        // A click outside the volume is an error that names the point.
        input.point_kji = Some([0, 2, 0]);
        let err = islands(&input, &keep).unwrap_err().to_string();
        assert!(err.contains("outside"), "{err}");
    }

    #[test]
    fn add_selected_fills_a_hole_and_stops_at_the_padded_box() {
        // A ring with a hole at (j=1, i=2); the box of the ring is columns 1..4, padded 0..5.
        let s = seg(3, 5, ".###. .#.#. .###.");
        let labels = s.mapv(u16::from);
        let mut input = IslandsInput::new(s.view());
        input.visible_labels = Some(labels.view());
        input.point_kji = Some([0, 1, 2]);
        let add = IslandsParams {
            operation: IslandOperation::AddSelectedIsland,
            minimum_size: 0,
        };
        let out = islands(&input, &add).unwrap();
        assert_eq!(flat(&out.modifiers[0]), ".......#.......");
        assert_eq!(out.modifiers[0].mode, ModificationMode::Add);
        // Background outside the ring: column 0, cut off from column 4 by the ring.
        input.point_kji = Some([0, 0, 0]);
        let out = islands(&input, &add).unwrap();
        assert_eq!(flat(&out.modifiers[0]), "#....#....#....");
    }
}
