//! Query results, in the four PromQL value types.

use crate::model::{Labels, Sample};

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct InstantSample {
    /// Series labels.
    pub labels: Labels,
    /// Evaluation time, Unix ms.
    pub timestamp_ms: i64,
    /// Value.
    pub value: f64,
}

/// One series of a range vector (matrix).
#[derive(Clone, Debug, PartialEq)]
pub struct RangeSeries {
    /// Series labels.
    pub labels: Labels,
    /// Points in time order.
    pub samples: Vec<Sample>,
}

/// A PromQL result.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A single number at a time.
    Scalar(Sample),
    /// A string at a time, Unix ms.
    String(i64, String),
    /// An instant vector, sorted by labels.
    Vector(Vec<InstantSample>),
    /// A range vector, sorted by labels.
    Matrix(Vec<RangeSeries>),
}

impl Value {
    /// Prometheus' `resultType` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(..) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}
