//! storwatch, the library behind the binary. The layers, each importing only those below it
//! (tests/layers.rs checks this):
//!
//! 1. foundations: `error`, `paths`, `read` (small kernel files), `values` (config value
//!    syntaxes), `metrics` (the metric model and encoders), `device` (NVMe admin and SG_IO
//!    commands), `process` (the agent's own `process_*` series), `sdnotify`, `webconfig`;
//! 2. `sources`: one module per source, I/O through `Paths` into typed samples;
//! 3. `model`: the latest samples and every derived value;
//! 4. outputs, plain functions of the model: `families` (metric families) and `checks`;
//! 5. `config` (the TOML file), `state` (the model and what scrapes encode), `report`
//!    (`storwatch check`);
//! 6. `cli`, `http`; `main.rs` only wires them. Benches and fuzz targets call the parsers here.

pub mod checks;
pub mod cli;
pub mod config;
pub mod device;
pub mod error;
pub mod families;
pub mod http;
pub mod metrics;
pub mod model;
pub mod paths;
pub mod process;
pub mod read;
pub mod report;
pub mod sdnotify;
pub mod sources;
pub mod state;
#[cfg(test)]
pub mod testing;
pub mod values;
pub mod webconfig;
