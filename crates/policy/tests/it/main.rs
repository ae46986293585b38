//! Integration tests of the policy engine through its public API: the
//! decision paths, loading and its errors, the index, policy tests and
//! replay.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cases;
mod decide;
mod index;
mod load;
mod replay;
mod util;
