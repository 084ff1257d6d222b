//! Auto lungs: the right and left lungs of a chest CT in two segments, "right lung" and
//! "left lung", with Slicer's colours and terminology ([`crate::auto::lungs`], after Hu,
//! Hoffman and Reinhardt, IEEE TMI 2001).
//!
//! Each lung is written with mode Set into the segment of that name, which is created
//! (with the lung's colour and terminology) when the segmentation has none, so running
//! the effect again replaces the lungs instead of adding segments. Masking applies as for
//! any effect.

use super::schema::{EffectSpec, Input, ParamSpec};
use super::{Effect, EffectError, EffectOutput, EffectRequest, ModificationMode, Modifier, Target};
use crate::auto::lungs::{
    segment_lungs, LungOptions, LEFT_LUNG, LEFT_LUNG_COLOR, LEFT_LUNG_TERMINOLOGY, RIGHT_LUNG,
    RIGHT_LUNG_COLOR, RIGHT_LUNG_TERMINOLOGY,
};

/// Auto lungs' parameters; `Default` is the published method.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoLungsParams {
    /// Select the air/tissue threshold automatically (Hu's iterative method).
    pub automatic_threshold: bool,
    /// The threshold in HU when not automatic.
    pub threshold_hu: f64,
    /// Remove the trachea and the main bronchi.
    pub exclude_airways: bool,
    /// Fill holes (vessels, nodules) in every axial slice.
    pub fill_holes: bool,
}

impl Default for AutoLungsParams {
    fn default() -> Self {
        AutoLungsParams {
            automatic_threshold: true,
            threshold_hu: -500.0,
            exclude_airways: true,
            fill_holes: true,
        }
    }
}

impl AutoLungsParams {
    /// The parameters from checked values.
    pub fn from_values(v: &super::ParamValues) -> Result<Self, EffectError> {
        Ok(AutoLungsParams {
            automatic_threshold: v.boolean("AutomaticThreshold")?,
            threshold_hu: v.double("ThresholdHu")?,
            exclude_airways: v.boolean("ExcludeAirways")?,
            fill_holes: v.boolean("FillHoles")?,
        })
    }

    /// The pipeline's options.
    pub fn options(&self) -> LungOptions {
        LungOptions {
            threshold_hu: (!self.automatic_threshold).then_some(self.threshold_hu),
            exclude_airways: self.exclude_airways,
            fill_holes: self.fill_holes,
        }
    }
}

/// The Auto lungs effect.
pub struct AutoLungs;

impl Effect for AutoLungs {
    fn spec(&self) -> EffectSpec {
        let mut spec = EffectSpec::new(
            "Auto lungs",
            "auto-lungs",
            "Auto lungs",
            "Segments the right and left lungs of a chest CT (in Hounsfield units) into the \
             segments \"right lung\" and \"left lung\" (created when missing), with the \
             trachea and main bronchi left out and vessels and nodules inside the lungs \
             included. Classical image processing after Hu et al. 2001: no model, no GPU.",
        );
        spec.inputs = vec![Input::SourceVolume];
        spec.long_running = true;
        spec.params = vec![
            ParamSpec::boolean("AutomaticThreshold", "Automatic threshold", "1").help(
                "Select the air/tissue threshold from the image (Hu's iterative optimal \
                 threshold, kept within -700 to -300 HU).",
            ),
            ParamSpec::double("ThresholdHu", "Threshold", "-500")
                .range(-1000.0, 0.0)
                .step(10.0)
                .unit("HU")
                .help("Air/tissue threshold when it is not automatic.")
                .visible_when("AutomaticThreshold", &["0"]),
            ParamSpec::boolean("ExcludeAirways", "Exclude airways", "1")
                .help("Leave the trachea and the main bronchi out of the lungs."),
            ParamSpec::boolean("FillHoles", "Fill holes", "1")
                .help("Include vessels and nodules surrounded by lung in every axial slice."),
        ];
        spec.reported = vec![
            ("right_lung_ml", "Volume of the right lung (mL)."),
            ("left_lung_ml", "Volume of the left lung (mL)."),
            ("threshold_hu", "The air/tissue threshold used (HU)."),
            ("airways_ml", "Volume of the airways left out (mL)."),
            ("warnings", "Number of warnings (see the engine's log)."),
        ];
        spec
    }

    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
        let source = request.source("Auto lungs")?;
        let params = AutoLungsParams::from_values(request.params)?;
        let lungs = segment_lungs(source, &params.options(), request.control)?;
        let lung = |label, name: &str, color, terminology: &str| Modifier {
            target: Target::Named {
                name: name.into(),
                color,
                terminology: terminology.into(),
            },
            mode: ModificationMode::Set,
            mask: lungs.labels.data.mapv(|v| u8::from(v == label)),
            bypass_masking: false,
            overwrite: None,
        };
        Ok(EffectOutput {
            modifiers: vec![
                lung(
                    RIGHT_LUNG,
                    "right lung",
                    RIGHT_LUNG_COLOR,
                    RIGHT_LUNG_TERMINOLOGY,
                ),
                lung(
                    LEFT_LUNG,
                    "left lung",
                    LEFT_LUNG_COLOR,
                    LEFT_LUNG_TERMINOLOGY,
                ),
            ],
            reported: vec![
                ("right_lung_ml".into(), lungs.right_ml),
                ("left_lung_ml".into(), lungs.left_ml),
                ("threshold_hu".into(), lungs.threshold_hu),
                ("airways_ml".into(), lungs.airways_ml),
                ("warnings".into(), lungs.warnings.len() as f64),
            ],
            volumes: Vec::new(),
        })
    }
}
