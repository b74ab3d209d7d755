//! The test vectors' predictions by class name: each vector's predicted class, then each
//! class's recall, in the device log.

use crate::model::CLASS_NAMES;

/// Per class: test vectors labelled with it, and how many of those were predicted right.
pub struct ClassTally {
    counts: [(usize, usize); CLASS_NAMES.len()],
}

impl ClassTally {
    pub const fn new() -> Self {
        Self {
            counts: [(0, 0); CLASS_NAMES.len()],
        }
    }

    /// Logs vector `vector`'s predicted class by name and counts it against its label.
    pub fn record(&mut self, vector: usize, predicted: usize, label: Option<usize>) {
        if let Some(name) = CLASS_NAMES.get(predicted) {
            defmt::println!("predicted {=usize} {=str}", vector, name);
        }
        if let Some((seen, right)) = label.and_then(|l| self.counts.get_mut(l)) {
            *seen += 1;
            *right += usize::from(label == Some(predicted));
        }
    }

    /// Logs each class's recall (classes without labelled vectors are left out).
    pub fn report(&self) {
        for (name, &(seen, right)) in CLASS_NAMES.iter().zip(&self.counts) {
            if seen > 0 {
                defmt::println!("recall {=str} {=usize}/{=usize}", name, right, seen);
            }
        }
    }
}
