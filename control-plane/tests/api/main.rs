//! The control plane's API tests: every endpoint through the router without sockets, on both
//! backends. One module per flow.

mod support;
#[path = "../common/wav.rs"]
mod wav;

mod accounts;
mod billing;
mod errors;
mod kafka;
mod packages;
mod playlists;
mod uploads;
