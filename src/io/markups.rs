//! Slicer's markups point lists: the positions of a `.mrk.json` (Slicer ≥ 4.11) or `.fcsv`
//! (older Slicer) file, in LPS millimetres.
//!
//! - **`.mrk.json`**: the control points of every markup in `markups[]`, in file order;
//!   `coordinateSystem` is `"LPS"` (Slicer's default when writing, and the schema's when
//!   absent) or `"RAS"`. Points whose `positionStatus` is not `"defined"` (a point being
//!   placed, or one without a position) are skipped, as Slicer skips them.
//! - **`.fcsv`**: one point per line after the `#` comments, columns
//!   `id,x,y,z,...`; the `# CoordinateSystem = ` comment gives `LPS` or `RAS` (or `1` and
//!   `0` in old files); without it the points are RAS, as old Slicer wrote them.

use crate::error::{Error, Result};
use std::path::Path;

/// Files above this size are refused before they are read.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// The defined points of a Slicer markups file, in LPS millimetres, in file order.
///
/// # Errors
/// The file cannot be read, is not `.mrk.json` or `.fcsv`, is larger than
/// [`MAX_FILE_BYTES`], is malformed (with the line or field), or holds no defined point.
pub fn read_points_lps(path: &Path) -> Result<Vec<[f64; 3]>> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let json = name.ends_with(".json");
    if !json && !name.ends_with(".fcsv") {
        return Err(Error::unsupported(
            path,
            "not a Slicer markups file (expected .mrk.json or .fcsv)",
        ));
    }
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            what: "a markups file".into(),
            requested: size,
            limit: MAX_FILE_BYTES,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let bad = |reason: String| Error::Format {
        path: path.to_path_buf(),
        format: if json { "markups JSON" } else { "markups FCSV" },
        reason,
    };
    let points = if json {
        parse_mrk_json(&text).map_err(bad)?
    } else {
        parse_fcsv(&text).map_err(bad)?
    };
    if points.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{}: the markups file holds no defined point",
            path.display()
        )));
    }
    Ok(points)
}

fn to_lps(p: [f64; 3], ras: bool) -> [f64; 3] {
    if ras {
        [-p[0], -p[1], p[2]]
    } else {
        p
    }
}

fn parse_mrk_json(text: &str) -> std::result::Result<Vec<[f64; 3]>, String> {
    let root: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let markups = root
        .get("markups")
        .and_then(|m| m.as_array())
        .ok_or("no \"markups\" array")?;
    let mut out = Vec::new();
    for (m, markup) in markups.iter().enumerate() {
        let ras = match markup.get("coordinateSystem").and_then(|c| c.as_str()) {
            None | Some("LPS") => false,
            Some("RAS") => true,
            Some(other) => {
                return Err(format!(
                    "markups[{m}].coordinateSystem is {other:?} (expected \"LPS\" or \"RAS\")"
                ))
            }
        };
        let Some(points) = markup.get("controlPoints") else {
            continue;
        };
        let points = points
            .as_array()
            .ok_or(format!("markups[{m}].controlPoints is not an array"))?;
        for (n, p) in points.iter().enumerate() {
            let status = p.get("positionStatus").and_then(|s| s.as_str());
            if !matches!(status, None | Some("defined")) {
                continue;
            }
            let position = p
                .get("position")
                .and_then(|v| v.as_array())
                .filter(|v| v.len() == 3)
                .ok_or(format!(
                    "markups[{m}].controlPoints[{n}].position is not 3 numbers"
                ))?;
            let mut xyz = [0.0; 3];
            for (a, v) in position.iter().enumerate() {
                xyz[a] = v.as_f64().filter(|x| x.is_finite()).ok_or(format!(
                    "markups[{m}].controlPoints[{n}].position[{a}] is not a finite number"
                ))?;
            }
            out.push(to_lps(xyz, ras));
        }
    }
    Ok(out)
}

fn parse_fcsv(text: &str) -> std::result::Result<Vec<[f64; 3]>, String> {
    let mut ras = true;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix('#') {
            if let Some((key, value)) = comment.split_once('=') {
                if key.trim().eq_ignore_ascii_case("CoordinateSystem") {
                    ras = match value.trim() {
                        "RAS" | "0" => true,
                        "LPS" | "1" => false,
                        other => {
                            return Err(format!(
                                "line {}: CoordinateSystem {other:?} (expected LPS or RAS)",
                                n + 1
                            ))
                        }
                    };
                }
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() < 4 {
            return Err(format!("line {}: fewer than 4 columns (id,x,y,z)", n + 1));
        }
        let mut xyz = [0.0; 3];
        for a in 0..3 {
            xyz[a] = fields[1 + a]
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or(format!(
                    "line {}: column {} ({:?}) is not a number",
                    n + 1,
                    2 + a,
                    fields[1 + a]
                ))?;
        }
        out.push(to_lps(xyz, ras));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    /// As Slicer 5 writes a point list (trimmed of display settings).
    const MRK: &str = r#"{
    "@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/markups-schema-v1.0.3.json#",
    "markups": [
        {
            "type": "Fiducial",
            "coordinateSystem": "LPS",
            "coordinateUnits": "mm",
            "controlPoints": [
                { "id": "1", "label": "F-1", "position": [-10.5, 20.0, 30.25], "positionStatus": "defined" },
                { "id": "2", "label": "F-2", "position": [1.0, 2.0, 3.0], "positionStatus": "preview" },
                { "id": "3", "label": "F-3", "position": [4.0, -5.0, 6.0], "positionStatus": "defined" }
            ]
        },
        {
            "type": "Fiducial",
            "coordinateSystem": "RAS",
            "controlPoints": [ { "id": "1", "position": [7.0, 8.0, 9.0] } ]
        }
    ]
}"#;

    #[test]
    fn mrk_json_points_in_lps() {
        let (_d, p) = put("F.mrk.json", MRK);
        assert_eq!(
            read_points_lps(&p).unwrap(),
            vec![[-10.5, 20.0, 30.25], [4.0, -5.0, 6.0], [-7.0, -8.0, 9.0]]
        );
    }

    #[test]
    fn fcsv_points_in_lps() {
        let text = "# Markups fiducial file version = 4.11\n# CoordinateSystem = LPS\n\
                    # columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n\
                    vtkMRMLMarkupsFiducialNode_0,-1.5,2,3,0,0,0,1,1,1,0,F-1,,\n";
        let (_d, p) = put("F.fcsv", text);
        assert_eq!(read_points_lps(&p).unwrap(), vec![[-1.5, 2.0, 3.0]]);
        let old = "# Markups fiducial file version = 4.6\n# CoordinateSystem = 0\n\
                   vtkMRMLMarkupsFiducialNode_0,1,2,3,0,0,0,1,1,1,0,F-1,,\n";
        let (_d, p) = put("old.fcsv", old);
        assert_eq!(read_points_lps(&p).unwrap(), vec![[-1.0, -2.0, 3.0]]);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let cases = [
            ("a.mrk.json", "{\"markups\": 3}", "no \"markups\" array"),
            ("b.mrk.json", "not json", "invalid markups JSON"),
            (
                "c.mrk.json",
                r#"{"markups":[{"controlPoints":[{"position":[1,2]}]}]}"#,
                "position is not 3 numbers",
            ),
            (
                "d.mrk.json",
                r#"{"markups":[{"coordinateSystem":"XYZ","controlPoints":[]}]}"#,
                "coordinateSystem",
            ),
            ("e.mrk.json", r#"{"markups":[]}"#, "no defined point"),
            ("f.fcsv", "p,1,x,3\n", "line 1: column 3"),
            ("g.fcsv", "p,1\n", "fewer than 4 columns"),
            ("h.txt", "1,2,3", "expected .mrk.json or .fcsv"),
        ];
        for (name, text, want) in cases {
            let (_d, p) = put(name, text);
            let err = read_points_lps(&p).unwrap_err().to_string();
            assert!(err.contains(want), "{name}: {err}");
            assert!(err.contains(name), "{name}: {err}");
        }
    }
}
