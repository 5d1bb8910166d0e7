//! The README's library example is `examples/generate.rs` (which `make test` compiles) word for
//! word, so the example a stranger copies from the README builds.

#[test]
fn the_readme_shows_the_example_that_compiles() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example = std::fs::read_to_string(format!("{root}/examples/generate.rs")).unwrap();
    // The example without its header comment.
    let code: String = example
        .lines()
        .skip_while(|l| l.starts_with("//!") || l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    let block = readme
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```rust block in the README");
    assert_eq!(
        block, code,
        "README.md's rust block differs from examples/generate.rs"
    );
}
