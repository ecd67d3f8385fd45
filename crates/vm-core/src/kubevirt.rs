//! Typed KubeVirt (and CDI) objects, partial by design.
//!
//! Each struct holds only the fields the plugins read; every other field is ignored on
//! deserialisation, so a manifest from a newer KubeVirt never fails to parse because of a field
//! we do not model. Values that KubeVirt treats as enums (`runStrategy`, `evictionStrategy`) stay
//! strings here: an unknown value is an audit finding, not a parse error.
//!
//! The types implement `k8s_openapi::Resource` and `Metadata`, which gives them kube's
//! `Resource` through its blanket impl, so `vm-kube` can list and watch them with `Api<T>`.

mod cdi;
pub mod common_instancetypes;
mod instance;
mod objects;
mod resource_macro;

pub use cdi::*;
pub use instance::*;
pub use objects::*;
