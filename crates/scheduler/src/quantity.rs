//! Resource quantities: the shared parser in component-base.

pub use component_base::quantity::{milli_value, value};
