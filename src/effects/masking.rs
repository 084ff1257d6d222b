//! Applying a modifier to segments under Slicer's masking settings.
//!
//! Reference: `vtkSlicerSegmentEditorLogic::ModifySegmentByLabelmap` (Slicer 5.10 and
//! later; the same conditions as `qSlicerSegmentEditorAbstractEffect` before), and
//! `vtkMRMLSegmentationNode::GenerateEditMask`. Given the selected segment `S`, a modifier
//! `M` and a mode:
//!
//! 1. A lock image `L` is built from the editable area (unless masking is bypassed) and the
//!    editable intensity range (**even when bypassed**, as in Slicer). With the editable
//!    area "inside one segment" and mode Remove, `S` itself is unlocked so a segment can
//!    always be erased. `M' = M ∧ ¬L`; for Set, `M' = M' ∨ (S ∧ L)`, so `S` is kept where
//!    it is locked.
//! 2. `S` becomes `M'` (Set), `S ∨ M'` (Add) or `S ∧ ¬M'` (Remove, RemoveAll).
//! 3. For Set, Add and RemoveAll, `M'` is removed from the segments to overwrite: all other
//!    segments, the visible ones, or none (for RemoveAll always all others; none when
//!    bypassed).
//! 4. Remove with the editable area "inside one segment" other than `S` gives the removed
//!    voxels to that segment.
//!
//! Segments are full-size 0/1 masks on the reference lattice, in display order.

use super::{EffectError, EffectOutput, ModificationMode, Target};
use crate::volume::{AnyVolume, Scalar};
use crate::with_volume;
use ndarray::{Array3, ArrayView3, Zip};

/// Where the selected segment may be edited (Slicer's `MaskMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaskMode {
    /// Everywhere (Slicer's default).
    #[default]
    Everywhere,
    /// Inside any segment, the edited one included.
    InsideAllSegments,
    /// Inside any visible segment.
    InsideVisibleSegments,
    /// Outside every segment but the edited one.
    OutsideAllSegments,
    /// Outside every visible segment but the edited one.
    OutsideVisibleSegments,
    /// Inside the segment with this index; nothing is editable when it is empty.
    InsideSingleSegment(usize),
}

/// Which other segments an edit may take voxels from (Slicer's `OverwriteMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverwriteMode {
    /// All other segments (Slicer's default): segments never overlap.
    #[default]
    AllSegments,
    /// Only the visible ones.
    VisibleSegments,
    /// None: segments may overlap.
    None,
}

/// The Segment Editor's masking settings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Masking {
    pub mask_mode: MaskMode,
    pub overwrite_mode: OverwriteMode,
    /// Editable intensity range, inclusive, in source units; `None` = off.
    pub intensity_range: Option<(f64, f64)>,
}

/// Segments as Slicer's logic sees them: 0/1 masks in display order, with visibility.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentMasks {
    pub masks: Vec<Array3<u8>>,
    pub visible: Vec<bool>,
}

/// Applies `modifier` to segment `selected` with `mode` and `masking`, as Slicer's
/// `ModifySegmentByLabelmap` does. `source` is the aligned source volume, needed only when
/// an intensity range is set. Returns the indices of the segments that changed.
///
/// # Errors
/// Shapes that differ, a selected or mask segment that does not exist, or an intensity
/// range without a source volume.
pub fn apply_modifier<T: Scalar>(
    segments: &mut SegmentMasks,
    selected: usize,
    modifier: ArrayView3<u8>,
    mode: ModificationMode,
    masking: &Masking,
    bypass_masking: bool,
    source: Option<ArrayView3<T>>,
) -> Result<Vec<usize>, EffectError> {
    let n = segments.masks.len();
    if selected >= n {
        return Err(EffectError::Input(format!(
            "selected segment {selected} does not exist ({n} segments)"
        )));
    }
    let shape = modifier.dim();
    if segments.masks.iter().any(|m| m.dim() != shape) {
        return Err(EffectError::Input(format!(
            "segments and modifier differ in shape (modifier {shape:?})"
        )));
    }
    if segments.visible.len() != n {
        return Err(EffectError::Input(
            "one visibility flag per segment is needed".into(),
        ));
    }
    if let MaskMode::InsideSingleSegment(m) = masking.mask_mode {
        if m >= n {
            return Err(EffectError::Input(format!(
                "mask segment {m} does not exist ({n} segments)"
            )));
        }
    }

    // 1. Lock image and effective modifier.
    let lock = lock_image(
        &segments.masks,
        &segments.visible,
        Some(selected),
        mode,
        masking,
        bypass_masking,
        source,
        shape,
    )?;
    let mut effective = modifier.mapv(|v| u8::from(v != 0));
    if let Some(lock) = &lock {
        let s = &segments.masks[selected];
        Zip::from(&mut effective)
            .and(lock)
            .and(s)
            .for_each(|m, &l, &s| {
                let locked = l != 0;
                *m = if locked {
                    u8::from(mode == ModificationMode::Set && s != 0)
                } else {
                    *m
                };
            });
    }

    // 2. The selected segment.
    let mut changed = Vec::new();
    let before = segments.masks[selected].clone();
    {
        let s = &mut segments.masks[selected];
        match mode {
            ModificationMode::Set => s.assign(&effective),
            ModificationMode::Add => Zip::from(s).and(&effective).for_each(|s, &m| *s |= m),
            ModificationMode::Remove | ModificationMode::RemoveAll => {
                Zip::from(s).and(&effective).for_each(|s, &m| *s &= 1 - m)
            }
        }
    }
    if segments.masks[selected] != before {
        changed.push(selected);
    }

    // 3. Overwrite other segments.
    let overwritten: Vec<usize> = (0..n)
        .filter(|&t| t != selected)
        .filter(|&t| match mode {
            ModificationMode::RemoveAll => true,
            ModificationMode::Remove => false,
            _ if bypass_masking => false,
            _ => match masking.overwrite_mode {
                OverwriteMode::AllSegments => true,
                OverwriteMode::VisibleSegments => segments.visible[t],
                OverwriteMode::None => false,
            },
        })
        .collect();
    for t in overwritten {
        let mut any = false;
        Zip::from(&mut segments.masks[t])
            .and(&effective)
            .for_each(|s, &m| {
                if *s != 0 && m != 0 {
                    *s = 0;
                    any = true;
                }
            });
        if any {
            changed.push(t);
        }
    }

    // 4. Erasing inside a mask segment gives the voxels back to it.
    if let MaskMode::InsideSingleSegment(m) = masking.mask_mode {
        if mode == ModificationMode::Remove && m != selected {
            let mut any = false;
            Zip::from(&mut segments.masks[m])
                .and(&effective)
                .for_each(|s, &e| {
                    if e != 0 && *s == 0 {
                        *s = 1;
                        any = true;
                    }
                });
            if any {
                changed.push(m);
            }
        }
    }
    changed.sort_unstable();
    changed.dedup();
    Ok(changed)
}

/// Applies every modifier of an effect's output in order, as the Segment Editor does:
/// modifiers for the selected segment go to `selected` (created empty, named
/// `selected_name`, when `None`); a new segment is appended for each
/// [`Target::NewSegment`], named `selected_name` + suffix, visible; a
/// [`Target::Named`] modifier goes to the segment of that name, appended when missing.
/// `names` holds one name
/// per segment and grows with them. Returns the indices of the segments that changed,
/// and the index of the selected segment.
pub fn apply_output(
    segments: &mut SegmentMasks,
    names: &mut Vec<String>,
    selected: Option<usize>,
    selected_name: &str,
    output: &EffectOutput,
    masking: &Masking,
    source: Option<&AnyVolume>,
) -> Result<(Vec<usize>, Option<usize>), EffectError> {
    if names.len() != segments.masks.len() {
        return Err(EffectError::Input("one name per segment is needed".into()));
    }
    let mut selected = selected;
    let mut changed = Vec::new();
    for m in &output.modifiers {
        let target = match &m.target {
            Target::Selected => match selected {
                Some(n) => n,
                None => {
                    let n = push_segment(segments, names, m.mask.dim(), selected_name.to_string());
                    selected = Some(n);
                    n
                }
            },
            Target::NewSegment { suffix } => {
                let n = push_segment(
                    segments,
                    names,
                    m.mask.dim(),
                    format!("{selected_name}{suffix}"),
                );
                changed.push(n);
                n
            }
            Target::Named { name, .. } => match names.iter().position(|n| n == name) {
                Some(n) => n,
                None => {
                    let n = push_segment(segments, names, m.mask.dim(), name.clone());
                    changed.push(n);
                    n
                }
            },
            Target::Segment(n) => {
                if *n >= segments.masks.len() {
                    return Err(EffectError::Input(format!(
                        "a modifier targets segment {n}, which does not exist ({} segments)",
                        segments.masks.len()
                    )));
                }
                *n
            }
        };
        let own;
        let masking = match m.overwrite {
            Some(overwrite_mode) => {
                own = Masking {
                    overwrite_mode,
                    ..*masking
                };
                &own
            }
            None => masking,
        };
        let c = match source {
            Some(src) => with_volume!(src, v => apply_modifier(
                segments, target, m.mask.view(), m.mode, masking, m.bypass_masking, Some(v.data.view())
            )),
            None => apply_modifier::<u8>(
                segments,
                target,
                m.mask.view(),
                m.mode,
                masking,
                m.bypass_masking,
                None,
            ),
        }?;
        changed.extend(c);
    }
    changed.sort_unstable();
    changed.dedup();
    Ok((changed, selected))
}

fn push_segment(
    segments: &mut SegmentMasks,
    names: &mut Vec<String>,
    shape: (usize, usize, usize),
    name: String,
) -> usize {
    segments.masks.push(Array3::zeros(shape));
    segments.visible.push(true);
    names.push(name);
    segments.masks.len() - 1
}

/// The editable area of Slicer's `GenerateEditMask`: 1 where the selected segment (`None`
/// for a new one) may change under `masking` (editable area and intensity range), 0
/// elsewhere; `None` when everything is editable. Effects whose algorithm itself stops at
/// locked voxels (Flood filling's stencil) use it; the others leave masking to
/// [`apply_modifier`].
///
/// # Errors
/// An intensity range without a source, shapes that differ, or a mask segment that does
/// not exist.
pub fn editable_area(
    masks: &[Array3<u8>],
    visible: &[bool],
    selected: Option<usize>,
    masking: &Masking,
    source: Option<&AnyVolume>,
) -> Result<Option<Array3<u8>>, EffectError> {
    if let MaskMode::InsideSingleSegment(m) = masking.mask_mode {
        if m >= masks.len() {
            return Err(EffectError::Input(format!(
                "mask segment {m} does not exist ({} segments)",
                masks.len()
            )));
        }
    }
    let shape = match (source, masks.first()) {
        (Some(s), _) => {
            let [ni, nj, nk] = s.size_ijk();
            (nk, nj, ni)
        }
        (None, Some(m)) => m.dim(),
        (None, None) => return Ok(None),
    };
    let lock = match source {
        Some(src) => with_volume!(src, v => lock_image(
            masks, visible, selected, ModificationMode::Add, masking, false,
            Some(v.data.view()), shape
        )),
        None => lock_image::<u8>(
            masks,
            visible,
            selected,
            ModificationMode::Add,
            masking,
            false,
            None,
            shape,
        ),
    }?;
    Ok(lock.map(|l| l.mapv(|v| u8::from(v == 0))))
}

/// Non-zero where the selected segment may not change; `None` when nothing is locked.
#[allow(clippy::too_many_arguments)]
fn lock_image<T: Scalar>(
    masks: &[Array3<u8>],
    visible: &[bool],
    selected: Option<usize>,
    mode: ModificationMode,
    masking: &Masking,
    bypass_masking: bool,
    source: Option<ArrayView3<T>>,
    shape: (usize, usize, usize),
) -> Result<Option<Array3<u8>>, EffectError> {
    let use_edit_mask = !bypass_masking && masking.mask_mode != MaskMode::Everywhere;
    if !use_edit_mask && masking.intensity_range.is_none() {
        return Ok(None);
    }
    let mut lock = Array3::<u8>::zeros(shape);
    if use_edit_mask {
        let in_any = |pick: &dyn Fn(usize) -> bool| {
            let mut acc = Array3::<u8>::zeros(shape);
            for (t, m) in masks.iter().enumerate() {
                if pick(t) {
                    Zip::from(&mut acc)
                        .and(m)
                        .for_each(|a, &v| *a |= u8::from(v != 0));
                }
            }
            acc
        };
        let visible = |t: usize| visible[t];
        let other = |t: usize| Some(t) != selected;
        lock = match masking.mask_mode {
            MaskMode::Everywhere => lock,
            MaskMode::InsideAllSegments => in_any(&|_| true).mapv(|v| 1 - v),
            MaskMode::InsideVisibleSegments => in_any(&visible).mapv(|v| 1 - v),
            MaskMode::OutsideAllSegments => in_any(&other),
            MaskMode::OutsideVisibleSegments => in_any(&|t| other(t) && visible(t)),
            MaskMode::InsideSingleSegment(m) => {
                let mut l = masks[m].mapv(|v| u8::from(v == 0));
                if let (ModificationMode::Remove, Some(selected)) = (mode, selected) {
                    // One can always erase one's own segment.
                    Zip::from(&mut l).and(&masks[selected]).for_each(|l, &s| {
                        if s != 0 {
                            *l = 0;
                        }
                    });
                }
                l
            }
        };
    }
    if let Some((lo, hi)) = masking.intensity_range {
        let source = source.ok_or_else(|| {
            EffectError::Input("an editable intensity range needs the source volume".into())
        })?;
        if source.dim() != shape {
            return Err(EffectError::Input(format!(
                "source volume shape {:?} differs from the segments' {shape:?}",
                source.dim()
            )));
        }
        Zip::from(&mut lock).and(&source).for_each(|l, &v| {
            let v = v.to_f64();
            if !(v >= lo && v <= hi) {
                *l = 1;
            }
        });
    }
    Ok(Some(lock))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(s: &str) -> Array3<u8> {
        let v: Vec<u8> = s.chars().map(|c| u8::from(c == '#')).collect();
        Array3::from_shape_vec((1, 1, v.len()), v).unwrap()
    }

    fn show(a: &Array3<u8>) -> String {
        a.iter().map(|&v| if v != 0 { '#' } else { '.' }).collect()
    }

    fn segs(rows: &[&str]) -> SegmentMasks {
        SegmentMasks {
            masks: rows.iter().map(|r| row(r)).collect(),
            visible: vec![true; rows.len()],
        }
    }

    fn apply(
        s: &mut SegmentMasks,
        sel: usize,
        m: &str,
        mode: ModificationMode,
        masking: Masking,
        source: Option<&Array3<i16>>,
    ) -> Vec<usize> {
        let m = row(m);
        apply_modifier(
            s,
            sel,
            m.view(),
            mode,
            &masking,
            false,
            source.map(|a| a.view()),
        )
        .unwrap()
    }

    #[test]
    fn set_overwrites_other_segments_by_default() {
        let mut s = segs(&["##....", "..##.."]);
        let changed = apply(
            &mut s,
            0,
            ".###..",
            ModificationMode::Set,
            Masking::default(),
            None,
        );
        assert_eq!(show(&s.masks[0]), ".###..");
        assert_eq!(show(&s.masks[1]), "......");
        assert_eq!(changed, vec![0, 1]);
    }

    #[test]
    fn overwrite_none_allows_overlap() {
        let mut s = segs(&["......", "..##.."]);
        let masking = Masking {
            overwrite_mode: OverwriteMode::None,
            ..Masking::default()
        };
        apply(&mut s, 0, ".###..", ModificationMode::Add, masking, None);
        assert_eq!(show(&s.masks[0]), ".###..");
        assert_eq!(show(&s.masks[1]), "..##..");
    }

    #[test]
    fn outside_all_segments_protects_the_others() {
        let mut s = segs(&["#.....", "..##.."]);
        let masking = Masking {
            mask_mode: MaskMode::OutsideAllSegments,
            ..Masking::default()
        };
        apply(&mut s, 0, "######", ModificationMode::Add, masking, None);
        assert_eq!(show(&s.masks[0]), "##..##");
        assert_eq!(show(&s.masks[1]), "..##..");
    }

    #[test]
    fn set_keeps_the_segment_where_it_is_locked() {
        // Intensity range [50, 200]: the left half (0) is locked.
        let src = Array3::from_shape_vec((1, 1, 6), vec![0i16, 0, 0, 100, 100, 100]).unwrap();
        let mut s = segs(&["##...."]);
        let masking = Masking {
            intensity_range: Some((50.0, 200.0)),
            ..Masking::default()
        };
        apply(
            &mut s,
            0,
            "....##",
            ModificationMode::Set,
            masking,
            Some(&src),
        );
        assert_eq!(show(&s.masks[0]), "##..##");
    }

    #[test]
    fn erasing_inside_a_mask_segment_gives_voxels_back() {
        let mut s = segs(&["..##..", "######"]);
        // Segment 1 lost its middle to segment 0 earlier; now erase segment 0 there.
        s.masks[1] = row("##..##");
        let masking = Masking {
            mask_mode: MaskMode::InsideSingleSegment(1),
            ..Masking::default()
        };
        apply(&mut s, 0, "..##..", ModificationMode::Remove, masking, None);
        assert_eq!(show(&s.masks[0]), "......");
        assert_eq!(show(&s.masks[1]), "######");
    }

    #[test]
    fn remove_all_clears_every_segment() {
        let mut s = segs(&["###...", "...###"]);
        apply(
            &mut s,
            0,
            "..##..",
            ModificationMode::RemoveAll,
            Masking::default(),
            None,
        );
        assert_eq!(show(&s.masks[0]), "##....");
        assert_eq!(show(&s.masks[1]), "....##");
    }
}
