//! A network's parameters by dotted module path (`blocks.3.attn.q.weight`): read into host
//! tensors, listed, and set from a file's tensors.

use std::collections::BTreeMap;

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{backend::Backend, Tensor, TensorData};

use super::error::WeightError;

/// A tensor in host memory, f32.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Collects every float parameter by its dotted module path.
pub(super) struct Collector {
    pub path: Vec<String>,
    pub tensors: BTreeMap<String, HostTensor>,
}

impl<B: Backend> ModuleVisitor<B> for Collector {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let tensor = param.val();
        let shape = tensor.dims().to_vec();
        let data = tensor
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("f32 data");
        self.tensors
            .insert(self.path.join("."), HostTensor { shape, data });
    }
}

pub(super) struct NameCollector {
    pub path: Vec<String>,
    pub names: Vec<String>,
}

impl<B: Backend> ModuleVisitor<B> for NameCollector {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<B, D>>) {
        self.names.push(self.path.join("."));
    }
}

/// Replaces every float parameter by the file's tensor of the same path.
pub(super) struct Loader {
    pub path: Vec<String>,
    pub tensors: BTreeMap<String, HostTensor>,
    pub error: Option<WeightError>,
}

impl<B: Backend> ModuleMapper<B> for Loader {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        // The model's parameters are still lazy (their random initialisation has not run): the
        // shape and device are read without running it, and a loaded tensor replaces it, so
        // loading never draws and then throws away the model's worth of random numbers.
        if self.error.is_some() {
            return param;
        }
        let name = self.path.join(".");
        let expected = param.lazy_shape().as_slice().to_vec();
        match self.tensors.remove(&name) {
            None => {
                self.error = Some(WeightError::MissingTensor(name));
                param
            }
            Some(t) if t.shape != expected => {
                self.error = Some(WeightError::ShapeMismatch {
                    name,
                    expected,
                    found: t.shape,
                });
                param
            }
            Some(t) => {
                let tensor =
                    Tensor::from_data(TensorData::new(t.data, t.shape), &param.lazy_device());
                let id = param.id;
                param.transform_for_load(tensor, id)
            }
        }
    }
}
