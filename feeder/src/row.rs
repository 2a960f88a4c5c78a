//! One message as the database receives it: what every source builds and the store writes.
//!
//! It must never be formatted with its body: until the database has masked it, the body holds
//! personal data, so `Debug` shows the id and the body's length only.

use std::time::SystemTime;

#[derive(Clone, PartialEq, Eq)]
pub struct Row {
    /// The source's id for the message (SQS `MessageId`, `line-<n>-<hash>` for a file): the
    /// database skips an id it has seen, which makes a redelivery harmless.
    pub message_id: String,
    /// When the message was sent, if the source knows (`create_date` derives from it).
    pub sent_at: Option<SystemTime>,
    pub body: String,
}

impl Row {
    /// Bytes this row holds in memory, for batches bounded by size as well as by count.
    pub fn weight(&self) -> usize {
        self.message_id.len() + self.body.len() + 64
    }
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Row")
            .field("message_id", &self.message_id)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_body() {
        let r = Row { message_id: "m1".into(), sent_at: None, body: "10.1.2.3 secret".into() };
        let shown = format!("{r:?}");
        assert!(shown.contains("m1") && !shown.contains("secret"), "{shown}");
    }
}
