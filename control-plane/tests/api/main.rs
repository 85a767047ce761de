//! The control plane's API tests: every endpoint through the router without sockets, on both
//! backends. One module per flow.

mod support;
use media::wav;

mod accounts;
mod billing;
mod errors;
mod home;
mod ingest;
mod isp;
mod kafka;
mod packages;
mod play;
mod playlists;
mod search;
mod services;
mod uploads;
mod web;
