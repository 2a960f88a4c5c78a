//! JSON lines from a file or stdin as a [`Source`] (`feeder load`): backfills and replays.
//!
//! Streams: it holds one receive's worth of lines at a time, never the input, so memory is
//! bounded by the batch whatever the file's size. Each line's message id is
//! `line-<n>-<first 16 hex of sha256(line)>`: stable across re-runs of the same file (so a
//! re-run loads nothing twice, and an interrupted load finishes by running it again) and
//! different for an edited line. Acknowledging is bookkeeping only; a released line is
//! remembered by id (which names its line) for the final report. Never logs a line's content.

use super::{Message, Source, SourceError};
use crate::row::Row;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Lines per receive, and the most bytes one receive gathers.
const LINES_PER_RECEIVE: usize = 500;
const BYTES_PER_RECEIVE: usize = 4 << 20;
/// A longer line is cut here (its id still hashes the whole line); the database then rejects
/// the cut body as invalid JSON. Bounds memory for any input. SQS's own limit is 1 MiB.
pub const MAX_LINE: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct FileError {
    path: String,
    source: std::io::Error,
}

impl SourceError for FileError {
    fn is_transient(&self) -> bool {
        false
    }
}

struct Reader {
    input: Box<dyn AsyncBufRead + Send + Unpin>,
    line_no: u64,
}

pub struct FileSource {
    path: String,
    reader: tokio::sync::Mutex<Reader>,
    size: Option<u64>,
    bytes_read: AtomicU64,
    /// Where the last line whose row committed ends: progress and ETA count what is loaded,
    /// not what was read ahead.
    bytes_committed: AtomicU64,
    eof: AtomicBool,
    repaired: AtomicU64,
    cut: AtomicU64,
    released: Mutex<Vec<String>>,
    started: Instant,
}

impl FileSource {
    /// `-` reads stdin.
    pub async fn open(path: &std::path::Path) -> Result<Self, FileError> {
        let name = path.display().to_string();
        let err = |source| FileError { path: name.clone(), source };
        let (input, size): (Box<dyn AsyncBufRead + Send + Unpin>, _) = if name == "-" {
            (Box::new(tokio::io::BufReader::new(tokio::io::stdin())), None)
        } else {
            let f = tokio::fs::File::open(path).await.map_err(err)?;
            let size = f.metadata().await.ok().map(|m| m.len()).filter(|&n| n > 0);
            (Box::new(tokio::io::BufReader::with_capacity(256 << 10, f)), size)
        };
        Ok(Self::from_reader(name, input, size))
    }

    pub fn from_reader(
        path: String,
        input: Box<dyn AsyncBufRead + Send + Unpin>,
        size: Option<u64>,
    ) -> Self {
        FileSource {
            path,
            reader: tokio::sync::Mutex::new(Reader { input, line_no: 0 }),
            size,
            bytes_read: AtomicU64::new(0),
            bytes_committed: AtomicU64::new(0),
            eof: AtomicBool::new(false),
            repaired: AtomicU64::new(0),
            cut: AtomicU64::new(0),
            released: Mutex::new(Vec::new()),
            started: Instant::now(),
        }
    }

    /// Ids of the lines released, in the order they were.
    pub fn released(&self) -> Vec<String> {
        self.released.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// (lines repaired: invalid UTF-8 or NUL, lines cut at [`MAX_LINE`]).
    pub fn repairs(&self) -> (u64, u64) {
        (self.repaired.load(Ordering::Relaxed), self.cut.load(Ordering::Relaxed))
    }

    /// Reads the next line (without its `\n`/`\r\n`), keeping at most [`MAX_LINE`] bytes but
    /// hashing all of it. `None` at the end of the input.
    async fn next_line(
        &self,
        r: &mut Reader,
        out: &mut Vec<u8>,
    ) -> std::io::Result<Option<[u8; 32]>> {
        out.clear();
        let mut hash = Sha256::new();
        let mut any = false;
        let mut cut = false;
        loop {
            let buf = r.input.fill_buf().await?;
            if buf.is_empty() {
                break;
            }
            any = true;
            let (chunk, done) = match memchr(buf) {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            let room = MAX_LINE.saturating_sub(out.len());
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            cut |= chunk.len() > room;
            hash.update(chunk);
            let consumed = done.unwrap_or(buf.len());
            r.input.consume(consumed);
            self.bytes_read.fetch_add(consumed as u64, Ordering::Relaxed);
            if done.is_some() {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        if cut {
            self.cut.fetch_add(1, Ordering::Relaxed);
        }
        // The id hashes the line without its line ending, as it always has.
        if out.last() == Some(&b'\r') && !cut {
            out.pop();
            let mut h = Sha256::new();
            h.update(&out[..]);
            return Ok(Some(h.finalize().into()));
        }
        Ok(Some(hash.finalize().into()))
    }
}

fn memchr(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

/// `line-<n>-<16 hex>`.
pub fn message_id(line_no: u64, digest: &[u8; 32]) -> String {
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("line-{line_no}-{hex}")
}

/// The body as PostgreSQL text can hold it: invalid UTF-8 and U+0000 replaced (and counted),
/// so that one bad line cannot stop a backfill; the database then rejects it with a reason.
fn body_of(bytes: Vec<u8>, repaired: &AtomicU64) -> String {
    let body = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            repaired.fetch_add(1, Ordering::Relaxed);
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    };
    if body.contains('\0') {
        repaired.fetch_add(1, Ordering::Relaxed);
        return body.replace('\0', "\u{FFFD}");
    }
    body
}

impl Source for FileSource {
    /// (line number, byte offset where the line ends).
    type Ack = (u64, u64);
    type Error = FileError;

    async fn receive(&self, max: usize) -> Result<Vec<Message<(u64, u64)>>, FileError> {
        let mut r = self.reader.lock().await;
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut line = Vec::new();
        while out.len() < max.min(LINES_PER_RECEIVE) && bytes < BYTES_PER_RECEIVE {
            let digest = match self.next_line(&mut r, &mut line).await {
                Ok(Some(d)) => d,
                Ok(None) => {
                    self.eof.store(true, Ordering::Relaxed);
                    break;
                }
                Err(source) => return Err(FileError { path: self.path.clone(), source }),
            };
            r.line_no += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            bytes += line.len();
            let row = Row {
                message_id: message_id(r.line_no, &digest),
                sent_at: None,
                // A copy of exactly the line's length: the read buffer keeps its capacity for
                // the next line, and a batch holds no slack (memory is bounded by the batch).
                body: body_of(line.clone(), &self.repaired),
            };
            let end = self.bytes_read.load(Ordering::Relaxed);
            out.push(Message { row, ack: (r.line_no, end), received_at: Instant::now() });
        }
        Ok(out)
    }

    async fn acknowledge(&self, acks: Vec<(u64, u64)>) -> Result<Vec<(u64, u64)>, FileError> {
        if let Some(end) = acks.iter().map(|a| a.1).max() {
            self.bytes_committed.fetch_max(end, Ordering::Relaxed);
        }
        Ok(Vec::new())
    }

    async fn keep_alive(&self, _acks: &[(u64, u64)]) -> Result<(), FileError> {
        Ok(())
    }

    fn release(&self, message_id: &str, _ack: &(u64, u64)) {
        self.released.lock().unwrap_or_else(|p| p.into_inner()).push(message_id.to_owned());
    }

    async fn drained(&self) -> Result<bool, FileError> {
        Ok(self.eof.load(Ordering::Relaxed))
    }

    fn lease(&self) -> Option<Duration> {
        None
    }

    fn max_receivers(&self) -> usize {
        1
    }

    fn max_per_receive(&self) -> usize {
        LINES_PER_RECEIVE
    }

    fn progress(&self) -> Option<String> {
        let read = self.bytes_committed.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let mut text = format!("{:.1} MB loaded", read as f64 / 1e6);
        if let Some(size) = self.size {
            let rate = read as f64 / secs;
            let left = size.saturating_sub(read) as f64;
            let eta = if rate > 0.0 { left / rate } else { f64::INFINITY };
            text += &format!(
                ", {:.0}% of {:.1} MB, ETA {}",
                100.0 * read as f64 / size as f64,
                size as f64 / 1e6,
                if eta.is_finite() { format!("{eta:.0} s") } else { "?".to_owned() }
            );
        }
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(input: &'static [u8]) -> FileSource {
        FileSource::from_reader("test".into(), Box::new(input), Some(input.len() as u64))
    }

    #[tokio::test]
    async fn ids_are_stable_blank_lines_skipped_and_bad_bytes_repaired() {
        let input: &[u8] = b"{\"a\":1}\n\n{\"a\":1}\r\n\xff\xfe\nlast";
        let s = source(input);
        let got = s.receive(100).await.expect("reads");
        assert_eq!(got.len(), 4);
        assert!(s.drained().await.expect("drained"));
        assert_eq!(s.repairs(), (1, 0));
        let d: [u8; 32] = Sha256::digest(b"{\"a\":1}").into();
        assert_eq!(got[0].row.message_id, message_id(1, &d));
        assert_eq!(got[1].row.message_id, message_id(3, &d), "same content, other line");
        assert_eq!(got[1].row.body, "{\"a\":1}");
        assert_eq!(got[3].row.body, "last");
        let again = source(input).receive(100).await.expect("reads");
        let ids = |v: &[Message<(u64, u64)>]| {
            v.iter().map(|m| m.row.message_id.clone()).collect::<Vec<_>>()
        };
        assert_eq!(ids(&got), ids(&again));
        assert!(s.receive(100).await.expect("eof").is_empty());
    }

    #[tokio::test]
    async fn receives_are_bounded_and_long_lines_cut() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.push(b'\n');
        input.extend(b"{}\n".repeat(1200));
        let input: &'static [u8] = Box::leak(input.into_boxed_slice());
        let s = source(input);
        let first = s.receive(10_000).await.expect("reads");
        assert_eq!(first[0].row.body.len(), MAX_LINE);
        assert_eq!(s.repairs().1, 1);
        assert!(first.len() <= LINES_PER_RECEIVE);
        let mut n = first.len();
        loop {
            let more = s.receive(10_000).await.expect("reads");
            if more.is_empty() {
                break;
            }
            n += more.len();
        }
        assert_eq!(n, 1201);
        assert!(s.progress().expect("progress").contains("0% of"), "nothing committed yet");
        s.acknowledge(vec![(1201, input.len() as u64)]).await.expect("ack");
        assert!(s.progress().expect("progress").contains("100% of"));
    }
}
