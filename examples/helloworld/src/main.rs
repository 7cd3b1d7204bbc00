//! The helloworld demo service (placeholder while it lands).

fn main() {}
