//! The checkpoint's `model_args`: the reference's own record of the network's settings, read by
//! name (several spellings accepted).

use super::error::ImportError;
use super::pickle::{Obj, Value};

/// The checkpoint's `model_args`.
#[derive(Clone, Debug)]
pub struct ModelArgs(pub(super) Vec<(String, Obj)>);

impl ModelArgs {
    fn find(&self, aliases: &[&str]) -> Option<(String, &Obj)> {
        aliases.iter().find_map(|a| {
            self.0
                .iter()
                .rev()
                .find(|(k, _)| k == a)
                .map(|(k, v)| (k.clone(), v))
        })
    }

    /// A non-negative integer under one of `aliases` (the first present wins).
    pub(super) fn usize(&self, aliases: &[&str]) -> Result<Option<(String, usize)>, ImportError> {
        let Some((key, v)) = self.find(aliases) else {
            return Ok(None);
        };
        let n = match &**v {
            Value::Int(i) => usize::try_from(*i).ok(),
            Value::Float(f) if f.fract() == 0.0 && *f >= 0.0 && *f < 1e15 => Some(*f as usize),
            _ => None,
        };
        n.map(|n| Some((key.clone(), n))).ok_or_else(|| {
            ImportError::ModelArgs(format!(
                "`{key}` is a {}, expected a non-negative integer",
                v.kind()
            ))
        })
    }

    pub(super) fn f64(&self, aliases: &[&str]) -> Result<Option<f64>, ImportError> {
        let Some((key, v)) = self.find(aliases) else {
            return Ok(None);
        };
        match &**v {
            Value::Int(i) => Ok(Some(*i as f64)),
            Value::Float(f) => Ok(Some(*f)),
            other => Err(ImportError::ModelArgs(format!(
                "`{key}` is a {}, expected a number",
                other.kind()
            ))),
        }
    }
}
