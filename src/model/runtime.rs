//! Running an exported generator through ONNX Runtime (`ort`, loaded at run time).
//!
//! The shared library is found explicitly, never by `ort`'s implicit loading, which panics
//! when the library is missing: a configured path, else `ORT_DYLIB_PATH`, else the places
//! `scripts/setup` installs it. It is loaded once per process; sessions then run on the
//! CPU or, with the `cuda` Cargo feature, on ONNX Runtime's CUDA execution provider.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};

use super::onnx::{INPUT_NAME, OUTPUT_NAME};

/// File name of the ONNX Runtime release flowgen is built against.
pub const LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";
/// Where `scripts/setup` installs the library system-wide.
pub const SYSTEM_LIBRARY_DIR: &str = "/usr/local/lib/flowgen";
/// Where `scripts/setup` installs the library for one user, under `$HOME`.
pub const USER_LIBRARY_DIR: &str = ".local/lib/flowgen";

/// Where inference runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA execution provider; failing to register it is an error.
    Cuda,
    /// CUDA when it registers, else the CPU with one warning.
    Auto,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Auto => "auto",
        })
    }
}

impl FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            "auto" => Ok(Device::Auto),
            other => Err(format!(
                "unknown device {other:?}, expected cpu, cuda or auto"
            )),
        }
    }
}

/// How much ONNX Runtime rewrites the graph before running it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphOptimization {
    /// No rewrites.
    Disabled,
    /// Constant folding and redundant-node removal.
    Basic,
    /// Basic plus node fusions.
    Extended,
    /// Everything, including layout changes.
    #[default]
    All,
}

/// Settings of the runtime and of each session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeOptions {
    /// The ONNX Runtime shared library; when unset, `ORT_DYLIB_PATH` and then the
    /// set-up locations are tried.
    pub library_path: Option<PathBuf>,
    /// Where inference runs.
    pub device: Device,
    /// Threads inside one operator; 0 lets ONNX Runtime choose (one per physical core).
    pub intra_threads: usize,
    /// Whether idle intra-op threads spin waiting for work (faster, but burns CPU that
    /// the rest of the pipeline could use).
    pub intra_spinning: bool,
    /// Graph optimisation level.
    pub optimization: GraphOptimization,
}

/// The noise and output widths a caller expects of a generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneratorShape {
    /// Width of the noise input.
    pub noise_dim: usize,
    /// Width of a generated row.
    pub out_dim: usize,
}

/// Where a candidate library path came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LibrarySource {
    /// The caller's configuration.
    Configured,
    /// The `ORT_DYLIB_PATH` environment variable.
    Environment,
    /// A location `scripts/setup` installs to.
    SetUp,
}

impl fmt::Display for LibrarySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LibrarySource::Configured => "configured",
            LibrarySource::Environment => "ORT_DYLIB_PATH",
            LibrarySource::SetUp => "set-up location",
        })
    }
}

/// What went wrong finding, loading or running ONNX Runtime; names the file.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No library file at any place looked at.
    #[error(
        "onnx runtime library not found; looked at {}; run scripts/setup, or run \
         `pip download --no-deps --only-binary=:all: onnxruntime==1.31.1`, unzip \
         onnxruntime/capi/{LIBRARY_FILE} from the wheel into ~/{USER_LIBRARY_DIR}/ and \
         point ORT_DYLIB_PATH or the configuration at it",
        list_places(.looked)
    )]
    LibraryNotFound {
        /// Every path tried, with where it came from.
        looked: Vec<(PathBuf, LibrarySource)>,
    },
    /// The file exists but is not a usable ONNX Runtime library.
    #[error("{path}: cannot load onnx runtime: {message}")]
    LibraryLoad {
        /// The library file.
        path: PathBuf,
        /// The loader's explanation.
        message: String,
    },
    /// ONNX Runtime is already loaded from another file in this process.
    #[error("onnx runtime is already loaded from {loaded}; cannot switch to {requested} without a restart")]
    LibraryAlreadyLoaded {
        /// The library in use.
        loaded: PathBuf,
        /// The library asked for.
        requested: PathBuf,
    },
    /// ONNX Runtime failed to create its environment.
    #[error("{path}: cannot start onnx runtime: {source}")]
    Environment {
        /// The library file.
        path: PathBuf,
        /// ONNX Runtime's error.
        source: ort::Error,
    },
    /// The model file does not exist.
    #[error("{path}: generator model not found")]
    ModelNotFound {
        /// The model file.
        path: PathBuf,
    },
    /// ONNX Runtime could not create a session for the model.
    #[error("{path}: cannot load generator model: {source}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// ONNX Runtime's error.
        source: ort::Error,
    },
    /// CUDA was asked for but this binary cannot register it.
    #[error("{path}: device \"cuda\" requested, but flowgen was built without the cuda feature (rebuild with --features cuda, or use device \"cpu\" or \"auto\")")]
    CudaNotBuilt {
        /// The model file.
        path: PathBuf,
    },
    /// The CUDA execution provider failed to register.
    #[error("{path}: device \"cuda\" requested, but the cuda execution provider failed: {source} (it needs onnxruntime-gpu 1.31.1 with CUDA 13 and cuDNN 9, or use device \"cpu\" or \"auto\")")]
    Cuda {
        /// The model file.
        path: PathBuf,
        /// ONNX Runtime's error.
        source: ort::Error,
    },
    /// The model's inputs or outputs are not the generator's.
    #[error("{path}: expected a generator with input {expected_input} and output {expected_output}, found inputs [{inputs}] and outputs [{outputs}]")]
    Signature {
        /// The model file.
        path: PathBuf,
        /// Expected input name and shape.
        expected_input: String,
        /// Expected output name and shape.
        expected_output: String,
        /// The model's inputs.
        inputs: String,
        /// The model's outputs.
        outputs: String,
    },
    /// The caller's noise does not fit the requested batch.
    #[error("{path}: noise has {values} values, expected batch {batch} x noise_dim {noise_dim}")]
    NoiseShape {
        /// The model file.
        path: PathBuf,
        /// Number of values given.
        values: usize,
        /// Rows requested.
        batch: usize,
        /// The generator's noise width.
        noise_dim: usize,
    },
    /// The model produced an output of another shape than expected.
    #[error("{path}: generator output has shape {actual}, expected [{batch}, {out_dim}]")]
    OutputShape {
        /// The model file.
        path: PathBuf,
        /// The shape produced.
        actual: String,
        /// Rows requested.
        batch: usize,
        /// Expected output width.
        out_dim: usize,
    },
    /// The model produced NaN or infinity: its weights are damaged or diverged, and
    /// decoding such rows would yield the same meaningless flow over and over.
    #[error("{path}: generator output row {row} column {column} is {value}; the model file is corrupt or its weights diverged")]
    NonFiniteOutput {
        /// The model file.
        path: PathBuf,
        /// Row of the first non-finite value in the batch.
        row: usize,
        /// Its column.
        column: usize,
        /// The value (NaN or infinity).
        value: f32,
    },
    /// Inference failed.
    #[error("{path}: inference failed: {source}")]
    Run {
        /// The model file.
        path: PathBuf,
        /// ONNX Runtime's error.
        source: ort::Error,
    },
}

fn list_places(looked: &[(PathBuf, LibrarySource)]) -> String {
    looked
        .iter()
        .map(|(path, source)| format!("{} ({source})", path.display()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The library paths to try, in order. A configured path or `ORT_DYLIB_PATH` is the only
/// candidate when set, so that a deliberate choice never silently falls back elsewhere.
pub fn library_candidates(configured: Option<&Path>) -> Vec<(PathBuf, LibrarySource)> {
    if let Some(path) = configured {
        return vec![(path.to_path_buf(), LibrarySource::Configured)];
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return vec![(PathBuf::from(path), LibrarySource::Environment)];
    }
    let mut places = vec![(
        Path::new(SYSTEM_LIBRARY_DIR).join(LIBRARY_FILE),
        LibrarySource::SetUp,
    )];
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let user = Path::new(&home).join(USER_LIBRARY_DIR).join(LIBRARY_FILE);
        places.push((user, LibrarySource::SetUp));
    }
    places
}

/// The first candidate library file that exists.
pub fn find_library(configured: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    let looked = library_candidates(configured);
    match looked.iter().find(|(path, _)| path.is_file()) {
        Some((path, _)) => Ok(path.clone()),
        None => Err(RuntimeError::LibraryNotFound { looked }),
    }
}

struct Loaded {
    library: PathBuf,
    environment: Environment,
}

/// ONNX Runtime can be loaded only once per process; this remembers from where.
static LOADED: Mutex<Option<Loaded>> = Mutex::new(None);

/// Loads ONNX Runtime (once per process) and returns its environment and library path.
pub fn init(configured: Option<&Path>) -> Result<(Environment, PathBuf), RuntimeError> {
    let mut loaded = LOADED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(current) = loaded.as_ref() {
        if configured.is_some() || std::env::var_os("ORT_DYLIB_PATH").is_some() {
            let requested = find_library(configured)?;
            if !same_file(&requested, &current.library) {
                return Err(RuntimeError::LibraryAlreadyLoaded {
                    loaded: current.library.clone(),
                    requested,
                });
            }
        }
        return Ok((current.environment.clone(), current.library.clone()));
    }

    let library = find_library(configured)?;
    let builder = ort::init_from(&library).map_err(|e| RuntimeError::LibraryLoad {
        path: library.clone(),
        message: e.to_string(),
    })?;
    let environment = builder
        .with_name("flowgen")
        .with_telemetry(false)
        .build()
        .map_err(|source| RuntimeError::Environment {
            path: library.clone(),
            source,
        })?;
    tracing::info!(library = %library.display(), "onnx runtime loaded");
    *loaded = Some(Loaded {
        library: library.clone(),
        environment: environment.clone(),
    });
    Ok((environment, library))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A loaded generator model, ready to turn noise into flow vectors.
pub struct GeneratorSession {
    session: Session,
    path: PathBuf,
    shape: GeneratorShape,
    device: Device,
    output: Vec<f32>,
}

impl fmt::Debug for GeneratorSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratorSession")
            .field("path", &self.path)
            .field("shape", &self.shape)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl GeneratorSession {
    /// Loads the model at `path` and checks that it maps `[N, noise_dim]` noise to
    /// `[N, out_dim]` rows.
    pub fn load(
        path: &Path,
        shape: GeneratorShape,
        options: &RuntimeOptions,
    ) -> Result<Self, RuntimeError> {
        let (environment, _) = init(options.library_path.as_deref())?;
        if !path.is_file() {
            return Err(RuntimeError::ModelNotFound {
                path: path.to_path_buf(),
            });
        }
        let (session, device) = open_session(&environment, path, options)?;
        check_signature(&session, path, shape)?;
        tracing::info!(model = %path.display(), %device, "generator model loaded");
        Ok(Self {
            session,
            path: path.to_path_buf(),
            shape,
            device,
            output: Vec::new(),
        })
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The noise and output widths.
    pub fn shape(&self) -> GeneratorShape {
        self.shape
    }

    /// Where the session runs: [`Device::Cpu`] or [`Device::Cuda`].
    pub fn device(&self) -> Device {
        self.device
    }

    /// Generates `batch` rows from `noise` (`batch x noise_dim`, row-major); the rows
    /// (`batch x out_dim`) stay valid until the next call.
    pub fn run(&mut self, noise: &[f32], batch: usize) -> Result<&[f32], RuntimeError> {
        let GeneratorShape { noise_dim, out_dim } = self.shape;
        if noise.len() != batch * noise_dim {
            return Err(RuntimeError::NoiseShape {
                path: self.path.clone(),
                values: noise.len(),
                batch,
                noise_dim,
            });
        }
        let run_error = |source| RuntimeError::Run {
            path: self.path.clone(),
            source,
        };
        let input = TensorRef::from_array_view(([batch, noise_dim], noise)).map_err(run_error)?;
        let outputs = self.session.run(ort::inputs![input]).map_err(run_error)?;
        let (actual, rows) = outputs[OUTPUT_NAME]
            .try_extract_tensor::<f32>()
            .map_err(run_error)?;
        let expected = [batch as i64, out_dim as i64];
        if actual[..] != expected[..] {
            return Err(RuntimeError::OutputShape {
                path: self.path.clone(),
                actual: actual.to_string(),
                batch,
                out_dim,
            });
        }
        // ONNX Runtime allocates the output per run; copying it keeps the borrow simple and
        // costs far less than the matrix products that produced it.
        self.output.clear();
        self.output.extend_from_slice(rows);
        // One pass per batch, much cheaper than the inference itself.
        if let Some(index) = self.output.iter().position(|v| !v.is_finite()) {
            return Err(RuntimeError::NonFiniteOutput {
                path: self.path.clone(),
                row: index / out_dim.max(1),
                column: index % out_dim.max(1),
                value: self.output[index],
            });
        }
        Ok(&self.output)
    }
}

fn open_session(
    environment: &Environment,
    path: &Path,
    options: &RuntimeOptions,
) -> Result<(Session, Device), RuntimeError> {
    let model_error = |source: ort::Error| RuntimeError::Model {
        path: path.to_path_buf(),
        source,
    };
    let builder = session_builder(environment, options).map_err(model_error)?;
    let (mut builder, device) = match options.device {
        Device::Cpu => (builder, Device::Cpu),
        Device::Cuda => (with_cuda(builder, path)?, Device::Cuda),
        Device::Auto => match with_cuda(builder, path) {
            Ok(builder) => (builder, Device::Cuda),
            Err(e) => {
                tracing::warn!(model = %path.display(), error = %e, "cuda unavailable, running the generator on the cpu");
                let builder = session_builder(environment, options).map_err(model_error)?;
                (builder, Device::Cpu)
            }
        },
    };
    let session = builder.commit_from_file(path).map_err(model_error)?;
    Ok((session, device))
}

fn session_builder(
    environment: &Environment,
    options: &RuntimeOptions,
) -> Result<SessionBuilder, ort::Error> {
    let level = match options.optimization {
        GraphOptimization::Disabled => GraphOptimizationLevel::Disable,
        GraphOptimization::Basic => GraphOptimizationLevel::Level1,
        GraphOptimization::Extended => GraphOptimizationLevel::Level2,
        GraphOptimization::All => GraphOptimizationLevel::All,
    };
    let mut builder = Session::builder(environment)?
        .with_optimization_level(level)?
        .with_intra_op_spinning(options.intra_spinning)?;
    if options.intra_threads > 0 {
        builder = builder.with_intra_threads(options.intra_threads)?;
    }
    Ok(builder)
}

/// Registers the CUDA execution provider, failing rather than falling back. This path has
/// been checked against a CPU-only ONNX Runtime (it fails clearly) but not yet on a GPU.
#[cfg(feature = "cuda")]
fn with_cuda(builder: SessionBuilder, path: &Path) -> Result<SessionBuilder, RuntimeError> {
    let cuda = ort::ep::CUDA::default().build().error_on_failure();
    builder
        .with_execution_providers([cuda])
        .map_err(|e| RuntimeError::Cuda {
            path: path.to_path_buf(),
            source: e.into(),
        })
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(_builder: SessionBuilder, path: &Path) -> Result<SessionBuilder, RuntimeError> {
    Err(RuntimeError::CudaNotBuilt {
        path: path.to_path_buf(),
    })
}

/// Checks the model's single input and output against the generator contract.
fn check_signature(
    session: &Session,
    path: &Path,
    shape: GeneratorShape,
) -> Result<(), RuntimeError> {
    let describe = |outlets: &[ort::value::Outlet]| {
        outlets
            .iter()
            .map(|o| match o.dtype().tensor_shape() {
                Some(s) => format!("{} {s}", o.name()),
                None => format!("{} (not a tensor)", o.name()),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let fits = |outlets: &[ort::value::Outlet], name: &str, width: usize| {
        outlets.len() == 1
            && outlets[0].name() == name
            && outlets[0].dtype().tensor_type() == Some(ort::value::TensorElementType::Float32)
            && outlets[0]
                .dtype()
                .tensor_shape()
                .is_some_and(|s| s.len() == 2 && s[1] == width as i64)
    };
    if fits(session.inputs(), INPUT_NAME, shape.noise_dim)
        && fits(session.outputs(), OUTPUT_NAME, shape.out_dim)
    {
        return Ok(());
    }
    Err(RuntimeError::Signature {
        path: path.to_path_buf(),
        expected_input: format!("{INPUT_NAME} f32 [N, {}]", shape.noise_dim),
        expected_output: format!("{OUTPUT_NAME} f32 [N, {}]", shape.out_dim),
        inputs: describe(session.inputs()),
        outputs: describe(session.outputs()),
    })
}
