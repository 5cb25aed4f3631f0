//! Central Lambda; built in a later change.

fn main() {}
