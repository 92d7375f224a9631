//! Writing a [`TrainedGenerator`] as an ONNX model, and checking the written file against
//! the Rust forward pass through ONNX Runtime.
//!
//! The graph takes `noise` `[N, noise_dim]` (f32, N dynamic) and returns `flows`
//! `[N, out_dim]`: a `Gemm` + `LeakyRelu` per hidden layer, then one `Gemm` per output
//! activation range followed by its activation, joined by `Concat`. Splitting the last
//! layer by range avoids `Slice` nodes. Opset 17, IR version 8, both run by ONNX Runtime 1.31.
//! The messages are the few `onnx.proto` types an MLP needs, written with `prost` so that
//! no `protoc` is needed.

use std::path::{Path, PathBuf};

use prost::Message;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::mlp::Dense;
use super::output::OutputActivation;
use super::runtime::{GeneratorSession, GeneratorShape, RuntimeError, RuntimeOptions};
use super::wgan::{TrainedGenerator, WganError};

/// Name of the graph's input.
pub const INPUT_NAME: &str = "noise";
/// Name of the graph's output.
pub const OUTPUT_NAME: &str = "flows";
/// The ONNX operator set the graph uses.
pub const OPSET_VERSION: i64 = 17;
/// The ONNX IR version written (the one that goes with opset 17).
pub const IR_VERSION: i64 = 8;
/// Largest absolute difference accepted between ONNX Runtime and the Rust forward pass.
pub const VERIFY_TOLERANCE: f32 = 1e-4;

/// What went wrong writing or checking an exported generator.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// ONNX Runtime could not load or run the file.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The Rust forward pass failed.
    #[error(transparent)]
    Generator(#[from] WganError),
    /// ONNX Runtime's output differs from the Rust forward pass.
    #[error("{path}: onnx runtime output differs from the trained generator by {max_abs_diff} at batch {batch} (tolerance {tolerance})")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Largest absolute difference seen.
        max_abs_diff: f32,
        /// Batch size at which it was seen.
        batch: usize,
        /// The accepted difference.
        tolerance: f32,
    },
}

/// Serialises `generator` as an ONNX model.
pub fn to_onnx_bytes(generator: &TrainedGenerator) -> Vec<u8> {
    let model = proto::ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![proto::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET_VERSION,
        }],
        producer_name: "flowgen".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: "flowgen WGAN-GP flow generator".into(),
        graph: Some(graph(generator)),
    };
    model.encode_to_vec()
}

/// Writes `generator` as an ONNX model to `path`.
pub fn write_onnx(generator: &TrainedGenerator, path: &Path) -> Result<(), OnnxError> {
    std::fs::write(path, to_onnx_bytes(generator)).map_err(|source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads `path` through ONNX Runtime and compares its output with `generator`'s own forward
/// pass on the same noise, at a few batch sizes; returns the largest absolute difference,
/// or [`OnnxError::Mismatch`] when it exceeds [`VERIFY_TOLERANCE`].
pub fn verify(
    generator: &TrainedGenerator,
    path: &Path,
    options: &RuntimeOptions,
) -> Result<f32, OnnxError> {
    let shape = GeneratorShape {
        noise_dim: generator.noise_dim(),
        out_dim: generator.out_dim(),
    };
    let mut session = GeneratorSession::load(path, shape, options)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let mut worst = 0.0_f32;
    for batch in [1, 7, 256] {
        let noise: Vec<f32> = (0..batch * shape.noise_dim)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let expected = generator.forward(&noise, batch)?;
        let got = session.run(&noise, batch)?;
        let diff = max_abs_diff(&expected, got);
        if diff > VERIFY_TOLERANCE {
            return Err(OnnxError::Mismatch {
                path: path.to_path_buf(),
                max_abs_diff: diff,
                batch,
                tolerance: VERIFY_TOLERANCE,
            });
        }
        worst = worst.max(diff);
    }
    tracing::info!(path = %path.display(), max_abs_diff = worst, "onnx export matches the trained generator");
    Ok(worst)
}

/// Largest absolute difference; NaN anywhere counts as infinitely different.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter().zip(b).fold(0.0, |worst, (x, y)| {
        let d = (x - y).abs();
        if d.is_nan() {
            f32::INFINITY
        } else {
            worst.max(d)
        }
    })
}

fn graph(generator: &TrainedGenerator) -> proto::GraphProto {
    let mut g = proto::GraphProto {
        name: "flowgen_generator".into(),
        input: vec![value_info(INPUT_NAME, generator.noise_dim())],
        output: vec![value_info(OUTPUT_NAME, generator.out_dim())],
        ..Default::default()
    };
    let layers = generator.layers();
    let (last, hidden) = layers.split_last().expect("a trained generator has layers");

    let mut current = INPUT_NAME.to_string();
    for (l, layer) in hidden.iter().enumerate() {
        let pre = format!("hidden{l}_linear");
        let out = format!("hidden{l}");
        add_gemm(&mut g, &current, layer, &format!("hidden{l}"), &pre);
        let alpha = attribute_float("alpha", generator.leaky_slope());
        g.node.push(node("LeakyRelu", &[&pre], &out, vec![alpha]));
        current = out;
    }

    let segments = generator.activations();
    let mut pieces = Vec::with_capacity(segments.len());
    for (k, s) in segments.iter().enumerate() {
        let piece = if segments.len() == 1 {
            OUTPUT_NAME.to_string()
        } else {
            format!("output{k}")
        };
        let columns = column_slice(last, s.start, s.end);
        let pre = if s.activation == OutputActivation::Linear {
            piece.clone()
        } else {
            format!("output{k}_linear")
        };
        add_gemm(&mut g, &current, &columns, &format!("output{k}"), &pre);
        match s.activation {
            OutputActivation::Linear => {}
            OutputActivation::Sigmoid => g.node.push(node("Sigmoid", &[&pre], &piece, vec![])),
            OutputActivation::Tanh => g.node.push(node("Tanh", &[&pre], &piece, vec![])),
            OutputActivation::Softmax => {
                let axis = attribute_int("axis", 1);
                g.node.push(node("Softmax", &[&pre], &piece, vec![axis]));
            }
        }
        pieces.push(piece);
    }
    if pieces.len() > 1 {
        let inputs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let axis = attribute_int("axis", 1);
        g.node
            .push(node("Concat", &inputs, OUTPUT_NAME, vec![axis]));
    }
    g
}

/// The output columns `start..end` of `layer` as a layer of their own.
fn column_slice(layer: &Dense, start: usize, end: usize) -> Dense {
    let w = layer
        .w
        .chunks_exact(layer.out_dim)
        .flat_map(|row| row[start..end].iter().copied())
        .collect();
    Dense {
        in_dim: layer.in_dim,
        out_dim: end - start,
        w,
        b: layer.b[start..end].to_vec(),
    }
}

/// Adds `output = input * W + b` as a `Gemm` with its weights as initializers.
fn add_gemm(g: &mut proto::GraphProto, input: &str, layer: &Dense, prefix: &str, output: &str) {
    let (w, b) = (format!("{prefix}_weight"), format!("{prefix}_bias"));
    g.initializer
        .push(tensor(&w, &[layer.in_dim, layer.out_dim], &layer.w));
    g.initializer.push(tensor(&b, &[layer.out_dim], &layer.b));
    g.node.push(node("Gemm", &[input, &w, &b], output, vec![]));
}

fn node(
    op: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<proto::AttributeProto>,
) -> proto::NodeProto {
    proto::NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        name: output.to_string(),
        op_type: op.to_string(),
        attribute,
        ..Default::default()
    }
}

fn tensor(name: &str, dims: &[usize], values: &[f32]) -> proto::TensorProto {
    proto::TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: proto::DATA_TYPE_FLOAT,
        name: name.to_string(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// A `[N, width]` f32 tensor with a symbolic batch dimension.
fn value_info(name: &str, width: usize) -> proto::ValueInfoProto {
    use proto::dimension::Value;
    let dim = |value| proto::Dimension { value: Some(value) };
    proto::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(proto::TypeProto {
            value: Some(proto::type_proto::Value::TensorType(
                proto::TensorTypeProto {
                    elem_type: proto::DATA_TYPE_FLOAT,
                    shape: Some(proto::TensorShapeProto {
                        dim: vec![
                            dim(Value::DimParam("N".into())),
                            dim(Value::DimValue(width as i64)),
                        ],
                    }),
                },
            )),
        }),
    }
}

fn attribute_float(name: &str, f: f32) -> proto::AttributeProto {
    proto::AttributeProto {
        name: name.into(),
        r#type: proto::ATTRIBUTE_FLOAT,
        f,
        ..Default::default()
    }
}

fn attribute_int(name: &str, i: i64) -> proto::AttributeProto {
    proto::AttributeProto {
        name: name.into(),
        r#type: proto::ATTRIBUTE_INT,
        i,
        ..Default::default()
    }
}

/// The subset of `onnx.proto` (github.com/onnx/onnx, `onnx/onnx.proto`) that an MLP needs;
/// field numbers are those of the specification.
mod proto {
    /// `TensorProto.DataType.FLOAT`.
    pub const DATA_TYPE_FLOAT: i32 = 1;
    /// `AttributeProto.AttributeType.FLOAT`.
    pub const ATTRIBUTE_FLOAT: i32 = 1;
    /// `AttributeProto.AttributeType.INT`.
    pub const ATTRIBUTE_INT: i32 = 2;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(int64, tag = "1")]
        pub ir_version: i64,
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSetIdProto>,
        #[prost(string, tag = "2")]
        pub producer_name: String,
        #[prost(string, tag = "3")]
        pub producer_version: String,
        #[prost(string, tag = "6")]
        pub doc_string: String,
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSetIdProto {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(int64, tag = "2")]
        pub version: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfoProto>,
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfoProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        #[prost(string, tag = "3")]
        pub name: String,
        #[prost(string, tag = "4")]
        pub op_type: String,
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
        #[prost(string, tag = "7")]
        pub domain: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(int32, tag = "20")]
        pub r#type: i32,
        #[prost(float, tag = "2")]
        pub f: f32,
        #[prost(int64, tag = "3")]
        pub i: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int64, repeated, tag = "1")]
        pub dims: Vec<i64>,
        #[prost(int32, tag = "2")]
        pub data_type: i32,
        #[prost(string, tag = "8")]
        pub name: String,
        #[prost(bytes = "vec", tag = "9")]
        pub raw_data: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfoProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<TypeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProto {
        #[prost(oneof = "type_proto::Value", tags = "1")]
        pub value: Option<type_proto::Value>,
    }

    pub mod type_proto {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(message, tag = "1")]
            TensorType(super::TensorTypeProto),
        }
    }

    /// `TypeProto.Tensor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorTypeProto {
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<Dimension>,
    }

    /// `TensorShapeProto.Dimension`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
    }

    pub mod dimension {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(int64, tag = "1")]
            DimValue(i64),
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::output::ColumnActivation;

    #[test]
    fn serialised_model_decodes_to_the_graph_that_was_built() {
        let activations = [ColumnActivation {
            start: 2,
            end: 5,
            activation: OutputActivation::Softmax,
        }];
        let g = TrainedGenerator::random(3, &[4, 4], 6, &activations, 1).unwrap();
        let bytes = to_onnx_bytes(&g);
        let model = proto::ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(model.ir_version, IR_VERSION);
        assert_eq!(model.opset_import[0].version, OPSET_VERSION);
        let graph = model.graph.unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            [
                "Gemm",
                "LeakyRelu",
                "Gemm",
                "LeakyRelu",
                "Gemm",
                "Gemm",
                "Softmax",
                "Gemm",
                "Concat"
            ]
        );
        assert_eq!(graph.node.last().unwrap().output, [OUTPUT_NAME]);
        // Each output Gemm holds its own columns: 2, 3 and 1 of the 6 outputs.
        let widths: Vec<i64> = graph
            .initializer
            .iter()
            .filter(|t| t.name.starts_with("output") && t.name.ends_with("_bias"))
            .map(|t| t.dims[0])
            .collect();
        assert_eq!(widths, [2, 3, 1]);
        let first = &graph.initializer[0];
        assert_eq!(first.dims, [3, 4]);
        assert_eq!(&first.raw_data[..4], &g.layers()[0].w[0].to_le_bytes());
    }

    #[test]
    fn column_slice_keeps_the_chosen_columns() {
        let layer = Dense {
            in_dim: 2,
            out_dim: 3,
            w: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            b: vec![7.0, 8.0, 9.0],
        };
        let s = column_slice(&layer, 1, 3);
        assert_eq!(s.w, [2.0, 3.0, 5.0, 6.0]);
        assert_eq!(s.b, [8.0, 9.0]);
    }
}
