//! The names and version that mark a dit-web weight file.

/// The version this build writes; files with a larger one are refused with a clear message.
pub const FORMAT_VERSION: u32 = 1;
/// The safetensors metadata key that holds the JSON [`super::WeightsMeta`].
pub const METADATA_KEY: &str = "dit-web";
/// The suffix of a quantized matrix's scales: `<name>.qscale`.
pub(super) const SCALE_SUFFIX: &str = ".qscale";
