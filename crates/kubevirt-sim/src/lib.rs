//! The sandbox: a real Kubernetes control plane with KubeVirt and kubelets simulated.
