//! Cumulative acknowledgement of emitted byte ranges of one file.

use std::collections::VecDeque;

/// One emitted range.
#[derive(Debug, Clone, Copy)]
struct Range {
    start: u64,
    end: u64,
    acked: bool,
}

/// In-flight ranges of one stream, in emission order.
///
/// Ranges are emitted with increasing `start`. The acknowledged offset moves to the end
/// of a range only when that range and every earlier one are acknowledged, so acks may
/// arrive in any order.
#[derive(Debug)]
pub(crate) struct AckTracker {
    acked_offset: u64,
    in_flight: VecDeque<Range>,
    unacked_bytes: u64,
}

impl AckTracker {
    /// Creates a tracker whose bytes before `offset` count as acknowledged.
    pub(crate) fn new(offset: u64) -> Self {
        Self {
            acked_offset: offset,
            in_flight: VecDeque::new(),
            unacked_bytes: 0,
        }
    }

    /// Returns the offset up to which every emitted range is acknowledged.
    pub(crate) fn acked_offset(&self) -> u64 {
        self.acked_offset
    }

    /// Returns the total length of emitted ranges not yet acknowledged.
    pub(crate) fn unacked_bytes(&self) -> u64 {
        self.unacked_bytes
    }

    /// Tells whether every emitted range is acknowledged.
    pub(crate) fn is_settled(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Records an emitted range and returns its length. Empty ranges need no
    /// acknowledgement and are not recorded, which keeps `start` unique in the queue.
    pub(crate) fn emit(&mut self, start: u64, end: u64) -> u64 {
        let len = end.saturating_sub(start);
        if len == 0 {
            return 0;
        }
        self.in_flight.push_back(Range {
            start,
            end,
            acked: false,
        });
        self.unacked_bytes += len;
        len
    }

    /// Marks the range `start..end` acknowledged and returns how many unacknowledged
    /// bytes that released; an unknown or repeated range releases 0.
    pub(crate) fn ack(&mut self, start: u64, end: u64) -> u64 {
        let Ok(index) = self
            .in_flight
            .binary_search_by_key(&start, |range| range.start)
        else {
            return 0;
        };
        let range = &mut self.in_flight[index];
        if range.end != end || range.acked {
            return 0;
        }
        range.acked = true;
        let released = end.saturating_sub(start);
        self.unacked_bytes -= released;
        while let Some(front) = self.in_flight.front().filter(|range| range.acked) {
            self.acked_offset = front.end;
            self.in_flight.pop_front();
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_in_order_advances() {
        let mut tracker = AckTracker::new(0);
        tracker.emit(0, 5);
        tracker.emit(5, 9);
        assert_eq!(tracker.ack(0, 5), 5);
        assert_eq!(tracker.acked_offset(), 5);
        assert_eq!(tracker.ack(5, 9), 4);
        assert_eq!(tracker.acked_offset(), 9);
        assert!(tracker.is_settled());
    }

    #[test]
    fn ack_out_of_order_waits_for_gap() {
        let mut tracker = AckTracker::new(10);
        tracker.emit(10, 12);
        tracker.emit(12, 20);
        tracker.emit(20, 21);
        tracker.ack(20, 21);
        tracker.ack(12, 20);
        assert_eq!(tracker.acked_offset(), 10);
        assert_eq!(tracker.unacked_bytes(), 2);
        tracker.ack(10, 12);
        assert_eq!(tracker.acked_offset(), 21);
        assert_eq!(tracker.unacked_bytes(), 0);
    }

    #[test]
    fn repeated_or_unknown_ack_is_ignored() {
        let mut tracker = AckTracker::new(0);
        tracker.emit(0, 5);
        tracker.emit(5, 6);
        assert_eq!(tracker.ack(5, 6), 1);
        assert_eq!(tracker.ack(5, 6), 0);
        assert_eq!(tracker.ack(1, 5), 0);
        assert_eq!(tracker.ack(0, 4), 0);
        assert_eq!(tracker.unacked_bytes(), 5);
    }

    #[test]
    fn empty_range_is_not_tracked() {
        let mut tracker = AckTracker::new(7);
        tracker.emit(7, 7);
        assert_eq!(tracker.ack(7, 7), 0);
        assert!(tracker.is_settled());
        assert_eq!(tracker.acked_offset(), 7);
    }
}
