//! The registry proper: runs on disk, model versions as checked bundles, aliases with audit.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use keel_core::{envelope, Clock, EnvelopeError, Kind, Persisted, Schema, SystemClock};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil::{self, check_name, io, read_bounded, sync_dir, write_atomic, DirLock};
#[cfg(feature = "mlflow")]
use crate::remote::{MlflowLock, MlflowRegistry};
use crate::run::{ArtifactRef, Comparison, DataRef, MetricPoint, Run, RunFilter, RunId, RunStatus};
use crate::signing::{SigningKey, TrustedKeys};
use crate::{RegistryError, Result};

/// Largest run record read back (runs are small; this bounds a forged file).
const MAX_RECORD: u64 = 64 << 20;
/// A version's signature file (see [`crate::signing`]).
pub(crate) const SIGNATURE: &str = "SIGNATURE";
/// Largest evidence one replica publishes (see [`Registry::publish_evidence`]).
pub const MAX_EVIDENCE: usize = 48_000;
/// Largest bundle file or artifact.
const MAX_BLOB: u64 = 16 << 30;

/// Metadata of a model version: what it is, what it consumes, how good it was.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Model family, e.g. `gbdt` or `deep`.
    pub flavor: String,
    /// The feature service it reads (`name` or `name@version`).
    pub feature_service: Option<String>,
    /// Schema of the raw inputs the pipeline expects.
    pub input_schema: Option<Schema>,
    /// Evaluation scores on held-out data (e.g. `test.auc`).
    pub eval: BTreeMap<String, f64>,
    /// Training parameters (copied from the run when empty).
    pub params: BTreeMap<String, String>,
    /// Seed (copied from the run when absent).
    pub seed: Option<u64>,
    /// Training-data version, e.g. a store checkpoint id or a `DataHash`.
    pub data_version: Option<String>,
    /// Free text.
    pub description: String,
}

/// What a caller hands to [`Registry::register`]: named opaque files plus metadata.
///
/// By convention `model` holds the model bytes, `pipeline` the `FittedPipeline`, `reference`
/// the monitoring reference profile; any other names are allowed.
#[derive(Debug, Clone, Default)]
pub struct Bundle {
    /// File name -> content.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Metadata.
    pub meta: ModelMeta,
}

impl Bundle {
    /// An empty bundle with the given flavor.
    pub fn new(flavor: impl Into<String>) -> Bundle {
        Bundle {
            files: BTreeMap::new(),
            meta: ModelMeta {
                flavor: flavor.into(),
                ..ModelMeta::default()
            },
        }
    }

    /// Adds a file.
    pub fn with_file(mut self, name: impl Into<String>, bytes: Vec<u8>) -> Bundle {
        self.files.insert(name.into(), bytes);
        self
    }
}

/// One file of a registered version, as its manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name.
    pub name: String,
    /// sha256, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// A registered model version: its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// Model name.
    pub name: String,
    /// Version number, from 1.
    pub version: u32,
    /// The run it was trained in.
    pub run_id: RunId,
    /// Registration time, ms since the Unix epoch.
    pub created_ms: i64,
    /// Metadata.
    pub meta: ModelMeta,
    /// Files and their checksums.
    pub files: Vec<FileEntry>,
}

impl Persisted for ModelVersion {
    const KIND: Kind = Kind(*b"MVER");
    const FORMAT_VERSION: u16 = 1;
}

/// A version with its files read and verified.
#[derive(Debug, Clone)]
pub struct LoadedVersion {
    /// The manifest.
    pub version: ModelVersion,
    /// File name -> verified content.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl LoadedVersion {
    /// A file's bytes, or [`RegistryError::MissingFile`].
    pub fn file(&self, name: &str) -> Result<&[u8]> {
        self.files
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| RegistryError::MissingFile(name.to_string()))
    }
}

/// One alias move, kept forever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasEvent {
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// Alias name.
    pub alias: String,
    /// Version before (`None`: unset).
    pub from: Option<u32>,
    /// Version after (`None`: removed).
    pub to: Option<u32>,
    /// Why (free text; overrides of gates record their reason here).
    pub reason: String,
    /// Whether this was a rollback.
    pub rollback: bool,
    /// Who moved it: the registry handle's actor ([`Registry::with_actor`]; by default
    /// `KEEL_ACTOR`, else `user@host`; a serving replica names itself). Empty in events
    /// recorded before keel kept it.
    #[serde(default)]
    pub who: String,
    /// The audit's hash chain: sha256 over the previous event's `chain` (zeros for the first)
    /// and this event's fields ([`AliasEvent::digest`]). Editing, removing or reordering an
    /// event breaks every later link; the registry refuses a broken chain when it reads the
    /// aliases, and `keel models alias history` prints the head to record elsewhere.
    pub chain: [u8; 32],
}

impl AliasEvent {
    /// The chain link of this event after `prev` (the previous event's `chain`).
    pub fn digest(&self, prev: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"keel-alias-audit-v1\0");
        h.update(prev);
        h.update(self.at_ms.to_le_bytes());
        for text in [&self.alias, &self.reason] {
            h.update((text.len() as u64).to_le_bytes());
            h.update(text.as_bytes());
        }
        for v in [self.from, self.to] {
            match v {
                Some(v) => {
                    h.update([1]);
                    h.update(v.to_le_bytes());
                }
                None => h.update([0]),
            }
        }
        h.update([u8::from(self.rollback)]);
        // Events from before `who` existed chain exactly as they did.
        if !self.who.is_empty() {
            h.update(b"who");
            h.update((self.who.len() as u64).to_le_bytes());
            h.update(self.who.as_bytes());
        }
        h.finalize().into()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct AliasState {
    pub(crate) current: BTreeMap<String, u32>,
    /// Per alias, the versions it pointed to before, most recent last (rollback pops).
    pub(crate) previous: BTreeMap<String, Vec<Option<u32>>>,
    pub(crate) audit: Vec<AliasEvent>,
}

impl AliasState {
    /// Index of the first event whose chain link does not follow from the one before.
    pub(crate) fn broken_link(&self) -> Option<usize> {
        let mut prev = [0u8; 32];
        for (i, e) in self.audit.iter().enumerate() {
            if e.digest(&prev) != e.chain {
                return Some(i);
            }
            prev = e.chain;
        }
        None
    }

    /// The chain's head (zeros for an empty audit).
    fn head(&self) -> [u8; 32] {
        self.audit.last().map_or([0; 32], |e| e.chain)
    }
}

/// `MALS` before v3, whose events are `E`.
#[derive(Deserialize)]
struct AliasStateOld<E> {
    current: BTreeMap<String, u32>,
    previous: BTreeMap<String, Vec<Option<u32>>>,
    audit: Vec<E>,
}

/// A v1 event (no chain link, no `who`); v2 adds the link (`chain`).
#[derive(Deserialize)]
struct AliasEventV1 {
    at_ms: i64,
    alias: String,
    from: Option<u32>,
    to: Option<u32>,
    reason: String,
    rollback: bool,
}

impl AliasEventV1 {
    fn upgrade(self, chain: [u8; 32]) -> AliasEvent {
        AliasEvent {
            at_ms: self.at_ms,
            alias: self.alias,
            from: self.from,
            to: self.to,
            reason: self.reason,
            rollback: self.rollback,
            who: String::new(),
            chain,
        }
    }
}

impl Persisted for AliasState {
    const KIND: Kind = Kind(*b"MALS");
    /// v2: the audit is a hash chain. v3: each event says who moved the alias. v1 blobs are
    /// read and chained as they stand; v2 events read with `who` empty (their links hold).
    const FORMAT_VERSION: u16 = 3;
    const OLDEST_SUPPORTED: u16 = 1;

    fn decode_version(version: u16, payload: &[u8]) -> std::result::Result<Self, EnvelopeError> {
        if version >= 3 {
            return envelope::decode_payload(payload);
        }
        if version == 2 {
            let v2: AliasStateOld<(AliasEventV1, [u8; 32])> = envelope::decode_payload(payload)?;
            return Ok(AliasState {
                current: v2.current,
                previous: v2.previous,
                audit: v2.audit.into_iter().map(|(e, c)| e.upgrade(c)).collect(),
            });
        }
        let v1: AliasStateOld<AliasEventV1> = envelope::decode_payload(payload)?;
        let mut prev = [0u8; 32];
        let audit = v1
            .audit
            .into_iter()
            .map(|e| {
                let mut ev = e.upgrade([0; 32]);
                ev.chain = ev.digest(&prev);
                prev = ev.chain;
                ev
            })
            .collect();
        Ok(AliasState {
            current: v1.current,
            previous: v1.previous,
            audit,
        })
    }
}

/// A registry entry that cannot be read as it should (see [`Registry::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged {
    /// The file or directory.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

/// The tracking store and model registry: in a directory (the embedded default) or on an MLflow
/// tracking server shared by a fleet ([`Registry::mlflow`], [`Registry::at`]). Both answer the
/// same calls with the same errors; everything above (training jobs, the retraining loop,
/// deployments, the CLI, `keel serve`) works on either.
///
/// In a directory:
///
/// ```text
/// root/runs/<run-id>/run          envelope RUN_ (the record, replaced atomically)
/// root/runs/<run-id>/artifacts/*  artifacts, sha256 in the record
/// root/models/<name>/v<N>/        MANIFEST (envelope MVER) + files, each with its sha256
/// root/models/<name>/ALIASES      envelope MALS: aliases, rollback stacks, audit log
/// ```
/// Every update is write-temp, fsync, rename, fsync-directory; a version directory appears by
/// one rename of a fully written staging directory. A crash leaves the old state or the new,
/// never a mix; leftovers of interrupted writes are swept on open. An exclusive file lock
/// serialises writers across processes. `Registry` is `Send + Sync`.
///
/// On MLflow, see `docs/fleet.md`: runs are MLflow runs, versions are registered model
/// versions whose artifacts are the bundle's files, aliases are MLflow's aliases and the audit
/// is a hash-chained series of registered-model tags.
#[derive(Debug, Clone)]
pub struct Registry {
    place: Place,
    clock: Arc<dyn Clock>,
    guard: Arc<Mutex<()>>,
    /// Signs every registered version when set.
    signer: Option<Arc<SigningKey>>,
    /// When set, only versions signed by one of these keys load.
    trusted: Option<Arc<TrustedKeys>>,
    /// Who this handle's alias moves are recorded as.
    actor: Arc<str>,
}

/// `KEEL_ACTOR`, else `user@host`.
fn default_actor() -> Arc<str> {
    if let Ok(a) = std::env::var("KEEL_ACTOR") {
        if !a.trim().is_empty() {
            return a.trim().into();
        }
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}").into()
}

#[derive(Debug, Clone)]
enum Place {
    Dir(PathBuf),
    #[cfg(feature = "mlflow")]
    Mlflow(Arc<MlflowRegistry>),
}

/// A held writer lock.
enum Held<'a> {
    Dir(
        #[allow(dead_code)] std::sync::MutexGuard<'a, ()>,
        #[allow(dead_code)] DirLock,
    ),
    #[cfg(feature = "mlflow")]
    Mlflow(
        #[allow(dead_code)] std::sync::MutexGuard<'a, ()>,
        #[allow(dead_code)] MlflowLock<'a>,
    ),
}

/// One alias move inside [`Registry::move_aliases`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AliasMove {
    /// Point the alias at a version (which must exist).
    Set(String, u32),
    /// Remove the alias (it must be set).
    Remove(String),
    /// Undo the alias's last move, provided it goes to `expected` when given.
    Rollback(String, Option<Option<u32>>),
}

impl Registry {
    /// Opens (creating) a registry at `root` with the system clock.
    pub fn open(root: impl AsRef<Path>) -> Result<Registry> {
        Registry::open_with_clock(root, Arc::new(SystemClock))
    }

    /// Opens with an explicit clock (tests, simulations).
    pub fn open_with_clock(root: impl AsRef<Path>, clock: Arc<dyn Clock>) -> Result<Registry> {
        let root = root.as_ref().to_path_buf();
        for d in ["runs", "models"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io(&p))?;
        }
        let reg = Registry {
            place: Place::Dir(root.clone()),
            clock,
            guard: Arc::new(Mutex::new(())),
            signer: None,
            trusted: None,
            actor: default_actor(),
        };
        {
            let _l = DirLock::acquire(&root)?;
            if let Ok(models) = fs::read_dir(root.join("models")) {
                for m in models.flatten() {
                    fsutil::sweep(&m.path());
                }
            }
            fsutil::sweep(&root.join("runs"));
            if let Ok(runs) = fs::read_dir(root.join("runs")) {
                for r in runs.flatten() {
                    fsutil::sweep(&r.path());
                    fsutil::sweep(&r.path().join("artifacts"));
                }
            }
        }
        Ok(reg)
    }

    /// Connects to the registry on an MLflow tracking server at `url` (`http://host:port`, or
    /// `mlflow+http://host:port`), checking that it answers. The server must proxy artifacts
    /// (`mlflow server`'s default, `--serve-artifacts`). Plain HTTP only: put TLS in front with
    /// a sidecar.
    #[cfg(feature = "mlflow")]
    pub fn mlflow(url: &str) -> Result<Registry> {
        let base = url.strip_prefix("mlflow+").unwrap_or(url);
        if !base.starts_with("http://") {
            return Err(RegistryError::Mlflow(format!(
                "{url:?}: expected http://HOST:PORT or mlflow+http://HOST:PORT (no TLS in keel)"
            )));
        }
        Ok(Registry {
            place: Place::Mlflow(Arc::new(MlflowRegistry::connect(base)?)),
            clock: Arc::new(SystemClock),
            guard: Arc::new(Mutex::new(())),
            signer: None,
            trusted: None,
            actor: default_actor(),
        })
    }

    /// Opens the registry `location` names: an MLflow server for `http://...` or
    /// `mlflow+http://...` (see [`Registry::mlflow`]), else a directory ([`Registry::open`]).
    pub fn at(location: &str) -> Result<Registry> {
        if location.starts_with("http://")
            || location.starts_with("https://")
            || location.starts_with("mlflow+")
        {
            #[cfg(feature = "mlflow")]
            return Registry::mlflow(location);
            #[cfg(not(feature = "mlflow"))]
            return Err(RegistryError::Mlflow(format!(
                "{location}: this build has no MLflow support (feature `mlflow`)"
            )));
        }
        Registry::open(location)
    }

    /// Records this handle's alias moves as made by `who` (a person, a service, a replica)
    /// in the audit (at most 256 characters kept).
    pub fn with_actor(mut self, who: &str) -> Registry {
        self.actor = who.chars().take(256).collect::<String>().into();
        self
    }

    /// Who this handle's alias moves are recorded as.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The same registry with another clock (run times, version times, audit times).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Registry {
        self.clock = clock;
        self
    }

    /// Signs every version this handle registers with `key` (file `SIGNATURE` beside the
    /// manifest; see [`crate::signing`]).
    pub fn with_signing_key(mut self, key: SigningKey) -> Registry {
        self.signer = Some(Arc::new(key));
        self
    }

    /// Loads only versions signed by one of `keys`: an unsigned version is refused with
    /// [`RegistryError::Unsigned`], a wrongly signed one with [`RegistryError::BadSignature`].
    pub fn with_trusted_keys(mut self, keys: TrustedKeys) -> Registry {
        self.trusted = Some(Arc::new(keys));
        self
    }

    /// Signs an already registered version with `key` (replacing any signature), e.g. to adopt
    /// signing for versions registered before it. Verifies the version's files first.
    pub fn sign(&self, name: &str, version: u32, key: &SigningKey) -> Result<()> {
        let _l = self.lock(name)?;
        let (mv, manifest, source) = self.version_bytes(name, version)?;
        let signature = key.sign_manifest(&manifest);
        match &self.place {
            Place::Dir(root) => {
                Registry::read_files(root, name, version, mv)?;
                let dir = model_dir(root, name)?.join(format!("v{version}"));
                write_atomic(&dir, SIGNATURE, signature.as_bytes())
            }
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => {
                m.read_files(&source, &mv, MAX_BLOB)?;
                m.write_signature(&source, &signature)
            }
        }
    }

    /// The registry's directory; `None` on MLflow.
    pub fn root(&self) -> Option<&Path> {
        match &self.place {
            Place::Dir(root) => Some(root),
            #[cfg(feature = "mlflow")]
            Place::Mlflow(_) => None,
        }
    }

    /// Where the registry is: its directory, or the MLflow server's URL.
    pub fn location(&self) -> String {
        match &self.place {
            Place::Dir(root) => root.display().to_string(),
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => m.base().to_string(),
        }
    }

    /// The MLflow half, when the registry lives there.
    #[cfg(feature = "mlflow")]
    pub(crate) fn mlflow_place(&self) -> Option<&MlflowRegistry> {
        match &self.place {
            Place::Mlflow(m) => Some(m),
            Place::Dir(_) => None,
        }
    }

    /// Whether this registry lives on a shared server (MLflow) rather than in a directory.
    pub fn is_shared(&self) -> bool {
        !matches!(self.place, Place::Dir(_))
    }

    /// A display path of an entry (`runs/<id>`, `models/<name>/v<N>`...).
    pub(crate) fn entry(&self, rel: &str) -> PathBuf {
        match &self.place {
            Place::Dir(root) => root.join(rel),
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => m.entry(rel),
        }
    }

    /// The writer lock for `model`'s versions and aliases.
    fn lock(&self, model: &str) -> Result<Held<'_>> {
        let g = self.guard.lock().unwrap_or_else(|p| p.into_inner());
        match &self.place {
            Place::Dir(root) => Ok(Held::Dir(g, DirLock::acquire(root)?)),
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => Ok(Held::Mlflow(g, m.lock(model)?)),
        }
    }

    // ---------------------------------------------------------------- tracking

    /// Starts a run in `experiment`, recording the code version (`KEEL_CODE_VERSION`, else
    /// the git commit of the current directory when there is one).
    pub fn start_run(&self, experiment: &str) -> Result<ActiveRun> {
        check_name("experiment", experiment)?;
        let mut run = Run {
            id: RunId::fresh(),
            experiment: experiment.to_string(),
            name: None,
            status: RunStatus::Running,
            start_ms: self.clock.now_ms(),
            end_ms: None,
            params: BTreeMap::new(),
            metrics: BTreeMap::new(),
            tags: BTreeMap::new(),
            seed: None,
            data: Vec::new(),
            code_version: code_version(),
            artifacts: Vec::new(),
        };
        match &self.place {
            Place::Dir(root) => {
                // The run's directory appears by one rename of a staging directory that
                // already holds the record: listings never meet a run without one.
                let _shared = DirLock::shared(root)?;
                let runs = root.join("runs");
                let staging = runs.join(format!(".staging-{}", fsutil::nonce()));
                fs::create_dir(&staging).map_err(io(&staging))?;
                fsutil::write_synced(&staging.join("run"), &envelope::encode(&run)?)?;
                sync_dir(&staging)?;
                let dst = run_dir(root, &run.id)?;
                fs::rename(&staging, &dst).map_err(io(&dst))?;
                sync_dir(&runs)?;
            }
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => run.id = m.create_run(&run)?,
        }
        Ok(ActiveRun {
            registry: self.clone(),
            run,
        })
    }

    /// Persists a run after `change`: the whole record in a directory, the change itself on
    /// MLflow.
    fn save_run(&self, run: &Run, change: Change<'_>) -> Result<()> {
        match &self.place {
            Place::Dir(root) => {
                let dir = run_dir(root, &run.id)?;
                let _shared = DirLock::shared(root)?;
                if let Change::Artifact(a, bytes) = change {
                    write_atomic(&dir.join("artifacts"), &a.name, bytes)?;
                }
                write_atomic(&dir, "run", &envelope::encode(run)?)
            }
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => m.push(run, change),
        }
    }

    /// Reads a run.
    pub fn run(&self, id: &RunId) -> Result<Run> {
        match &self.place {
            Place::Dir(root) => {
                let path = run_dir(root, id)?.join("run");
                if !path.exists() {
                    return Err(RegistryError::UnknownRun(id.clone()));
                }
                let bytes = read_bounded(&path, MAX_RECORD)?;
                Ok(envelope::decode(&bytes)?)
            }
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => {
                check_name("run id", &id.0)?;
                m.run(id)
            }
        }
    }

    /// Resumes writing to a run (e.g. to end one a crashed process left running).
    pub fn resume_run(&self, id: &RunId) -> Result<ActiveRun> {
        Ok(ActiveRun {
            registry: self.clone(),
            run: self.run(id)?,
        })
    }

    /// Every run matching `filter`, ordered as it asks (default: oldest first). A damaged
    /// run (no record, a record that does not decode) is skipped with a `tracing` warning,
    /// never failing the listing; [`Registry::search_runs_reporting`] returns them and
    /// [`Registry::check`] reports every damaged entry.
    pub fn search_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let (runs, damaged) = self.search_runs_reporting(filter)?;
        for d in &damaged {
            tracing::warn!(path = %d.path.display(), problem = %d.problem, "skipping a damaged run");
        }
        Ok(runs)
    }

    /// [`Registry::search_runs`], with the damaged runs it skipped.
    pub fn search_runs_reporting(&self, filter: &RunFilter) -> Result<(Vec<Run>, Vec<Damaged>)> {
        let (runs, damaged) = self.all_runs(filter.experiment.as_deref())?;
        let mut out: Vec<Run> = runs.into_iter().filter(|r| filter.matches(r)).collect();
        match &filter.order_by {
            Some(m) => out.sort_by(|a, b| {
                let (x, y) = (a.metric(m), b.metric(m));
                match (x, y) {
                    (Some(x), Some(y)) => {
                        let o = x.total_cmp(&y);
                        if filter.descending {
                            o.reverse()
                        } else {
                            o
                        }
                    }
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => a.start_ms.cmp(&b.start_ms),
                }
            }),
            None => {
                out.sort_by(|a, b| (a.start_ms, &a.id).cmp(&(b.start_ms, &b.id)));
                if filter.descending {
                    out.reverse();
                }
            }
        }
        if let Some(n) = filter.limit {
            out.truncate(n);
        }
        #[cfg(feature = "mlflow")]
        if let Place::Mlflow(m) = &self.place {
            // MLflow's search answers each metric's latest point; the runs returned carry
            // their whole histories, like the directory's.
            for r in &mut out {
                m.fill_history(r)?;
            }
        }
        Ok((out, damaged))
    }

    /// Every run (of `experiment` when given), and the entries that could not be read.
    pub(crate) fn all_runs(&self, experiment: Option<&str>) -> Result<(Vec<Run>, Vec<Damaged>)> {
        match &self.place {
            Place::Dir(root) => {
                let dir = root.join("runs");
                let mut out = Vec::new();
                let mut damaged = Vec::new();
                for e in fs::read_dir(&dir).map_err(io(&dir))? {
                    let e = e.map_err(io(&dir))?;
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') || name == "LOCK" {
                        continue;
                    }
                    match self.run(&RunId(name)) {
                        Ok(r) => out.push(r),
                        Err(err) => damaged.push(Damaged {
                            path: e.path(),
                            problem: err.to_string(),
                        }),
                    }
                }
                Ok((out, damaged))
            }
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => m.search(experiment),
        }
    }

    /// Compares runs side by side.
    pub fn compare_runs(&self, ids: &[RunId]) -> Result<Comparison> {
        let runs = ids
            .iter()
            .map(|i| self.run(i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Comparison::of(&runs))
    }

    /// Reads an artifact of a run, verifying its sha256.
    pub fn artifact(&self, id: &RunId, name: &str) -> Result<Vec<u8>> {
        let run = self.run(id)?;
        let a = run
            .artifacts
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| RegistryError::MissingFile(name.to_string()))?;
        check_name("artifact", name)?;
        match &self.place {
            Place::Dir(root) => {
                let path = run_dir(root, id)?.join("artifacts").join(name);
                let bytes = read_bounded(&path, a.size)?;
                verify(&path, &bytes, &a.sha256)?;
                Ok(bytes)
            }
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => m.run_artifact(id, a),
        }
    }

    // ---------------------------------------------------------------- models

    /// Registers a new version of `name` from a finished run. The run's params, seed and data
    /// version fill the metadata where the bundle leaves them empty. Refused unless the run
    /// exists and is [`RunStatus::Finished`].
    pub fn register(&self, name: &str, run: &RunId, bundle: Bundle) -> Result<ModelVersion> {
        check_name("model", name)?;
        let r = self.run(run)?;
        if r.status != RunStatus::Finished {
            return Err(RegistryError::RunNotFinished {
                run: run.clone(),
                status: r.status,
            });
        }
        if bundle.files.is_empty() {
            return Err(RegistryError::EmptyBundle);
        }
        for f in bundle.files.keys() {
            check_name("file", f)?;
            if f == "MANIFEST" || f == "LOCK" || f == SIGNATURE {
                return Err(RegistryError::InvalidName {
                    what: "file",
                    name: f.clone(),
                });
            }
        }
        let mut meta = bundle.meta;
        if meta.params.is_empty() {
            meta.params = r.params.clone();
        }
        if meta.seed.is_none() {
            meta.seed = r.seed;
        }
        if meta.data_version.is_none() {
            meta.data_version = r.data.first().map(|d| d.version.clone());
        }
        let files = bundle
            .files
            .iter()
            .map(|(fname, bytes)| FileEntry {
                name: fname.clone(),
                sha256: hex::encode(Sha256::digest(bytes)),
                size: bytes.len() as u64,
            })
            .collect();
        let mut mv = ModelVersion {
            name: name.to_string(),
            version: 0,
            run_id: run.clone(),
            created_ms: self.clock.now_ms(),
            meta,
            files,
        };
        let root = match &self.place {
            Place::Dir(root) => root,
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => {
                // MLflow numbers versions itself, atomically: no lock needed.
                return m.register(mv, &bundle.files, self.signer.as_deref());
            }
        };
        let dir = model_dir(root, name)?;
        let _l = self.lock(name)?;
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        mv.version = self.versions(name)?.last().map_or(1, |v| v + 1);
        let staging = dir.join(format!(".staging-{}", fsutil::nonce()));
        fs::create_dir(&staging).map_err(io(&staging))?;
        for (fname, bytes) in &bundle.files {
            fsutil::write_synced(&staging.join(fname), bytes)?;
        }
        let manifest = envelope::encode(&mv)?;
        fsutil::write_synced(&staging.join("MANIFEST"), &manifest)?;
        if let Some(key) = &self.signer {
            fsutil::write_synced(
                &staging.join(SIGNATURE),
                key.sign_manifest(&manifest).as_bytes(),
            )?;
        }
        sync_dir(&staging)?;
        let dst = dir.join(format!("v{}", mv.version));
        fs::rename(&staging, &dst).map_err(io(&dst))?;
        sync_dir(&dir)?;
        Ok(mv)
    }

    /// Version numbers of a model, ascending.
    pub fn versions(&self, name: &str) -> Result<Vec<u32>> {
        match &self.place {
            Place::Dir(root) => {
                let dir = model_dir(root, name)?;
                let Ok(entries) = fs::read_dir(&dir) else {
                    return Ok(Vec::new());
                };
                let mut v: Vec<u32> = entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.strip_prefix('v')?.parse().ok())
                    .collect();
                v.sort_unstable();
                Ok(v)
            }
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => {
                check_name("model", name)?;
                m.versions(name)
            }
        }
    }

    /// Names of all registered models.
    pub fn models(&self) -> Result<Vec<String>> {
        match &self.place {
            Place::Dir(root) => {
                let dir = root.join("models");
                let mut v: Vec<String> = fs::read_dir(&dir)
                    .map_err(io(&dir))?
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|n| !n.starts_with('.') && n != "LOCK")
                    .collect();
                v.sort();
                Ok(v)
            }
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => m.models(),
        }
    }

    /// A version's manifest (no file contents).
    pub fn version(&self, name: &str, version: u32) -> Result<ModelVersion> {
        Ok(self.version_bytes(name, version)?.0)
    }

    /// A version's manifest, decoded and as stored, and where its files are (a directory, or
    /// an `mlflow-artifacts:` location).
    fn version_bytes(&self, name: &str, version: u32) -> Result<(ModelVersion, Vec<u8>, String)> {
        check_name("model", name)?;
        match &self.place {
            Place::Dir(root) => {
                let dir = model_dir(root, name)?.join(format!("v{version}"));
                let path = dir.join("MANIFEST");
                if !path.exists() {
                    return Err(RegistryError::UnknownVersion {
                        name: name.to_string(),
                        version,
                    });
                }
                let bytes = read_bounded(&path, MAX_RECORD)?;
                let mv: ModelVersion = envelope::decode(&bytes)?;
                if mv.name != name || mv.version != version {
                    return Err(RegistryError::Corrupt {
                        path,
                        reason: "manifest names another version".into(),
                    });
                }
                Ok((mv, bytes, dir.display().to_string()))
            }
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => m.version_bytes(name, version),
        }
    }

    /// With trusted keys: the version's `SIGNATURE` (beside its files; `source` on MLflow) must
    /// verify against its manifest. Without them nothing is read.
    #[cfg_attr(not(feature = "mlflow"), allow(unused_variables))]
    fn check_signature(
        &self,
        name: &str,
        version: u32,
        manifest: &[u8],
        source: &str,
    ) -> Result<()> {
        let Some(trusted) = &self.trusted else {
            return Ok(());
        };
        let signature = match &self.place {
            Place::Dir(root) => {
                let sig = model_dir(root, name)?
                    .join(format!("v{version}"))
                    .join(SIGNATURE);
                if sig.exists() {
                    Some(String::from_utf8(read_bounded(&sig, 4096)?).unwrap_or_default())
                } else {
                    None
                }
            }
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => m.signature(source)?,
        };
        let Some(text) = signature.as_deref() else {
            return Err(RegistryError::Unsigned {
                name: name.to_string(),
                version,
            });
        };
        trusted
            .verify(text, manifest)
            .map(drop)
            .map_err(|reason| RegistryError::BadSignature {
                name: name.to_string(),
                version,
                reason,
            })
    }

    /// Reads a version and every file in it, verifying each sha256: a tampered or truncated
    /// bundle is refused with [`RegistryError::Tampered`].
    pub fn load(&self, name: &str, version: u32) -> Result<LoadedVersion> {
        let (mv, manifest, source) = self.version_bytes(name, version)?;
        self.check_signature(name, version, &manifest, &source)?;
        match &self.place {
            Place::Dir(root) => Registry::read_files(root, name, version, mv),
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => {
                let files = m.read_files(&source, &mv, MAX_BLOB)?;
                Ok(LoadedVersion { version: mv, files })
            }
        }
    }

    /// Reads every file of a version's manifest in a directory, verifying size and sha256.
    fn read_files(
        root: &Path,
        name: &str,
        version: u32,
        mv: ModelVersion,
    ) -> Result<LoadedVersion> {
        let dir = model_dir(root, name)?.join(format!("v{version}"));
        let mut files = BTreeMap::new();
        for f in &mv.files {
            check_name("file", &f.name)?;
            let path = dir.join(&f.name);
            let bytes = read_bounded(&path, f.size.min(MAX_BLOB)).map_err(|e| match e {
                RegistryError::Corrupt { path, .. } => RegistryError::Tampered {
                    path,
                    reason: "size differs from the manifest".into(),
                },
                e => e,
            })?;
            verify(&path, &bytes, &f.sha256)?;
            files.insert(f.name.clone(), bytes);
        }
        Ok(LoadedVersion { version: mv, files })
    }

    /// Loads the version an alias points to.
    pub fn load_alias(&self, name: &str, alias: &str) -> Result<LoadedVersion> {
        let v = self
            .alias(name, alias)?
            .ok_or_else(|| RegistryError::UnknownAlias {
                name: name.to_string(),
                alias: alias.to_string(),
            })?;
        self.load(name, v)
    }

    fn alias_state(&self, name: &str) -> Result<AliasState> {
        check_name("model", name)?;
        match &self.place {
            Place::Dir(root) => {
                let path = model_dir(root, name)?.join("ALIASES");
                if !path.exists() {
                    return Ok(AliasState::default());
                }
                let st: AliasState = envelope::decode(&read_bounded(&path, MAX_RECORD)?)?;
                if let Some(i) = st.broken_link() {
                    return Err(RegistryError::Corrupt {
                        path,
                        reason: format!(
                            "the alias audit's hash chain breaks at event {i}: the history \
                             was edited"
                        ),
                    });
                }
                Ok(st)
            }
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => m.alias_state(name),
        }
    }

    /// The head of a model's alias audit chain (hex): record it elsewhere (a log, a ticket) and
    /// a later rewrite of the whole history is detectable too.
    pub fn audit_head(&self, name: &str) -> Result<String> {
        Ok(hex::encode(self.alias_state(name)?.head()))
    }

    /// The version `alias` points to, if set.
    pub fn alias(&self, name: &str, alias: &str) -> Result<Option<u32>> {
        Ok(self.alias_state(name)?.current.get(alias).copied())
    }

    /// All aliases of a model.
    pub fn aliases(&self, name: &str) -> Result<BTreeMap<String, u32>> {
        Ok(self.alias_state(name)?.current)
    }

    /// The audit history of a model's aliases, oldest first.
    pub fn audit(&self, name: &str) -> Result<Vec<AliasEvent>> {
        Ok(self.alias_state(name)?.audit)
    }

    /// Points `alias` at `version` (which must exist), recording who-knows-why in the audit.
    pub fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u32,
        reason: &str,
    ) -> Result<AliasEvent> {
        self.move_one(name, AliasMove::Set(alias.to_string(), version), reason)
    }

    /// Removes an alias (recorded; rollback restores it).
    pub fn remove_alias(&self, name: &str, alias: &str, reason: &str) -> Result<AliasEvent> {
        self.move_one(name, AliasMove::Remove(alias.to_string()), reason)
    }

    /// Moves `alias` back to the version it pointed to before its last move (repeatable: each
    /// call undoes one more move). Refused when there is nothing to undo.
    pub fn rollback(&self, name: &str, alias: &str, reason: &str) -> Result<AliasEvent> {
        self.move_one(name, AliasMove::Rollback(alias.to_string(), None), reason)
    }

    /// Where [`Registry::rollback`] would move `alias` now: `Some(v)` a version, `None` unset.
    /// Refused when there is nothing to undo. Verify the target's bundle, then call
    /// [`Registry::rollback_to`] with it, so the alias never points at a bundle that does not
    /// load.
    pub fn rollback_target(&self, name: &str, alias: &str) -> Result<Option<u32>> {
        let st = self.alias_state(name)?;
        st.previous
            .get(alias)
            .and_then(|s| s.last().copied())
            .ok_or_else(|| RegistryError::NothingToRollBack {
                name: name.to_string(),
                alias: alias.to_string(),
            })
    }

    /// [`Registry::rollback`], provided the target is still `expected` (compare-and-swap
    /// under the registry's lock); [`RegistryError::AliasMoved`] with nothing changed
    /// otherwise.
    pub fn rollback_to(
        &self,
        name: &str,
        alias: &str,
        expected: Option<u32>,
        reason: &str,
    ) -> Result<AliasEvent> {
        self.move_one(
            name,
            AliasMove::Rollback(alias.to_string(), Some(expected)),
            reason,
        )
    }

    /// Publishes one replica's gate evidence about `name` (opaque bytes, at most
    /// [`MAX_EVIDENCE`]), replacing what that replica published before. Gates read every
    /// replica's with [`Registry::evidence`] and merge them.
    pub fn publish_evidence(&self, name: &str, replica: &str, evidence: &[u8]) -> Result<()> {
        check_name("model", name)?;
        check_name("replica", replica)?;
        if evidence.len() > MAX_EVIDENCE {
            return Err(RegistryError::Mlflow(format!(
                "evidence of replica {replica} is {} bytes, over the {MAX_EVIDENCE} limit",
                evidence.len()
            )));
        }
        match &self.place {
            Place::Dir(root) => {
                let dir = model_dir(root, name)?.join("evidence");
                fs::create_dir_all(&dir).map_err(io(&dir))?;
                let _shared = DirLock::shared(root)?;
                write_atomic(&dir, replica, evidence)
            }
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => m.publish_evidence(name, replica, evidence),
        }
    }

    /// Every replica's published evidence about `name`: `(replica, bytes)`.
    pub fn evidence(&self, name: &str) -> Result<Vec<(String, Vec<u8>)>> {
        check_name("model", name)?;
        match &self.place {
            Place::Dir(root) => {
                let dir = model_dir(root, name)?.join("evidence");
                let mut out = Vec::new();
                for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let replica = e.file_name().to_string_lossy().into_owned();
                    if replica.starts_with('.') || check_name("replica", &replica).is_err() {
                        continue;
                    }
                    out.push((replica, read_bounded(&e.path(), MAX_EVIDENCE as u64)?));
                }
                out.sort();
                Ok(out)
            }
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => m.evidence(name),
        }
    }

    fn move_one(&self, name: &str, m: AliasMove, reason: &str) -> Result<AliasEvent> {
        let mut evs = self.move_aliases(name, |_| Ok(vec![(m, reason.to_string())]))?;
        evs.pop()
            .ok_or_else(|| RegistryError::Mlflow("an alias move recorded no event".into()))
    }

    /// Moves aliases as one step under the model's writer lock: `decide` sees the aliases as
    /// they are now and returns the moves (with their audit reasons) or refuses; every move is
    /// checked, then all are recorded. In a directory the new state lands in one atomic write;
    /// on MLflow each move's audit tag is written before its alias.
    pub(crate) fn move_aliases(
        &self,
        name: &str,
        decide: impl FnOnce(&BTreeMap<String, u32>) -> Result<Vec<(AliasMove, String)>>,
    ) -> Result<Vec<AliasEvent>> {
        check_name("model", name)?;
        let _l = self.lock(name)?;
        let mut st = self.alias_state(name)?;
        #[cfg(feature = "mlflow")]
        let already = st.audit.len();
        let moves = decide(&st.current)?;
        let mut events = Vec::with_capacity(moves.len());
        for (m, reason) in moves {
            let (alias, from, to, rollback) = match m {
                AliasMove::Set(alias, version) => {
                    check_name("alias", &alias)?;
                    self.version(name, version)?;
                    let from = st.current.insert(alias.clone(), version);
                    st.previous.entry(alias.clone()).or_default().push(from);
                    (alias, from, Some(version), false)
                }
                AliasMove::Remove(alias) => {
                    let from = st.current.remove(&alias);
                    if from.is_none() {
                        return Err(RegistryError::UnknownAlias {
                            name: name.to_string(),
                            alias,
                        });
                    }
                    st.previous.entry(alias.clone()).or_default().push(from);
                    (alias, from, None, false)
                }
                AliasMove::Rollback(alias, expected) => {
                    let prev = st
                        .previous
                        .get_mut(&alias)
                        .and_then(Vec::pop)
                        .ok_or_else(|| RegistryError::NothingToRollBack {
                            name: name.to_string(),
                            alias: alias.clone(),
                        })?;
                    if let Some(expected) = expected.filter(|e| *e != prev) {
                        return Err(RegistryError::AliasMoved {
                            name: name.to_string(),
                            alias,
                            expected,
                            found: prev,
                        });
                    }
                    let from = match prev {
                        Some(v) => st.current.insert(alias.clone(), v),
                        None => st.current.remove(&alias),
                    };
                    (alias, from, prev, true)
                }
            };
            let mut ev = AliasEvent {
                at_ms: self.clock.now_ms(),
                alias,
                from,
                to,
                reason,
                rollback,
                who: self.actor.to_string(),
                chain: [0; 32],
            };
            ev.chain = ev.digest(&st.head());
            st.audit.push(ev.clone());
            events.push(ev);
        }
        match &self.place {
            Place::Dir(root) => {
                write_atomic(&model_dir(root, name)?, "ALIASES", &envelope::encode(&st)?)?
            }
            #[cfg(feature = "mlflow")]
            Place::Mlflow(m) => m.commit(name, already, &events)?,
        }
        Ok(events)
    }
}

fn run_dir(root: &Path, id: &RunId) -> Result<PathBuf> {
    check_name("run id", &id.0)?;
    Ok(root.join("runs").join(&id.0))
}

fn model_dir(root: &Path, name: &str) -> Result<PathBuf> {
    check_name("model", name)?;
    Ok(root.join("models").join(name))
}

/// What changed in a run (MLflow receives just that; a directory rewrites the record).
#[cfg_attr(not(feature = "mlflow"), allow(dead_code))]
pub(crate) enum Change<'a> {
    Name,
    Params(Vec<(&'a str, &'a str)>),
    Metrics(Vec<(&'a str, MetricPoint)>),
    Tag(&'a str, &'a str),
    Seed,
    Data(&'a DataRef),
    Artifact(&'a ArtifactRef, &'a [u8]),
    End,
}

pub(crate) fn fuzz_records(data: &[u8]) {
    fn one<T: Persisted>(data: &[u8]) {
        let _ = envelope::decode::<T>(data);
        let _ = envelope::decode::<T>(&envelope::wrap(T::KIND, T::FORMAT_VERSION, data));
    }
    one::<Run>(data);
    one::<ModelVersion>(data);
    one::<AliasState>(data);
}

fn verify(path: &Path, bytes: &[u8], sha: &str) -> Result<()> {
    if hex::encode(Sha256::digest(bytes)) != sha {
        return Err(RegistryError::Tampered {
            path: path.to_path_buf(),
            reason: "sha256 differs from the manifest".into(),
        });
    }
    Ok(())
}

fn code_version() -> Option<String> {
    if let Ok(v) = std::env::var("KEEL_CODE_VERSION") {
        return Some(v);
    }
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// A run being written: every call persists immediately (atomic replace of the record), so a
/// crash loses nothing already logged. End it with [`ActiveRun::finish`] or
/// [`ActiveRun::fail`]; a dropped run stays `running`.
#[derive(Debug)]
pub struct ActiveRun {
    registry: Registry,
    run: Run,
}

impl ActiveRun {
    /// The run's id.
    pub fn id(&self) -> &RunId {
        &self.run.id
    }

    /// The record as logged so far.
    pub fn record(&self) -> &Run {
        &self.run
    }

    fn save(&mut self, change: Change<'_>) -> Result<()> {
        self.registry.save_run(&self.run, change)
    }

    /// Sets the human name.
    pub fn set_name(&mut self, name: &str) -> Result<()> {
        self.run.name = Some(name.to_string());
        self.save(Change::Name)
    }

    /// Logs one param (overwrites in a directory; MLflow refuses changing a logged value).
    pub fn log_param(&mut self, key: &str, value: impl ToString) -> Result<()> {
        self.log_params([(key, value.to_string())])
    }

    /// Logs many params at once.
    pub fn log_params<K: ToString, V: ToString>(
        &mut self,
        params: impl IntoIterator<Item = (K, V)>,
    ) -> Result<()> {
        let new: Vec<(String, String)> = params
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in &new {
            self.run.params.insert(k.clone(), v.clone());
        }
        let change = new.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.registry.save_run(&self.run, Change::Params(change))
    }

    /// Logs a metric value at `step`. Non-finite values are refused.
    pub fn log_metric(&mut self, key: &str, value: f64, step: u64) -> Result<()> {
        self.log_metrics([(key, value)], step)
    }

    /// Logs several metrics at one step with a single write.
    pub fn log_metrics<'a>(
        &mut self,
        metrics: impl IntoIterator<Item = (&'a str, f64)>,
        step: u64,
    ) -> Result<()> {
        let timestamp_ms = self.registry.clock.now_ms();
        let mut new = Vec::new();
        for (key, value) in metrics {
            if !value.is_finite() {
                return Err(RegistryError::NonFiniteMetric(key.to_string()));
            }
            new.push((
                key,
                MetricPoint {
                    value,
                    step,
                    timestamp_ms,
                },
            ));
        }
        for (k, p) in &new {
            self.run.metrics.entry(k.to_string()).or_default().push(*p);
        }
        self.registry.save_run(&self.run, Change::Metrics(new))
    }

    /// Sets a tag.
    pub fn set_tag(&mut self, key: &str, value: &str) -> Result<()> {
        self.run.tags.insert(key.to_string(), value.to_string());
        self.registry.save_run(&self.run, Change::Tag(key, value))
    }

    /// Records the seed.
    pub fn set_seed(&mut self, seed: u64) -> Result<()> {
        self.run.seed = Some(seed);
        self.save(Change::Seed)
    }

    /// Records a consumed data version (`DataHash` hex, store checkpoint id...).
    pub fn log_data(&mut self, name: &str, version: &str) -> Result<()> {
        let d = DataRef {
            name: name.to_string(),
            version: version.to_string(),
        };
        self.run.data.push(d.clone());
        self.registry.save_run(&self.run, Change::Data(&d))
    }

    /// Stores an artifact with the run (sha256 recorded).
    pub fn log_artifact(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        check_name("artifact", name)?;
        let a = ArtifactRef {
            name: name.to_string(),
            sha256: hex::encode(Sha256::digest(bytes)),
            size: bytes.len() as u64,
        };
        self.run.artifacts.retain(|x| x.name != name);
        self.run.artifacts.push(a.clone());
        self.registry
            .save_run(&self.run, Change::Artifact(&a, bytes))
    }

    /// Ends the run successfully; returns the final record.
    pub fn finish(self) -> Result<Run> {
        self.end(RunStatus::Finished)
    }

    /// Ends the run as failed, with the error recorded as tag `error`.
    pub fn fail(mut self, error: &str) -> Result<Run> {
        self.set_tag("error", error)?;
        self.end(RunStatus::Failed)
    }

    /// Ends the run with a status.
    pub fn end(mut self, status: RunStatus) -> Result<Run> {
        self.run.status = status;
        self.run.end_ms = Some(self.registry.clock.now_ms());
        self.save(Change::End)?;
        Ok(self.run)
    }
}

#[cfg(test)]
mod golden {
    use super::{AliasEvent, AliasState};
    use std::collections::BTreeMap;

    /// The alias state and audit trail (`MALS`): the committed v1 blob (no chain) still reads,
    /// chained on the way in; v2 has its own golden blob.
    #[test]
    fn golden_alias_state_v1_v2_and_v3_read_back() {
        let mut event = AliasEvent {
            at_ms: 1_767_225_600_000,
            alias: "champion".into(),
            from: Some(1),
            to: Some(2),
            reason: "canary -> champion: gate passed".into(),
            rollback: false,
            who: String::new(),
            chain: [0; 32],
        };
        event.chain = event.digest(&[0; 32]);
        let state = AliasState {
            current: BTreeMap::from([("champion".to_string(), 2)]),
            previous: BTreeMap::from([("champion".to_string(), vec![None, Some(1)])]),
            audit: vec![event.clone()],
        };
        let dir =
            std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"))
                .join("tests/golden");
        let read = |name: &str| -> AliasState {
            keel_core::envelope::decode(&std::fs::read(dir.join(name)).unwrap()).unwrap()
        };
        // v1 (no chain) and v2 (no `who`) read back, their links intact.
        for old in ["alias_state_v1.bin", "alias_state_v2.bin"] {
            let st = read(old);
            assert_eq!(st, state, "{old}");
            assert_eq!(st.broken_link(), None, "{old}");
        }
        let mut who = event;
        who.who = "alice@ops-1".into();
        who.chain = who.digest(&[0; 32]);
        let v3 = AliasState {
            audit: vec![who],
            ..state
        };
        assert_eq!(v3.broken_link(), None);
        keel_core::envelope::assert_golden(&dir.join("alias_state_v3.bin"), &v3);
    }
}
