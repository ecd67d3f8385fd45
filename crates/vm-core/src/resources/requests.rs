//! What a pod requests from the scheduler, as one value that adds and subtracts: CPU, memory
//! and every other resource name.

use std::collections::BTreeMap;

/// What a pod requests from the scheduler: CPU and memory, and every other resource name
/// (hugepages, ephemeral storage, device-plugin and extended resources) in its own units.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Requests {
    /// Cores.
    pub cpu: f64,
    /// Bytes.
    pub memory: f64,
    /// Every other resource: bytes for `hugepages-*` and `ephemeral-storage`, counts for the
    /// rest.
    pub extended: BTreeMap<String, f64>,
}

impl Requests {
    /// CPU and memory only.
    #[must_use]
    pub fn new(cpu: f64, memory: f64) -> Self {
        Self {
            cpu,
            memory,
            extended: BTreeMap::new(),
        }
    }

    /// The amount of one resource name (`cpu` in cores, `memory` in bytes).
    #[must_use]
    pub fn get(&self, name: &str) -> f64 {
        match name {
            "cpu" => self.cpu,
            "memory" => self.memory,
            _ => self.extended.get(name).copied().unwrap_or(0.0),
        }
    }

    /// Adds `amount` of `name`.
    pub fn add(&mut self, name: &str, amount: f64) {
        match name {
            "cpu" => self.cpu += amount,
            "memory" => self.memory += amount,
            _ => *self.extended.entry(name.to_string()).or_default() += amount,
        }
    }

    /// Every resource name with its amount, CPU and memory first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        [("cpu", self.cpu), ("memory", self.memory)]
            .into_iter()
            .chain(self.extended.iter().map(|(k, v)| (k.as_str(), *v)))
    }
}

impl std::ops::Add for Requests {
    type Output = Self;
    fn add(mut self, other: Self) -> Self {
        self += &other;
        self
    }
}

impl std::ops::AddAssign<&Requests> for Requests {
    fn add_assign(&mut self, other: &Requests) {
        self.cpu += other.cpu;
        self.memory += other.memory;
        for (k, v) in &other.extended {
            *self.extended.entry(k.clone()).or_default() += v;
        }
    }
}

impl std::ops::SubAssign<&Requests> for Requests {
    fn sub_assign(&mut self, other: &Requests) {
        self.cpu -= other.cpu;
        self.memory -= other.memory;
        for (k, v) in &other.extended {
            *self.extended.entry(k.clone()).or_default() -= v;
        }
    }
}
