//! The offline memory planner: places every activation buffer in one arena so that buffers
//! live at the same time never share bytes, and reports how close the arena is to the bound.

/// One buffer to place: its size and the operator steps during which it must hold its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    /// Bytes.
    pub size: usize,
    /// First step it is live (the step that writes it; 0 for model inputs).
    pub first: usize,
    /// Last step it is live (inclusive; past the last operator for model outputs).
    pub last: usize,
}

impl Buffer {
    fn overlaps_in_time(&self, other: &Buffer) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// The result of planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Arena offset of each buffer, in input order.
    pub offsets: Vec<usize>,
    /// Total arena bytes.
    pub arena_size: usize,
    /// No plan can be smaller: the most bytes live at any one step.
    pub lower_bound: usize,
}

/// Every offset is a multiple of this, so int32/f32 tensors can be read in place.
pub const ALIGN: usize = 4;

/// Steps a buffer is live.
fn span(b: &Buffer) -> usize {
    b.last - b.first + 1
}

/// A sort key for one greedy placement order.
type OrderKey = dyn Fn(&Buffer) -> (usize, usize);

/// Plans `buffers`: each of a few greedy orders (largest first, largest area in bytes x steps
/// first, earliest first, longest-lived first) places every buffer at the lowest aligned offset
/// free of the buffers it coexists with; the smallest arena wins. Offline, so trying several
/// orders costs nothing on the device.
pub fn plan(buffers: &[Buffer]) -> Plan {
    let orders: [&OrderKey; 4] = [
        &|b| (usize::MAX - b.size, usize::MAX - span(b)),
        &|b| (usize::MAX - b.size * span(b), usize::MAX - b.size),
        &|b| (b.first, usize::MAX - b.size),
        &|b| (usize::MAX - span(b), usize::MAX - b.size),
    ];
    let lower_bound = lower_bound(buffers);
    orders
        .iter()
        .map(|key| {
            let mut order: Vec<usize> = (0..buffers.len()).collect();
            order.sort_by_key(|&i| (key(&buffers[i]), i));
            let offsets = place(buffers, &order);
            let arena_size = buffers
                .iter()
                .zip(&offsets)
                .map(|(b, &o)| o + b.size)
                .max()
                .unwrap_or(0)
                .next_multiple_of(ALIGN);
            Plan {
                offsets,
                arena_size,
                lower_bound,
            }
        })
        .min_by_key(|p| p.arena_size)
        .unwrap_or(Plan {
            offsets: Vec::new(),
            arena_size: 0,
            lower_bound,
        })
}

/// Places buffers in `order`, each at the lowest aligned offset free of coexisting ones.
fn place(buffers: &[Buffer], order: &[usize]) -> Vec<usize> {
    let mut offsets = vec![0usize; buffers.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(buffers.len());
    for &i in order {
        let b = &buffers[i];
        let mut taken: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| buffers[j].overlaps_in_time(b))
            .map(|&j| (offsets[j], offsets[j] + buffers[j].size))
            .collect();
        taken.sort_unstable();
        let mut offset = 0;
        for (start, end) in taken {
            if offset + b.size <= start {
                break;
            }
            offset = offset.max(end.next_multiple_of(ALIGN));
        }
        offsets[i] = offset;
        placed.push(i);
    }
    offsets
}

/// The most bytes live at any one step.
pub fn lower_bound(buffers: &[Buffer]) -> usize {
    let steps = buffers.iter().map(|b| b.last + 1).max().unwrap_or(0);
    (0..steps)
        .map(|t| {
            buffers
                .iter()
                .filter(|b| b.first <= t && t <= b.last)
                .map(|b| b.size)
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_live_overlap(buffers: &[Buffer], plan: &Plan) -> bool {
        for i in 0..buffers.len() {
            for j in i + 1..buffers.len() {
                let (a, b) = (&buffers[i], &buffers[j]);
                let (oa, ob) = (plan.offsets[i], plan.offsets[j]);
                if a.overlaps_in_time(b) && oa < ob + b.size && ob < oa + a.size {
                    return false;
                }
            }
        }
        true
    }

    #[test]
    fn a_chain_reuses_memory() {
        // in -> op0 -> t1 -> op1 -> t2 -> op2 -> out: only neighbours coexist.
        let buffers = [
            Buffer {
                size: 100,
                first: 0,
                last: 0,
            },
            Buffer {
                size: 200,
                first: 0,
                last: 1,
            },
            Buffer {
                size: 100,
                first: 1,
                last: 2,
            },
            Buffer {
                size: 40,
                first: 2,
                last: 3,
            },
        ];
        let plan = plan(&buffers);
        assert!(no_live_overlap(&buffers, &plan));
        assert_eq!(plan.lower_bound, 300);
        assert_eq!(plan.arena_size, 300);
        assert_eq!(plan.offsets, vec![200, 0, 200, 0]);
    }

    #[test]
    fn random_plans_are_valid_and_near_the_bound() {
        let mut state = 0x9E37_79B9u32;
        let mut next = |m: u32| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % m) as usize
        };
        let mut worst = 1.0f64;
        for _ in 0..500 {
            let n = 1 + next(30);
            let buffers: Vec<Buffer> = (0..n)
                .map(|_| {
                    let first = next(20);
                    Buffer {
                        size: 4 * (1 + next(256)),
                        first,
                        last: first + next(6),
                    }
                })
                .collect();
            let plan = plan(&buffers);
            assert!(no_live_overlap(&buffers, &plan));
            assert!(plan.arena_size >= plan.lower_bound);
            assert!(plan.offsets.iter().all(|o| o % ALIGN == 0));
            worst = worst.max(plan.arena_size as f64 / plan.lower_bound as f64);
        }
        // Greedy placement is not optimal, but on random interval graphs it stays close.
        assert!(worst < 1.5, "worst arena / lower bound = {worst:.3}");
    }
}
