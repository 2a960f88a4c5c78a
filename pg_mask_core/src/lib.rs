//! pg_mask_core: everything pg_mask does that needs no PostgreSQL.
//!
//! - [`keyring`]: parsing the key ring configuration (`kid:base64key, …`) into ready ciphers.
//! - [`token`]: the masked-token format (`pm1.<kid>.<base64url>`), deterministic AES-256-GCM-SIV.
//! - [`siv`]: AES-256-GCM-SIV specialised for the fixed nonce (keys derived once per key).
//! - [`schema`]: the login event's fields and the columns they fill, described once.
//! - [`login`]: validation of one SQS login-event body into the `user_logins` columns.
//! - [`refusal`]: a loader's report that the database refused a message, as a safe detail.
//! - [`ident`]: qualified SQL names split and folded as PostgreSQL reads them.
//! - [`log_scrub`]: server log lines scrubbed of COPY row data and key material.
//! - [`app_version`]: the `x.y.z` → integer encoding of `app_version`.
//! - [`create_date`]: the UTC date of a `timestamptz`, as PostgreSQL stores a `date`.
//!
//! Nothing here may format key material or plaintext into an error, a `Debug` impl or a log
//! line: errors name settings, entries, fields and positions, never values.

pub mod app_version;
pub mod create_date;
pub mod ident;
pub mod keyring;
pub mod log_scrub;
pub mod login;
pub mod refusal;
pub mod schema;
pub mod siv;
pub mod token;

pub use keyring::{KeyRing, KeyRingError};
pub use token::TokenError;
