//! vm-kube
