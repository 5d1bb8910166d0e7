//! The page's generation request: the checks the wasm API applies before any work starts.

use dit_web::diffusion::SamplerKind;
use dit_web::request::{Request, MAX_BATCH, MAX_STEPS};

fn check(json: &str) -> Result<dit_web::diffusion::SamplerConfig, String> {
    Request::from_json(json)?.sampler_config()
}

#[test]
fn a_minimal_request_takes_the_page_defaults() {
    let request = Request::from_json(r#"{"labels": ["3", "7"]}"#).unwrap();
    assert_eq!(request.labels, ["3", "7"]);
    assert!(!request.preview);
    let config = request.sampler_config().unwrap();
    assert_eq!(config.kind, SamplerKind::DpmSolverPP);
    assert_eq!((config.steps, config.guidance, config.seed), (20, 1.0, 0));
    let config =
        check(r#"{"labels": ["1"], "sampler": "ddim", "steps": 50, "cfg": 3, "seed": 9007199254740991, "eta": 0.5}"#)
            .unwrap();
    assert_eq!(config.kind, SamplerKind::Ddim);
    assert_eq!(
        (config.steps, config.eta, config.seed),
        (50, 0.5, (1 << 53) - 1)
    );
    assert_eq!(config.guidance_interval, None);
    let config = check(r#"{"labels": ["1"], "cfg": 3, "cfg_interval": [100, 399]}"#).unwrap();
    assert_eq!(config.guidance_interval, Some([100, 399]));
    // DDPM over every timestep.
    assert_eq!(
        check(r#"{"labels": ["1"], "sampler": "ddpm", "steps": 0}"#)
            .unwrap()
            .steps,
        0
    );
}

#[test]
fn every_bad_field_is_named_in_the_message() {
    let many = format!(r#"{{"labels": {:?}}}"#, vec!["1"; MAX_BATCH + 1]);
    let cases = [
        (r#"{"labels": []}"#.to_string(), "give 1..=64 labels"),
        (many, "got 65"),
        (
            r#"{"labels": ["1"], "steps": 0}"#.into(),
            "steps must be 1..=1000",
        ),
        (
            format!(r#"{{"labels": ["1"], "steps": {}}}"#, MAX_STEPS + 1),
            "got 1001",
        ),
        (
            r#"{"labels": ["1"], "seed": 1.5}"#.into(),
            "seed must be a whole number",
        ),
        (
            r#"{"labels": ["1"], "seed": -1}"#.into(),
            "seed must be a whole number",
        ),
        (
            r#"{"labels": ["1"], "seed": 9007199254740992}"#.into(),
            "0..=2^53-1",
        ),
        (
            r#"{"labels": ["1"], "eta": 2}"#.into(),
            "eta must be in [0, 1]",
        ),
        (
            r#"{"labels": ["1"], "sampler": "euler"}"#.into(),
            "unknown sampler `euler`",
        ),
        (
            r#"{"labels": ["1"], "guidance": 3}"#.into(),
            "unknown field `guidance`",
        ),
        (
            r#"{"labels": ["1"], "cfg_interval": [300, 100]}"#.into(),
            "cfg_interval [300, 100]",
        ),
        (
            r#"{"labels": ["1"], "cfg_interval": [100]}"#.into(),
            "bad request",
        ),
        (r#"{"labels": "1"}"#.into(), "bad request"),
        ("[1, 2]".into(), "bad request"),
    ];
    for (json, expected) in cases {
        let err = check(&json).unwrap_err();
        assert!(err.contains(expected), "{json}: {err}");
    }
}
