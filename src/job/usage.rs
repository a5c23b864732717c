//! The job's running spend, written down after every model call so that it
//! outlives the job: `usage.json` in the result directory, which the workflow
//! uploads whatever the agent's step ended with. When the job left no result
//! (killed by its time limit, a crash), `missions publish` pushes the ledger
//! to `.missions/<issue>/usage/<job>.json` on the reports branch, and the App
//! counts it; the App never has to guess what a run that died had spent.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::llm::pricing::{Micros, Prices};
use crate::llm::{ChatRequest, ChatResponse, LlmError, Provider, Usage};
use crate::mission::JobUsage;

/// The ledger's file name in the result directory.
pub const LEDGER: &str = "usage.json";
/// Larger than any ledger the harness writes: a bigger file is not one.
pub const MAX_LEDGER_BYTES: u64 = 4096;

pub use crate::mission::outputs::{UsageLedger, ledger_path};

/// The job's ledger: added to after every model call, written at once.
pub struct Ledger {
    path: Option<PathBuf>,
    state: Mutex<UsageLedger>,
}

impl Ledger {
    /// A ledger for `job`, written into `dir` (none: kept in memory only, for
    /// a job that pushes its own result).
    /// Written at once, empty: a job that dies before its first answer
    /// leaves a ledger that says it spent nothing (none at all means the job
    /// never started, and the App estimates).
    pub fn new(dir: Option<&Path>, job: &str) -> Arc<Ledger> {
        let ledger = Ledger {
            path: dir.map(|d| d.join(LEDGER)),
            state: Mutex::new(UsageLedger {
                job: job.to_owned(),
                ..UsageLedger::default()
            }),
        };
        if let Err(e) = ledger.write(&ledger.snapshot()) {
            tracing::warn!("cannot write the usage ledger: {e:#}");
        }
        Arc::new(ledger)
    }

    /// Counts one answered call (or a whole engine run's, `calls` at once).
    pub fn add(&self, calls: u32, usage: &Usage, cost_micros: Micros) {
        let snapshot = {
            let mut state = self.state.lock().expect("usage ledger");
            state.calls = state.calls.saturating_add(calls);
            state.usage.add(&JobUsage {
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cache_read_tokens: usage.cache_read_tokens,
                cache_write_tokens: usage.cache_write_tokens,
                cost_micros,
            });
            state.clone()
        };
        if let Err(e) = self.write(&snapshot) {
            // The envelope still carries the usage when the job ends well.
            tracing::warn!("cannot write the usage ledger: {e:#}");
        }
    }

    pub fn snapshot(&self) -> UsageLedger {
        self.state.lock().expect("usage ledger").clone()
    }

    /// Whole or not at all: a job killed mid-write leaves the previous one.
    fn write(&self, ledger: &UsageLedger) -> anyhow::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(ledger)?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// A provider whose every answer is counted in the job's ledger.
pub struct Metered {
    inner: Box<dyn Provider>,
    prices: Prices,
    ledger: Arc<Ledger>,
}

impl Metered {
    pub fn new(inner: Box<dyn Provider>, prices: Prices, ledger: Arc<Ledger>) -> Metered {
        Metered {
            inner,
            prices,
            ledger,
        }
    }
}

#[async_trait]
impl Provider for Metered {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let response = self.inner.chat(request).await?;
        self.ledger
            .add(1, &response.usage, self.prices.cost(&response.usage));
        Ok(response)
    }
}

/// Reads a ledger the agent's job left, trusting nothing: its size, shape and
/// job key are checked.
pub fn read_ledger(dir: &Path, job: &str) -> anyhow::Result<Option<UsageLedger>> {
    let path = dir.join(LEDGER);
    let Ok(meta) = std::fs::metadata(&path) else {
        return Ok(None);
    };
    if meta.len() > MAX_LEDGER_BYTES {
        anyhow::bail!(
            "{LEDGER} is {} bytes, more than a ledger; refused",
            meta.len()
        );
    }
    let ledger: UsageLedger = serde_json::from_slice(&std::fs::read(&path)?)
        .map_err(|e| anyhow::anyhow!("{LEDGER} is not a usage ledger: {e}"))?;
    if ledger.job != job {
        anyhow::bail!("{LEDGER} is for job {:?}, not {job:?}; refused", ledger.job);
    }
    Ok(Some(ledger))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_is_on_disk_after_every_call_and_read_back_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(Some(dir.path()), "feature-F1.1");
        let call = Usage {
            input_tokens: 1000,
            output_tokens: 10,
            ..Usage::default()
        };
        ledger.add(1, &call, 3_150);
        ledger.add(1, &call, 3_150);
        let read = read_ledger(dir.path(), "feature-F1.1").unwrap().unwrap();
        assert_eq!(read.calls, 2);
        assert_eq!(read.usage.input_tokens, 2000);
        assert_eq!(read.usage.cost_micros, 6_300);
        assert!(read_ledger(dir.path(), "feature-F2.1").is_err());
        std::fs::write(
            dir.path().join(LEDGER),
            b"{\"job\":\"feature-F1.1\",\"x\":1}",
        )
        .unwrap();
        assert!(read_ledger(dir.path(), "feature-F1.1").is_err());
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(read_ledger(empty.path(), "feature-F1.1").unwrap(), None);
    }
}
