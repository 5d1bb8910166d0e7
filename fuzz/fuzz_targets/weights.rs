//! Any byte string given to the weight-file reader must come back as a model or a typed error.
#![no_main]

use dit_web::weights::WeightFile;
use libfuzzer_sys::fuzz_target;

type B = burn::backend::NdArray<f32>;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = WeightFile::from_bytes(data) {
        let _ = file.into_model::<B>(&Default::default());
    }
});
