//! The process's exit codes, and how a command's outcome maps onto them. Documented in the
//! README ("Exit codes"); scripts and supervisors rely on them, so change neither.
//!
//! This module only names outcomes; it never decides them.

use std::process::ExitCode;

/// Finished: every message received was committed and acknowledged (`drain`: the queue is
/// empty; `load`: the whole file; `run`: stopped by a signal with nothing left over).
pub const OK: u8 = 0;
/// An error a human must fix; one line on stderr says which. Nothing uncommitted was
/// acknowledged.
pub const FATAL: u8 = 1;
/// Finished, but some messages could not be stored even as rejects and were released: left on
/// the queue for its redrive policy (dead-letter queue), or, for `load`, reported by line.
/// (BSD sysexits' EX_DATAERR.)
pub const RELEASED: u8 = 65;
/// Stopped by a signal before the work was done: received messages not committed or not yet
/// acknowledged go back to the queue (redelivery skips what was committed), and a `load` or
/// `drain` run again finishes the job. Nothing is lost. (EX_TEMPFAIL.)
pub const INTERRUPTED: u8 = 75;
/// A second SIGINT/SIGTERM: exited at once (128 + SIGINT, as shells report it).
pub const SECOND_SIGNAL: u8 = 130;

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Messages released (see [`RELEASED`]).
    pub released: u64,
    /// A signal stopped the command before its work was done, or with messages received and
    /// not both committed and acknowledged.
    pub interrupted: bool,
}

impl Outcome {
    /// Released wins over interrupted: released messages need a human either way.
    pub fn code(&self) -> u8 {
        if self.released > 0 {
            RELEASED
        } else if self.interrupted {
            INTERRUPTED
        } else {
            OK
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_outranks_interrupted() {
        assert_eq!(Outcome::default().code(), OK);
        assert_eq!(Outcome { released: 0, interrupted: true }.code(), INTERRUPTED);
        assert_eq!(Outcome { released: 2, interrupted: true }.code(), RELEASED);
    }
}
