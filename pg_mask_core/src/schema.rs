//! The login event's columns, described once.
//!
//! Every place that needs to know which JSON fields become which `user_logins` columns derives
//! it from [`FIELDS`]: the validation ([`crate::login`]) reads the fields and enforces the
//! column widths, the extension's bulk insert finds the columns by these names and checks their
//! types, the INSERT statement lists them, the `mask_columns` trigger check knows which ones hold
//! tokens, and the README's column table is printed by [`markdown_table`] (a test keeps the two
//! equal). Adding a field is one entry here, the column in `sql/01_user_logins.sql`, and tests.
//!
//! Besides the fields, the ingest fills two envelope columns: [`MESSAGE_ID`] (the queue's
//! message id, unique: what makes a redelivery a no-op) and [`CREATE_DATE`] (the UTC date the
//! message was sent).

/// What the ingest does with a field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Stored as given (a JSON string).
    Text,
    /// Personal data: masked before it is stored, so the column holds a pg_mask token.
    Masked,
    /// An `app_version` string (`x.y` or `x.y.z`) stored as an integer ([`crate::app_version`]).
    Version,
}

/// The column's type in the reference schema (`sql/01_user_logins.sql`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Varchar(usize),
    Integer,
}

impl std::fmt::Display for SqlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlType::Varchar(n) => write!(f, "varchar({n})"),
            SqlType::Integer => f.write_str("integer"),
        }
    }
}

/// One JSON field of a login event and the column it fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The key in the message body.
    pub json: &'static str,
    /// The `user_logins` column.
    pub column: &'static str,
    pub kind: Kind,
    /// The type in the reference schema. The extension reads the real width from the table at
    /// run time, so a wider column is honoured without a rebuild.
    pub sql_type: SqlType,
    /// A message without it (or with `null` or `""`) is a reject.
    pub required: bool,
}

/// The fields of a login event, in the order of the reference table's columns.
pub const FIELDS: [Field; 6] = [
    Field {
        json: "user_id",
        column: "user_id",
        kind: Kind::Text,
        sql_type: SqlType::Varchar(128),
        required: true,
    },
    Field {
        json: "device_type",
        column: "device_type",
        kind: Kind::Text,
        sql_type: SqlType::Varchar(32),
        required: false,
    },
    Field {
        json: "ip",
        column: "masked_ip",
        kind: Kind::Masked,
        sql_type: SqlType::Varchar(256),
        required: false,
    },
    Field {
        json: "device_id",
        column: "masked_device_id",
        kind: Kind::Masked,
        sql_type: SqlType::Varchar(256),
        required: false,
    },
    Field {
        json: "locale",
        column: "locale",
        kind: Kind::Text,
        sql_type: SqlType::Varchar(32),
        required: false,
    },
    Field {
        json: "app_version",
        column: "app_version",
        kind: Kind::Version,
        sql_type: SqlType::Integer,
        required: false,
    },
];

/// Number of fields; the length of every per-field array.
pub const N: usize = FIELDS.len();

/// The envelope column holding the queue's message id (`text`, unique).
pub const MESSAGE_ID: &str = "message_id";
/// The envelope column holding the UTC date the message was sent (`date`).
pub const CREATE_DATE: &str = "create_date";

/// The index of the field whose JSON key is `json`.
pub fn field_index(json: &str) -> Option<usize> {
    FIELDS.iter().position(|f| f.json == json)
}

/// The index of the field stored in `column`.
pub fn column_index(column: &str) -> Option<usize> {
    FIELDS.iter().position(|f| f.column == column)
}

/// The columns that hold tokens.
pub fn masked_columns() -> impl Iterator<Item = &'static str> {
    FIELDS.iter().filter(|f| f.kind == Kind::Masked).map(|f| f.column)
}

/// The README's table of what each field becomes.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| JSON field | column | type | stored as | required |\n|---|---|---|---|---|\n",
    );
    for f in FIELDS {
        let stored = match f.kind {
            Kind::Text => "the string",
            Kind::Masked => "a pg_mask token",
            Kind::Version => "`major*1000000 + minor*1000 + patch`",
        };
        let required = if f.required { "yes" } else { "no" };
        out.push_str(&format!(
            "| `{}` | `{}` | `{}` | {stored} | {required} |\n",
            f.json, f.column, f.sql_type
        ));
    }
    out.push_str(&format!(
        "| (queue) | `{MESSAGE_ID}` | `text` | the message id, unique | yes |\n\
         | (queue) | `{CREATE_DATE}` | `date` | UTC date the message was sent | yes |\n"
    ));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lookups_agree() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert_eq!(field_index(f.json), Some(i));
            assert_eq!(column_index(f.column), Some(i));
            assert!(f.kind != Kind::Masked || f.column.starts_with("masked_"));
        }
        assert_eq!(masked_columns().collect::<Vec<_>>(), ["masked_ip", "masked_device_id"]);
        assert_eq!(field_index("nope"), None);
    }

    #[test]
    fn the_readme_shows_this_table() {
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(&markdown_table()),
            "README.md must contain the table printed by schema::markdown_table():\n{}",
            markdown_table()
        );
    }
}
