//! A reusable batch of encoded export messages: the buffers are kept between
//! batches, so steady-state sending allocates nothing.

/// Messages encoded for one send call, each with the number of records it holds.
#[derive(Debug)]
pub(crate) struct MessageBatch {
    buffers: Vec<Vec<u8>>,
    records: Vec<u64>,
    len: usize,
    capacity: usize,
    buffer_bytes: usize,
}

impl MessageBatch {
    /// Room for `capacity` messages of up to `buffer_bytes` each.
    pub(crate) fn new(capacity: usize, buffer_bytes: usize) -> MessageBatch {
        MessageBatch {
            buffers: Vec::with_capacity(capacity),
            records: Vec::with_capacity(capacity),
            len: 0,
            capacity: capacity.max(1),
            buffer_bytes,
        }
    }

    /// The buffer the next message is encoded into.
    pub(crate) fn next_buffer(&mut self) -> &mut Vec<u8> {
        if self.len == self.buffers.len() {
            self.buffers.push(Vec::with_capacity(self.buffer_bytes));
            self.records.push(0);
        }
        &mut self.buffers[self.len]
    }

    /// Keeps the message just written into [`MessageBatch::next_buffer`].
    pub(crate) fn commit(&mut self, records: u64) {
        self.records[self.len] = records;
        self.len += 1;
    }

    /// Whether no further message fits.
    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// Number of messages held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether no message is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `index`th message.
    pub(crate) fn message(&self, index: usize) -> &[u8] {
        &self.buffers[index]
    }

    /// Records in the `index`th message.
    pub(crate) fn records(&self, index: usize) -> u64 {
        self.records[index]
    }

    /// Messages from `from` on, as slices.
    pub(crate) fn messages_from(&self, from: usize) -> &[Vec<u8>] {
        &self.buffers[from..self.len]
    }

    /// Records in messages `from..to`.
    pub(crate) fn records_in(&self, from: usize, to: usize) -> u64 {
        self.records[from..to].iter().sum()
    }

    /// Octets in messages `from..to`.
    pub(crate) fn bytes_in(&self, from: usize, to: usize) -> u64 {
        self.buffers[from..to].iter().map(|b| b.len() as u64).sum()
    }

    /// Forgets the messages, keeping the buffers.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused() {
        let mut batch = MessageBatch::new(2, 64);
        batch.next_buffer().extend_from_slice(b"abc");
        batch.commit(3);
        batch.next_buffer().extend_from_slice(b"de");
        batch.commit(1);
        assert!(batch.is_full());
        assert_eq!(batch.records_in(0, 2), 4);
        assert_eq!(batch.bytes_in(0, 2), 5);
        let first = batch.message(0).as_ptr();
        batch.clear();
        assert!(batch.is_empty());
        let again = batch.next_buffer();
        again.clear();
        assert_eq!(again.as_ptr(), first);
    }
}
