//! Test support (unit tests only): a source run through the model, its families and its checks,
//! at a time the test chooses; and lookups of a value or a verdict in what came out.

use std::time::Instant;

use crate::checks::{self, CheckResult};
use crate::error::CollectError;
use crate::families;
use crate::metrics::Family;
use crate::model::Model;
use crate::sources::Source;

/// One source feeding a model, with the default config.
#[derive(Default)]
pub struct Pipeline {
    pub model: Model,
    pub config: checks::Config,
    pub families: families::Options,
}

/// What one run published.
#[derive(Debug)]
pub struct Out {
    pub families: Vec<Family>,
    pub checks: Vec<CheckResult>,
    pub errors: Vec<CollectError>,
}

impl Pipeline {
    /// Reads `source` once as if at `at`, takes the sample into the model and returns the source's
    /// families and the results of the checks that read it; `Err` when the source failed.
    pub fn run(&mut self, source: &mut dyn Source, at: Instant) -> Result<Out, CollectError> {
        let name = source.name();
        let mut c = source.sample()?;
        c.at = at;
        let errors = std::mem::take(&mut c.errors);
        self.model.update(c);
        let families = families::build(&self.model, name, &self.families);
        let checks = checks::judge_inputs_of(name, &self.model, &self.config, at)
            .into_iter()
            .flat_map(|(_, results)| results)
            .collect();
        Ok(Out { families, checks, errors })
    }
}

impl Out {
    /// The value of the first sample of `name` whose labels include all of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let f = self.families.iter().find(|f| f.name == name)?;
        let s = f
            .samples
            .iter()
            .find(|s| labels.iter().all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v)))?;
        Some(s.value)
    }

    /// The verdict on `subject` of `check`.
    pub fn check(&self, check: &str, subject: &str) -> Option<bool> {
        self.result(check, subject).map(|r| r.ok())
    }

    pub fn result(&self, check: &str, subject: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|r| r.check == check && r.subject == subject)
    }

    /// Whether no family has a sample.
    pub fn no_samples(&self) -> bool {
        self.families.iter().all(|f| f.samples.is_empty())
    }
}
