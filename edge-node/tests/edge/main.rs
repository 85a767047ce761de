//! The edge node against a scriptable origin, over every protocol.

mod support;

mod abuse;
mod caching;
mod certificates;
mod conformance;
mod differential;
mod http1;
mod input;
mod ranges;
mod restart;
mod tokens;
