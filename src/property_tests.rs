//! Shared settings and checks of the crate's property tests (proptest).
use proptest::prelude::*;
use proptest::test_runner::contextualize_config;

/// Longest error message (bytes) any input may produce.
pub(crate) const MAX_MESSAGE_BYTES: usize = 2048;

/// Proptest settings for the crate's property tests: `cases` is chosen per
/// property so that all of them together take about 20 s in
/// `cargo test --release` on two cores. Applying proptest's environment
/// variables last lets PROPTEST_CASES (and the others) still override it.
pub(crate) fn config(cases: u32) -> ProptestConfig {
    contextualize_config(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    })
}

/// An error message a person can read: not empty, one line, no terminal
/// control characters, and short whatever the input was.
pub(crate) fn check_message(message: &str) -> std::result::Result<(), TestCaseError> {
    prop_assert!(!message.trim().is_empty(), "empty message");
    prop_assert!(
        message.len() < MAX_MESSAGE_BYTES,
        "message of {} bytes: {:.300}...",
        message.len(),
        message
    );
    prop_assert!(
        !message.chars().any(char::is_control),
        "control character in {message:?}"
    );
    Ok(())
}
