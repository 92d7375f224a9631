//! The on-disk model bundle: a folder with `manifest.json` and the files its kind needs.
//!
//! The manifest is the same for every kind of model: what kind it is, which
//! schema it follows, what it was trained on (file names, rows, sha256),
//! with which seed and hyper-parameters, how long training took, and
//! optionally the feature layout and the evaluation figures on the held-out
//! rows. The kind's own files (`baseline.json`, the generator's ONNX graph,
//! the vocabularies) are listed in `files` and sit next to it.
//!
//! A reader checks `schema_version` and `kind` before anything else, so a
//! bundle from a newer flowgen fails with a message saying so rather than
//! with a missing-field error.
//!
//! Writing a manifest records the SHA-256 of every file it lists, and opening
//! a bundle checks them, so a damaged or edited model file fails at load
//! instead of producing garbage flows.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's file name inside a bundle folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The manifest schema this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// What went wrong loading or writing a model bundle; names the file.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A bundle file could not be read or written.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// The folder has no manifest: it is not a model bundle.
    #[error(
        "{path}: not found; not a model bundle (flowgen-train writes one)",
        path = path.display()
    )]
    MissingManifest {
        /// Where the manifest should be.
        path: PathBuf,
    },
    /// The manifest is not valid JSON or lacks what its schema requires.
    #[error("{path}: corrupt manifest: {message}", path = path.display())]
    CorruptManifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The manifest follows a schema this build does not know.
    #[error(
        "{path}: schema_version {found} is not supported (this flowgen reads version {supported})",
        path = path.display()
    )]
    UnsupportedSchema {
        /// The manifest.
        path: PathBuf,
        /// The version it declares.
        found: u64,
        /// The version this build reads.
        supported: u32,
    },
    /// The manifest names a model kind this build does not know.
    #[error(
        "{path}: unknown model kind {kind:?} (expected \"baseline\" or \"ewgan\")",
        path = path.display()
    )]
    UnknownKind {
        /// The manifest.
        path: PathBuf,
        /// The kind it declares.
        kind: String,
    },
    /// A model file of the bundle is not what its kind expects.
    #[error("{path}: corrupt model file: {message}", path = path.display())]
    CorruptFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A file the manifest lists is not in the bundle folder.
    #[error(
        "{path}: listed in {MANIFEST_FILE} but missing; the bundle is incomplete",
        path = path.display()
    )]
    MissingFile {
        /// The missing file.
        path: PathBuf,
    },
    /// A bundle file's bytes differ from the SHA-256 its manifest recorded.
    #[error(
        "{path}: checksum mismatch (manifest sha256 {expected}, file {actual}); \
         the bundle is corrupt or was edited",
        path = path.display()
    )]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// The digest in the manifest, lowercase hex.
        expected: String,
        /// The digest of the file as read, lowercase hex.
        actual: String,
    },
    /// ONNX Runtime could not load or run the bundle's generator.
    #[error(transparent)]
    Runtime(#[from] super::runtime::RuntimeError),
    /// A load option has a value the kind cannot use.
    #[error("model option {option}: {message}")]
    BadOption {
        /// The option (`device`, ...).
        option: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// The kinds of model a bundle can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Every attribute drawn independently from its empirical distribution.
    Baseline,
    /// IP2Vec embeddings with a WGAN-GP generator exported as ONNX.
    Ewgan,
}

impl ModelKind {
    /// The name used in manifests and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Baseline => "baseline",
            ModelKind::Ewgan => "ewgan",
        }
    }

    /// Parses a name as written in manifests.
    pub fn parse(name: &str) -> Option<ModelKind> {
        match name {
            "baseline" => Some(ModelKind::Baseline),
            "ewgan" => Some(ModelKind::Ewgan),
            _ => None,
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The contents of `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// What kind of model the bundle holds.
    pub kind: ModelKind,
    /// The manifest schema, [`SCHEMA_VERSION`] when written by this build.
    pub schema_version: u32,
    /// The flowgen version that trained the model.
    pub flowgen_version: String,
    /// When training finished, RFC 3339 in UTC.
    pub created_utc: String,
    /// The seed of every random choice in training (holdout split included).
    pub seed: u64,
    /// The flow files the model was trained on and how they were split.
    pub training_data: TrainingData,
    /// The kind's hyper-parameters, free-form.
    pub hyperparameters: serde_json::Map<String, serde_json::Value>,
    /// Wall-clock training time, seconds.
    pub training_time_s: f64,
    /// The model files of the bundle (relative to its folder) that its kind loads.
    pub files: Vec<String>,
    /// SHA-256 of each of `files`, lowercase hex, by file name; filled in by
    /// [`Bundle::write_manifest`] and checked by [`Bundle::open`]. Empty in
    /// bundles written before flowgen recorded checksums.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub file_sha256: BTreeMap<String, String>,
    /// How flows map to model vectors (kinds that have one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_layout: Option<serde_json::Value>,
    /// Evaluation figures against the held-out rows, as `flowgen eval --json` writes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<serde_json::Value>,
}

/// The flow files a model was trained on and the held-out split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingData {
    /// Each input file, in the order given.
    pub files: Vec<DataFile>,
    /// Flows the model learned from.
    pub training_rows: u64,
    /// Flows held out for evaluation.
    pub held_out_rows: u64,
    /// The share of flows requested for holding out.
    pub holdout_fraction: f64,
    /// The held-out flows as CIDDS-001 CSV inside the bundle, when any were held out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_file: Option<String>,
}

/// One input flow file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// The file's name, without its folder.
    pub name: String,
    /// Flows read from it.
    pub rows: u64,
    /// Bad rows skipped in it (with `--skip-bad-rows`).
    pub skipped_rows: u64,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
}

/// A model bundle folder and its manifest.
#[derive(Clone, Debug)]
pub struct Bundle {
    dir: PathBuf,
    manifest: Manifest,
}

impl Bundle {
    /// Opens the bundle in `dir`, reading and checking its manifest and
    /// verifying that every listed file is there with its recorded SHA-256.
    pub fn open(dir: &Path) -> Result<Bundle, BundleError> {
        let bundle = Bundle {
            dir: dir.to_path_buf(),
            manifest: Bundle::read_manifest(dir)?,
        };
        bundle.verify_files()?;
        Ok(bundle)
    }

    /// Checks that each file in `files` exists and matches its digest in
    /// `file_sha256`; bundles are small, so hashing them at every load is cheap.
    pub fn verify_files(&self) -> Result<(), BundleError> {
        for name in &self.manifest.files {
            let path = self.file(name);
            if !path.is_file() {
                return Err(BundleError::MissingFile { path });
            }
        }
        if self.manifest.file_sha256.is_empty() && !self.manifest.files.is_empty() {
            tracing::warn!(
                bundle = %self.dir.display(),
                "the manifest records no checksums (written by an older flowgen); model files are not verified"
            );
        }
        for (name, expected) in &self.manifest.file_sha256 {
            let path = self.file(name);
            if !path.is_file() {
                return Err(BundleError::MissingFile { path });
            }
            let actual = sha256_file(&path)?;
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(BundleError::ChecksumMismatch {
                    path,
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }

    /// Reads `dir/manifest.json`, checking schema version and kind first.
    pub fn read_manifest(dir: &Path) -> Result<Manifest, BundleError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => BundleError::MissingManifest { path: path.clone() },
            _ => BundleError::Io {
                path: path.clone(),
                source,
            },
        })?;
        let corrupt = |message: String| BundleError::CorruptManifest {
            path: path.clone(),
            message,
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;

        let found = value
            .get("schema_version")
            .ok_or_else(|| corrupt("no schema_version".into()))?
            .as_u64()
            .ok_or_else(|| corrupt("schema_version is not a non-negative integer".into()))?;
        if found != u64::from(SCHEMA_VERSION) {
            return Err(BundleError::UnsupportedSchema {
                path,
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let kind = value
            .get("kind")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| corrupt("no kind string".into()))?;
        if ModelKind::parse(kind).is_none() {
            return Err(BundleError::UnknownKind {
                path,
                kind: kind.to_owned(),
            });
        }
        serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))
    }

    /// Writes `manifest` as `dir/manifest.json`, creating `dir` if needed, with
    /// `file_sha256` computed afresh from the files named in `files`.
    ///
    /// The manifest is written last by trainers and replaced atomically, so a
    /// folder with a manifest always holds a complete bundle.
    pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), BundleError> {
        let mut manifest = manifest.clone();
        manifest.file_sha256 = file_checksums(dir, &manifest.files)?;
        write_json(&dir.join(MANIFEST_FILE), &manifest)
    }

    /// The bundle folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The checked manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The path of a file inside the bundle.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// SHA-256 of each of `files` inside `dir`, by name; a missing file is a [`BundleError::MissingFile`].
fn file_checksums(dir: &Path, files: &[String]) -> Result<BTreeMap<String, String>, BundleError> {
    files
        .iter()
        .map(|name| {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(BundleError::MissingFile { path });
            }
            Ok((name.clone(), sha256_file(&path)?))
        })
        .collect()
}

/// Writes `value` as indented JSON to `path` through a temporary file and a rename.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), BundleError> {
    write_json_as(path, value, true)
}

/// Writes `value` as JSON on one line (for large tables) through a temporary file and a rename.
pub fn write_json_compact<T: Serialize>(path: &Path, value: &T) -> Result<(), BundleError> {
    write_json_as(path, value, false)
}

fn write_json_as<T: Serialize>(path: &Path, value: &T, pretty: bool) -> Result<(), BundleError> {
    let io = |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .map_err(|e| io(std::io::Error::other(e)))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = File::create(&temporary).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

/// Reads a JSON model file of a bundle; a parse failure is a [`BundleError::CorruptFile`].
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, BundleError> {
    let text = std::fs::read_to_string(path).map_err(|source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| BundleError::CorruptFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// SHA-256 of a file's bytes as lowercase hex, read in chunks.
pub fn sha256_file(path: &Path) -> Result<String, BundleError> {
    let io = |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            kind: ModelKind::Baseline,
            schema_version: SCHEMA_VERSION,
            flowgen_version: "0.1.0".into(),
            created_utc: "2026-01-01T00:00:00Z".into(),
            seed: 7,
            training_data: TrainingData {
                files: vec![DataFile {
                    name: "week3.csv".into(),
                    rows: 10,
                    skipped_rows: 1,
                    sha256: "00".repeat(32),
                }],
                training_rows: 8,
                held_out_rows: 2,
                holdout_fraction: 0.2,
                held_out_file: Some("holdout.csv".into()),
            },
            hyperparameters: serde_json::Map::new(),
            training_time_s: 0.5,
            files: vec!["baseline.json".into()],
            file_sha256: BTreeMap::new(),
            feature_layout: None,
            eval: Some(serde_json::json!({"jsd": {"mean": 0.15}})),
        }
    }

    #[test]
    fn manifests_round_trip_through_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("baseline.json"), "abc").unwrap();
        Bundle::write_manifest(dir.path(), &manifest()).unwrap();
        let mut expected = manifest();
        // FIPS 180-2, appendix B.1: the digest of "abc".
        expected.file_sha256.insert(
            "baseline.json".into(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
        );
        assert_eq!(Bundle::read_manifest(dir.path()).unwrap(), expected);
        let text = std::fs::read_to_string(dir.path().join(MANIFEST_FILE)).unwrap();
        assert!(text.contains("\"kind\": \"baseline\""), "{text}");
        assert!(
            !text.contains("feature_layout"),
            "absent options are left out"
        );
    }

    fn rejects(edit: impl FnOnce(&mut serde_json::Value)) -> BundleError {
        let dir = tempfile::tempdir().unwrap();
        let mut value = serde_json::to_value(manifest()).unwrap();
        edit(&mut value);
        std::fs::write(dir.path().join(MANIFEST_FILE), value.to_string()).unwrap();
        Bundle::read_manifest(dir.path()).unwrap_err()
    }

    #[test]
    fn unknown_kinds_and_schemas_are_named() {
        let err = rejects(|v| v["kind"] = "vae".into());
        assert!(matches!(err, BundleError::UnknownKind { ref kind, .. } if kind == "vae"));
        assert!(
            err.to_string()
                .contains("manifest.json: unknown model kind \"vae\""),
            "{err}"
        );

        // A newer schema is reported as such even when its other fields differ.
        let err = rejects(|v| {
            v["schema_version"] = 2.into();
            v["kind"] = "vae".into();
        });
        assert!(
            matches!(err, BundleError::UnsupportedSchema { found: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn missing_and_corrupt_manifests_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Bundle::read_manifest(dir.path()).unwrap_err();
        assert!(matches!(err, BundleError::MissingManifest { .. }));
        assert!(
            err.to_string().contains("manifest.json: not found"),
            "{err}"
        );

        std::fs::write(dir.path().join(MANIFEST_FILE), "{not json").unwrap();
        assert!(matches!(
            Bundle::read_manifest(dir.path()),
            Err(BundleError::CorruptManifest { .. })
        ));

        let err = rejects(|v| {
            v.as_object_mut()
                .unwrap()
                .remove("training_data")
                .map(drop)
                .unwrap()
        });
        assert!(
            err.to_string().contains("missing field `training_data`"),
            "{err}"
        );
    }

    #[test]
    fn writing_a_manifest_whose_file_is_missing_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Bundle::write_manifest(dir.path(), &manifest()).unwrap_err();
        assert!(matches!(err, BundleError::MissingFile { .. }), "{err}");
        assert!(
            err.to_string().ends_with(
                "baseline.json: listed in manifest.json but missing; the bundle is incomplete"
            ),
            "{err}"
        );
        assert!(!dir.path().join(MANIFEST_FILE).exists());
    }

    #[test]
    fn opening_checks_each_file_against_its_recorded_digest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("baseline.json");
        std::fs::write(&file, "abc").unwrap();
        Bundle::write_manifest(dir.path(), &manifest()).unwrap();
        Bundle::open(dir.path()).unwrap();

        std::fs::write(&file, "abd").unwrap();
        let err = Bundle::open(dir.path()).unwrap_err();
        let BundleError::ChecksumMismatch {
            ref path,
            ref expected,
            ref actual,
        } = err
        else {
            panic!("{err}");
        };
        assert_eq!(path, &file);
        assert_eq!(
            expected,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(actual, &sha256_file(&file).unwrap());
        assert_ne!(actual, expected);
        assert!(
            err.to_string().contains(&format!(
                "baseline.json: checksum mismatch (manifest sha256 {expected}, file {actual}); \
                 the bundle is corrupt or was edited"
            )),
            "{err}"
        );

        std::fs::remove_file(&file).unwrap();
        let err = Bundle::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, BundleError::MissingFile { ref path } if path == &file),
            "{err}"
        );
    }

    #[test]
    fn manifests_without_checksums_still_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("baseline.json"), "anything").unwrap();
        // As written before checksums were recorded: no file_sha256 key at all.
        let value = serde_json::to_value(manifest()).unwrap();
        assert!(value.get("file_sha256").is_none());
        std::fs::write(dir.path().join(MANIFEST_FILE), value.to_string()).unwrap();
        let bundle = Bundle::open(dir.path()).unwrap();
        assert!(bundle.manifest().file_sha256.is_empty());
    }

    #[test]
    fn sha256_matches_a_known_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, "abc").unwrap();
        // FIPS 180-2, appendix B.1.
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
