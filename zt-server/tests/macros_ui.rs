//! Compile-time checks of `#[callers]` and `#[derive(Declared)]`: every form
//! that must compile (and whose declarations are checked when run), and
//! every mistake that must fail with an error pointing at the literal.

#[test]
fn macros() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
