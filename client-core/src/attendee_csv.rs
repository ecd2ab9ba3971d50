//! Attendees read from CSV, without the store: every row either becomes an
//! attendee or is refused with its line and why. `ClientCore::import_attendees_csv`
//! writes what this reads; the fuzz target `attendee_csv` feeds it any bytes.

use std::io::Read;

use event_model::document::Attendee;
use serde::Serialize;

use crate::ClientError;

/// A row the import refused, with its line in the file (1 = the header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

/// What a CSV held: the attendees to write, the rows refused, and how many
/// data rows were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rows {
    pub attendees: Vec<Attendee>,
    pub rejected: Vec<RowError>,
    pub rows: u64,
}

/// Reads attendees from CSV (header: `ticket_code,name,email[,ticket_type][,attendee_id][,lists][,revoked][,attention][,unpaid]`;
/// `lists` is `;`-separated; `attention` is a note staff see at the door;
/// `revoked` and `unpaid` are yes/no), streaming. `progress` hears the rows read so
/// far (every 1,000 and at the end); returning `false` stops with `None`.
/// Only a missing or unreadable header is an error.
pub fn read(
    input: impl Read,
    mut progress: impl FnMut(u64) -> bool,
) -> Result<Option<Rows>, ClientError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| ClientError::Import(format!("CSV header: {e}")))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let Some(code_col) = column("ticket_code") else {
        return Err(ClientError::Import(
            "the CSV has no `ticket_code` column".into(),
        ));
    };
    let (name_col, email_col, type_col, id_col, lists_col, revoked_col) = (
        column("name"),
        column("email"),
        column("ticket_type"),
        column("attendee_id"),
        column("lists"),
        column("revoked"),
    );
    let (attention_col, unpaid_col) = (column("attention"), column("unpaid"));
    let mut rejected: Vec<RowError> = Vec::new();
    let mut attendees: Vec<Attendee> = Vec::new();
    let mut seen = std::collections::HashMap::new();
    // Two rows with one attendee id would be one attendee in the event
    // document (the second overwriting the first): refused like a repeated
    // code (found by the attendee_csv fuzz target).
    let mut seen_ids = std::collections::HashMap::new();
    let mut record = csv::StringRecord::new();
    let mut rows = 0u64;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => {
                let line = row_line(error.position(), rows + 2);
                rejected.push(RowError {
                    line,
                    message: format!("unreadable row: {error}"),
                });
                rows += 1;
                continue;
            }
        }
        rows += 1;
        let line = row_line(record.position(), rows + 1);
        let field = |col: Option<usize>| col.and_then(|c| record.get(c)).unwrap_or("").to_owned();
        let code = field(Some(code_col));
        let email = field(email_col);
        let refuse = |message: String| RowError { line, message };
        let flag = |name: &str, col: Option<usize>| {
            parse_flag(&field(col)).ok_or_else(|| {
                refuse(format!(
                    "`{name}` must be yes/no/true/false/1/0, got `{}`",
                    field(col)
                ))
            })
        };
        let (revoked, unpaid) = match (flag("revoked", revoked_col), flag("unpaid", unpaid_col)) {
            (Ok(revoked), Ok(unpaid)) => (revoked, unpaid),
            (Err(refused), _) | (_, Err(refused)) => {
                rejected.push(refused);
                continue;
            }
        };
        if code.is_empty() {
            rejected.push(refuse("the ticket code is empty".into()));
        } else if !email.is_empty() && !email.contains('@') {
            rejected.push(refuse(format!("`{email}` is not an email address")));
        } else if let Some(first) = seen.get(&code) {
            rejected.push(refuse(format!(
                "ticket code `{code}` already appears on line {first}"
            )));
        } else {
            let id = Some(field(id_col))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| code.clone());
            if let Some(first) = seen_ids.get(&id) {
                rejected.push(refuse(format!(
                    "attendee id `{id}` already appears on line {first}"
                )));
                continue;
            }
            seen.insert(code.clone(), line);
            seen_ids.insert(id.clone(), line);
            attendees.push(Attendee {
                id,
                ticket_code: code,
                name: field(name_col),
                email,
                ticket_type: field(type_col),
                revoked,
                lists: field(lists_col)
                    .split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                attention: Some(field(attention_col)).filter(|note| !note.is_empty()),
                unpaid,
            });
        }
        if rows.is_multiple_of(1000) && !progress(rows) {
            return Ok(None);
        }
    }
    if !progress(rows) {
        return Ok(None);
    }
    Ok(Some(Rows {
        attendees,
        rejected,
        rows,
    }))
}

/// The line a row starts on (1 = the header): the reader's count, which
/// follows quoted fields over several lines, but never before the row's own
/// number (`ordinal`: the reader counts `\n` only, so in a file with
/// old-style `\r` line ends every row would be "line 1").
fn row_line(position: Option<&csv::Position>, ordinal: u64) -> u64 {
    position.map_or(ordinal, |p| p.line().max(ordinal))
}

fn parse_flag(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "false" | "no" | "n" => Some(false),
        "1" | "true" | "yes" | "y" => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_an_attendee_or_refused_and_no_attendee_is_written_twice() {
        let csv = "ticket_code,name,email,attendee_id\n\
                   T-1,Ana,ana@example.org,a1\n\
                   T-2,Bo,bo@example.org,a1\n\
                   a1,Cy,cy@example.org,\n\
                   T-3,Di,di@example.org,\n";
        let rows = read(csv.as_bytes(), |_| true).unwrap().unwrap();
        let ids: Vec<&str> = rows.attendees.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["a1", "T-3"]);
        let why: Vec<(u64, &str)> = rows
            .rejected
            .iter()
            .map(|r| (r.line, r.message.as_str()))
            .collect();
        assert_eq!(
            why,
            [
                (3, "attendee id `a1` already appears on line 2"),
                // Its code is the id another row gave: the same attendee.
                (4, "attendee id `a1` already appears on line 2"),
            ]
        );
        assert_eq!(rows.rows, 4);
    }

    #[test]
    fn rows_of_a_file_with_carriage_return_line_ends_have_their_own_lines() {
        let csv = "ticket_code,name\rT-1,Ana\r,No code\rT-1,Again\r";
        let rows = read(csv.as_bytes(), |_| true).unwrap().unwrap();
        assert_eq!(rows.attendees.len(), 1);
        let lines: Vec<u64> = rows.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, [3, 4]);
    }

    #[test]
    fn attention_notes_and_unpaid_flags_are_read_and_a_bad_flag_refused() {
        let csv = "ticket_code,name,attention,unpaid\n\
                   T-1,Ana,ID check: 18+,no\n\
                   T-2,Bo,,yes\n\
                   T-3,Cy,,perhaps\n\
                   T-4,Di,,\n";
        let rows = read(csv.as_bytes(), |_| true).unwrap().unwrap();
        let read: Vec<(&str, Option<&str>, bool)> = rows
            .attendees
            .iter()
            .map(|a| (a.id.as_str(), a.attention.as_deref(), a.unpaid))
            .collect();
        assert_eq!(
            read,
            [
                ("T-1", Some("ID check: 18+"), false),
                ("T-2", None, true),
                ("T-4", None, false)
            ]
        );
        assert_eq!(rows.rejected.len(), 1);
        assert_eq!(rows.rejected[0].line, 4);
        assert!(
            rows.rejected[0].message.contains("`unpaid`"),
            "{:?}",
            rows.rejected
        );
    }
}
