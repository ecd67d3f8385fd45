//! vm-core
