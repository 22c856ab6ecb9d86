//! [`Registry::check`]: reads every entry the way the commands do and lists what is damaged.

use crate::registry::{Damaged, Registry};
use crate::Result;

/// What [`Registry::check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Runs whose record and artifacts verified.
    pub runs: usize,
    /// Model versions whose manifest and files verified.
    pub versions: usize,
    /// Models whose alias state (aliases, rollback stacks, audit) decoded.
    pub models: usize,
    /// Everything that did not, one entry per file or directory.
    pub damaged: Vec<Damaged>,
}

impl CheckReport {
    /// No damaged entry.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
    }
}

impl Registry {
    /// Verifies the whole registry: every run record and artifact (sha256), every version's
    /// manifest and files (sha256, size), every model's alias state and that its aliases point
    /// at existing versions. Nothing is changed; damaged entries are listed, not fatal.
    pub fn check(&self) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let (all, unreadable) = self.all_runs(None)?;
        report.damaged.extend(unreadable);
        let mut damaged = |path: std::path::PathBuf, problem: String| {
            report.damaged.push(Damaged { path, problem });
        };
        let mut runs = 0;
        for run in all {
            let mut ok = true;
            for a in &run.artifacts {
                if let Err(err) = self.artifact(&run.id, &a.name) {
                    ok = false;
                    damaged(
                        self.entry(&format!("runs/{}/artifacts/{}", run.id, a.name)),
                        err.to_string(),
                    );
                }
            }
            runs += usize::from(ok);
        }
        let mut versions = 0;
        let mut models = 0;
        for model in self.models()? {
            let dir = self.entry(&format!("models/{model}"));
            let known = match self.versions(&model) {
                Ok(v) => v,
                Err(err) => {
                    damaged(dir, err.to_string());
                    continue;
                }
            };
            for &v in &known {
                match self.load(&model, v) {
                    Ok(_) => versions += 1,
                    Err(err) => damaged(dir.join(format!("v{v}")), err.to_string()),
                }
            }
            match self.aliases(&model) {
                Ok(aliases) => {
                    let mut ok = true;
                    for (alias, v) in aliases {
                        if !known.contains(&v) {
                            ok = false;
                            damaged(
                                dir.join("ALIASES"),
                                format!("alias {alias} points at v{v}, which does not exist"),
                            );
                        }
                    }
                    models += usize::from(ok);
                }
                Err(err) => damaged(dir.join("ALIASES"), err.to_string()),
            }
        }
        report.runs = runs;
        report.versions = versions;
        report.models = models;
        Ok(report)
    }
}
