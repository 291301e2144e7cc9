//! storwatch, the library behind the binary: collectors, the derived values, checks, encoding and
//! the HTTP server. `main.rs` only wires them; benches and fuzz targets call the parsers here.

pub mod checks;
pub mod cli;
pub mod collectors;
pub mod config;
pub mod derive;
pub mod http;
pub mod metrics;
pub mod paths;
pub mod report;
pub mod sdnotify;
pub mod state;
pub mod webconfig;
