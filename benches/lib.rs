//! Nothing here: the benchmarks are the `[[bench]]` targets beside it.
