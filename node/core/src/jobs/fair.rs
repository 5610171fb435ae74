//! Fair shares of a worker's task slots: who runs next, and who may queue.
//!
//! A worker serves many submitters through many coordinators. First come,
//! first served lets one heavy submitter (or one coordinator of many jobs)
//! hold every slot for as long as its queue lasts. Two pieces of plain data
//! replace it; the node's async gate only wakes the waiter they name:
//!
//! - [`FairQueue`]: the tasks waiting for a slot, queued per submitter and,
//!   within a submitter, per coordinator. [`FairQueue::pop`] takes one task
//!   from the next submitter in turn, and within it from its next
//!   coordinator in turn: deficit round robin with a cost of one slot per
//!   task, which is plain round robin. A submitter with one task waiting
//!   waits for at most one task of each other submitter.
//! - [`Admission`]: the tasks a worker has accepted and not finished,
//!   bounded in total and per submitter (a share of the total, half by
//!   default), so one submitter cannot fill the queue and make the worker
//!   answer "busy" to everyone else.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Tasks waiting for a slot, served round robin over submitters (`S`) and,
/// within each, over coordinators (`C`). Bounded: [`FairQueue::push`] gives
/// the item back when the queue is full.
#[derive(Debug)]
pub struct FairQueue<S, C, T> {
    /// Submitters with waiting items, in turn order.
    turn: VecDeque<S>,
    per: HashMap<S, PerSubmitter<C, T>>,
    len: usize,
    cap: usize,
}

#[derive(Debug)]
struct PerSubmitter<C, T> {
    /// Coordinators with waiting items, in turn order.
    turn: VecDeque<C>,
    items: HashMap<C, VecDeque<T>>,
}

impl<S: Clone + Eq + Hash, C: Clone + Eq + Hash, T> FairQueue<S, C, T> {
    /// An empty queue of at most `cap` items (at least one).
    pub fn new(cap: usize) -> Self {
        FairQueue {
            turn: VecDeque::new(),
            per: HashMap::new(),
            len: 0,
            cap: cap.max(1),
        }
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Submitters with items waiting.
    pub fn submitters(&self) -> usize {
        self.turn.len()
    }

    /// Queues `item` of `submitter` sent by `coordinator`, behind that
    /// coordinator's earlier items. Gives it back when the queue is full
    /// (nothing changes then).
    pub fn push(&mut self, submitter: S, coordinator: C, item: T) -> Result<(), T> {
        if self.len >= self.cap {
            return Err(item);
        }
        let per = self.per.entry(submitter.clone()).or_insert_with(|| {
            self.turn.push_back(submitter);
            PerSubmitter {
                turn: VecDeque::new(),
                items: HashMap::new(),
            }
        });
        let items = per.items.entry(coordinator.clone()).or_insert_with(|| {
            per.turn.push_back(coordinator);
            VecDeque::new()
        });
        items.push_back(item);
        self.len += 1;
        Ok(())
    }

    /// The next item in fair order: the oldest item of the next coordinator
    /// of the next submitter; both then go to the back of their turn.
    pub fn pop(&mut self) -> Option<T> {
        let submitter = self.turn.pop_front()?;
        let per = self.per.get_mut(&submitter)?;
        let coordinator = per.turn.pop_front()?;
        let items = per.items.get_mut(&coordinator)?;
        let item = items.pop_front();
        if items.is_empty() {
            per.items.remove(&coordinator);
        } else {
            per.turn.push_back(coordinator);
        }
        if per.turn.is_empty() {
            self.per.remove(&submitter);
        } else {
            self.turn.push_back(submitter);
        }
        if item.is_some() {
            self.len -= 1;
        }
        item
    }
}

/// Why [`Admission::admit`] refused a batch. Nothing was admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// The batch is larger than one submitter's share: it never fits, even
    /// on an idle worker.
    #[error("a batch of {tasks} tasks is over the most this worker takes at once ({bound})")]
    TooLarge {
        /// Tasks in the batch.
        tasks: usize,
        /// The most a batch may hold ([`Admission::batch_bound`]).
        bound: usize,
    },
    /// The queue has no room for it now.
    #[error("{queued} tasks queued here; {tasks} more do not fit in {capacity}")]
    Full {
        /// Tasks queued now.
        queued: usize,
        /// Tasks in the batch.
        tasks: usize,
        /// The queue's capacity.
        capacity: usize,
    },
    /// The submitter holds its whole share of the queue already.
    #[error(
        "this submitter has {queued} tasks queued here; {tasks} more are over its share of {share}"
    )]
    OverShare {
        /// The submitter's tasks queued now.
        queued: usize,
        /// Tasks in the batch.
        tasks: usize,
        /// One submitter's share.
        share: usize,
    },
}

/// Tasks accepted and not finished, in total and per submitter.
#[derive(Debug)]
pub struct Admission<S> {
    capacity: usize,
    share: usize,
    total: usize,
    per: HashMap<S, usize>,
}

impl<S: Clone + Eq + Hash> Admission<S> {
    /// A queue of `capacity` tasks (at least 2), of which one submitter may
    /// hold half.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(2);
        Admission {
            capacity,
            share: capacity / 2,
            total: 0,
            per: HashMap::new(),
        }
    }

    /// The most tasks one batch may hold: one submitter's share, capped by `max`.
    pub fn batch_bound(&self, max: usize) -> usize {
        self.share.min(max).max(1)
    }

    /// Tasks accepted and not finished.
    pub fn queued(&self) -> usize {
        self.total
    }

    /// Admits `tasks` tasks of `submitter` if they fit in the queue and in
    /// the submitter's share; a batch over [`Admission::batch_bound`]`(max)`
    /// never fits.
    pub fn admit(&mut self, submitter: &S, tasks: usize, max: usize) -> Result<(), AdmitError> {
        let bound = self.batch_bound(max);
        if tasks > bound {
            return Err(AdmitError::TooLarge { tasks, bound });
        }
        if self.total + tasks > self.capacity {
            return Err(AdmitError::Full {
                queued: self.total,
                tasks,
                capacity: self.capacity,
            });
        }
        let mine = self.per.get(submitter).copied().unwrap_or(0);
        if mine + tasks > self.share {
            return Err(AdmitError::OverShare {
                queued: mine,
                tasks,
                share: self.share,
            });
        }
        self.total += tasks;
        *self.per.entry(submitter.clone()).or_insert(0) += tasks;
        Ok(())
    }

    /// Releases `tasks` tasks of `submitter` admitted before.
    pub fn release(&mut self, submitter: &S, tasks: usize) {
        self.total = self.total.saturating_sub(tasks);
        if let Some(n) = self.per.get_mut(submitter) {
            *n = n.saturating_sub(tasks);
            if *n == 0 {
                self.per.remove(submitter);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submitters_take_turns_whatever_their_backlog() {
        let mut q = FairQueue::new(10_000);
        // A heavy submitter queues 1,000 tasks first, through two coordinators.
        for i in 0..1000u32 {
            q.push('A', i % 2, ('A', i)).unwrap();
        }
        // A light one queues 3 after them.
        for i in 0..3u32 {
            q.push('B', 9, ('B', i)).unwrap();
        }
        let first: Vec<(char, u32)> = (0..6).map(|_| q.pop().unwrap()).collect();
        assert_eq!(
            first,
            vec![('A', 0), ('B', 0), ('A', 1), ('B', 1), ('A', 2), ('B', 2)],
            "B waits one task of A per task, not a thousand"
        );
        assert_eq!(q.submitters(), 1);
        assert_eq!(q.len(), 997);
    }

    #[test]
    fn coordinators_of_one_submitter_take_turns() {
        let mut q = FairQueue::new(100);
        for i in 0..4u32 {
            q.push(0u8, 'x', ('x', i)).unwrap();
        }
        q.push(0u8, 'y', ('y', 0)).unwrap();
        assert_eq!(q.pop(), Some(('x', 0)));
        assert_eq!(q.pop(), Some(('y', 0)));
        assert_eq!(q.pop(), Some(('x', 1)));
        assert_eq!(q.pop(), Some(('x', 2)));
    }

    #[test]
    fn the_queue_is_bounded_and_drains_in_order_per_coordinator() {
        let mut q = FairQueue::new(3);
        for i in 0..3 {
            q.push(1u8, 1u8, i).unwrap();
        }
        assert_eq!(
            q.push(2, 1, 99),
            Err(99),
            "full: given back, nothing changed"
        );
        assert_eq!(q.len(), 3);
        assert_eq!(
            (q.pop(), q.pop(), q.pop(), q.pop()),
            (Some(0), Some(1), Some(2), None)
        );
        assert!(q.is_empty());
        assert_eq!(q.submitters(), 0);
        q.push(2, 1, 7).unwrap();
        assert_eq!(q.pop(), Some(7));
    }

    #[test]
    fn admission_keeps_room_for_a_second_submitter() {
        let mut a = Admission::new(8);
        assert_eq!(a.batch_bound(256), 4);
        assert_eq!(a.batch_bound(2), 2);
        assert_eq!(
            a.admit(&'A', 5, 256),
            Err(AdmitError::TooLarge { tasks: 5, bound: 4 }),
            "over the bound even when idle"
        );
        a.admit(&'A', 4, 256).unwrap();
        assert!(matches!(
            a.admit(&'A', 1, 256),
            Err(AdmitError::OverShare { .. })
        ));
        // The heavy submitter is at its share; the second still gets in.
        a.admit(&'B', 4, 256).unwrap();
        assert!(matches!(
            a.admit(&'C', 1, 256),
            Err(AdmitError::Full { .. })
        ));
        a.release(&'A', 4);
        assert_eq!(a.queued(), 4);
        a.admit(&'C', 2, 256).unwrap();
        a.admit(&'A', 2, 256).unwrap();
        assert_eq!(a.queued(), 8);
    }
}
