//! vm-cli
