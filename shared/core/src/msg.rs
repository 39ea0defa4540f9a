//! The mailbox (SPEC §11): messages between agents, each delivered exactly once
//! to each reader, and every SQL statement on the `messages` and `deliveries` tables.
//!
//! A message goes to one mailbox name, or to `*` (every name that asks, except
//! its sender). Receiving is a claim: one IMMEDIATE transaction selects the
//! oldest unread messages for a reader and inserts their `deliveries` rows, so a
//! message addressed to B reaches exactly one of any number of concurrent `B`
//! readers, and a broadcast reaches each distinct reader once.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{params, Row, Transaction};
use serde::{Deserialize, Serialize};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::event::{self, About, Kind};
use crate::task::Task;
use crate::text::sh_word;
use crate::time::now_ms;

/// The largest body orch stores, in bytes.
pub const MAX_BODY: usize = 1 << 20;
/// The recipient that means "every mailbox that asks".
pub const BROADCAST: &str = "*";
/// How often a waiting receiver looks for news (a cheap read, no lock taken).
pub const POLL: Duration = Duration::from_millis(20);

/// Checks a mailbox name (or a kind): the role rule, 1-64 of `A-Za-z0-9_.-`,
/// not starting with `.` or `-`. `what` names the value in the error.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    crate::task::validate_role(name).map_err(|_| {
        Error::invalid(format!(
            "bad {what} {:?}: use 1-64 of A-Z a-z 0-9 _ . - (not starting with . or -)",
            crate::text::clip(name, 40)
        ))
    })
}

/// Checks a recipient: a mailbox name, or `*` for every mailbox.
pub fn validate_recipient(what: &str, name: &str) -> Result<()> {
    if name == BROADCAST {
        return Ok(());
    }
    validate_name(what, name)
}

/// Checks a body: non-empty UTF-8 without NUL, at most 1 MiB.
pub fn validate_body(body: &str) -> Result<()> {
    if body.trim().is_empty() {
        return Err(Error::invalid("empty message: the body needs some text"));
    }
    if body.len() > MAX_BODY {
        return Err(Error::invalid(format!(
            "message body is {} bytes; the limit is {MAX_BODY} (1 MiB)",
            body.len()
        )));
    }
    if body.contains('\0') {
        return Err(Error::invalid("message body contains a NUL byte"));
    }
    Ok(())
}

/// A message to send, as given (a `send --stdin` line): validated by
/// [`NewMessage::validate`] before anything is written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    pub body: String,
}

/// Values that fill in what a [`NewMessage`] leaves out (the command's flags).
#[derive(Debug, Clone, Default)]
pub struct Defaults<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub kind: Option<&'a str>,
}

/// A validated message, ready to store.
#[derive(Debug, Clone)]
pub struct ValidMessage {
    from: String,
    to: String,
    kind: Option<String>,
    body: String,
}

impl NewMessage {
    /// Validates every field; `d` fills in a missing sender, recipient or kind.
    pub fn validate(self, d: &Defaults) -> Result<ValidMessage> {
        let from = self
            .from
            .or_else(|| d.from.map(str::to_string))
            .ok_or_else(|| Error::invalid("missing sender: give --from or \"from\""))?;
        let to = self
            .to
            .or_else(|| d.to.map(str::to_string))
            .ok_or_else(|| Error::invalid("missing recipient: give --to or \"to\""))?;
        let kind = self.kind.or_else(|| d.kind.map(str::to_string));
        validate_name("sender", &from)?;
        validate_recipient("recipient", &to)?;
        if let Some(k) = &kind {
            validate_name("kind", k)?;
        }
        validate_body(&self.body)?;
        Ok(ValidMessage {
            from,
            to,
            kind,
            body: self.body,
        })
    }
}

/// Stores messages, all or nothing, in one IMMEDIATE transaction; returns their ids in order.
pub fn send(db: &Db, msgs: &[ValidMessage]) -> Result<Vec<i64>> {
    let now = now_ms();
    db.write(|tx| {
        let mut insert = tx.prepare_cached(
            "INSERT INTO messages (sender, recipient, kind, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut ids = Vec::with_capacity(msgs.len());
        for m in msgs {
            insert.execute(params![m.from, m.to, m.kind, m.body, now])?;
            let id = tx.last_insert_rowid();
            event::record(tx, Kind::MessageSent, About::message(id), None, None, Some(&format!("{} -> {}", m.from, m.to)))?;
            ids.push(id);
        }
        Ok(ids)
    })
}

/// A message as a reader gets it; the `recv --json` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub id: i64,
    pub from: String,
    pub to: String,
    pub kind: Option<String>,
    pub body: String,
    #[serde(serialize_with = "crate::time::ser_rfc3339")]
    pub sent_at: i64,
}

const COLUMNS: &str = "m.id, m.sender, m.recipient, m.kind, m.body, m.created_at";

impl Message {
    fn from_row(r: &Row) -> rusqlite::Result<Message> {
        Ok(Message {
            id: r.get(0)?,
            from: r.get(1)?,
            to: r.get(2)?,
            kind: r.get(3)?,
            body: r.get(4)?,
            sent_at: r.get(5)?,
        })
    }
}

/// SQL condition: message `m` is in mailbox `?1` (addressed to it, or a
/// broadcast it did not send).
const IN_MAILBOX: &str = "(m.recipient = ?1 OR (m.recipient = '*' AND m.sender <> ?1))";
/// SQL condition: mailbox `?1` has not received message `m`.
const NOT_READ_BY: &str =
    "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.reader = ?1)";

fn unread_in(tx: &Transaction, reader: &str, max: Option<usize>) -> Result<Vec<Message>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM messages m WHERE {IN_MAILBOX} AND {NOT_READ_BY} ORDER BY m.id LIMIT ?2"
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let limit = max.map(|n| n as i64).unwrap_or(-1);
    let rows = stmt.query_map(params![reader, limit], Message::from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Claims the oldest unread messages of `reader` (at most `max`): selected and
/// marked delivered in one IMMEDIATE transaction, so no other reader can get them.
pub fn claim(db: &Db, reader: &str, max: Option<usize>) -> Result<Vec<Message>> {
    claim_with(db, reader, max, &mut |_| Ok(()))
}

/// [`claim`], handing the messages to `deliver` (which writes and flushes
/// them) before the claim commits: when `deliver` fails, the transaction rolls
/// back and nothing is claimed. The write lock is held while `deliver` runs,
/// so it must be quick and bounded in time.
pub fn claim_with(
    db: &Db,
    reader: &str,
    max: Option<usize>,
    deliver: &mut dyn FnMut(&[Message]) -> std::io::Result<()>,
) -> Result<Vec<Message>> {
    let now = now_ms();
    db.write(|tx| {
        let msgs = unread_in(tx, reader, max)?;
        if msgs.is_empty() {
            return Ok(msgs);
        }
        let mut mark = tx.prepare_cached(
            "INSERT INTO deliveries (message_id, reader, read_at) VALUES (?1, ?2, ?3)",
        )?;
        for m in &msgs {
            mark.execute(params![m.id, reader, now])?;
            event::record(
                tx,
                Kind::MessageReceived,
                About::message(m.id),
                None,
                None,
                Some(reader),
            )?;
        }
        deliver(&msgs).map_err(|e| undelivered(&msgs, e))?;
        Ok(msgs)
    })
}

/// The error of a delivery that failed: nothing was claimed.
fn undelivered(msgs: &[Message], e: std::io::Error) -> Error {
    let n = msgs.len();
    Error::invalid(format!(
        "cannot print the message{} ({e}); nothing was claimed, {} unread",
        if n == 1 { "" } else { "s" },
        if n == 1 { "it stays" } else { "they stay" }
    ))
}

/// The oldest unread messages of `reader`, left unread.
pub fn peek(db: &Db, reader: &str, max: Option<usize>) -> Result<Vec<Message>> {
    db.read(|tx| unread_in(tx, reader, max))
}

/// Whether `reader` has anything unread (a read: takes no write lock).
pub fn has_unread(db: &Db, reader: &str) -> Result<bool> {
    db.read(|tx| {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM messages m WHERE {IN_MAILBOX} AND {NOT_READ_BY})"
        );
        Ok(tx.query_row(&sql, [reader], |r| r.get(0))?)
    })
}

/// How `recv` reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Recv {
    /// At most this many messages; all unread when `None`.
    pub max: Option<usize>,
    /// How long to wait for a first message; `None` or zero: look once.
    pub wait: Option<Duration>,
    /// Read without claiming.
    pub peek: bool,
}

/// Receives for `reader`: the claimed (or peeked) messages, empty when none
/// came in time. While waiting it holds no lock: it sleeps [`POLL`], reads
/// `PRAGMA data_version`, and only when another process committed does it look
/// (a read) and, when something is there, claim (the write lock).
///
/// `deliver` gets the messages before the claim commits (see [`claim_with`]):
/// delivered first, claimed after, so a failed delivery loses nothing. A
/// reader killed between the two sees the messages again (at least once).
pub fn recv(
    db: &Db,
    reader: &str,
    r: Recv,
    deliver: &mut dyn FnMut(&[Message]) -> std::io::Result<()>,
) -> Result<Vec<Message>> {
    let deadline = r.wait.map(|w| Instant::now() + w);
    loop {
        // Read the version before looking, so a message committed after the
        // look still changes it and ends the sleep below.
        let version = db.data_version()?;
        if has_unread(db, reader)? {
            let msgs = match r.peek {
                true => {
                    let msgs = peek(db, reader, r.max)?;
                    if !msgs.is_empty() {
                        deliver(&msgs).map_err(|e| undelivered(&msgs, e))?;
                    }
                    msgs
                }
                false => claim_with(db, reader, r.max, deliver)?,
            };
            if !msgs.is_empty() {
                return Ok(msgs);
            }
            // Another reader claimed them first: wait for the next change.
        }
        let Some(deadline) = deadline else {
            return Ok(Vec::new());
        };
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            std::thread::sleep(POLL.min(deadline - now));
            if db.data_version()? != version {
                break;
            }
        }
    }
}

/// One delivery of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub reader: String,
    #[serde(serialize_with = "crate::time::ser_rfc3339")]
    pub read_at: i64,
}

/// A message with who has received it; the `list --json` record.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub message: Message,
    pub read_by: Vec<Delivery>,
}

/// What `list` shows.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// Mailbox `to` (messages addressed to it and broadcasts it did not send);
    /// `*` means broadcasts only.
    pub to: Option<String>,
    pub from: Option<String>,
    /// With `to`: not yet received by that mailbox. Without: received by no one.
    pub unread: bool,
}

/// Messages matching `f`, oldest first, with their deliveries.
pub fn list(db: &Db, f: &MessageFilter) -> Result<Vec<Listed>> {
    // ?1 and ?2 both appear in every variant, as rusqlite binds both.
    let mut sql = format!("SELECT {COLUMNS} FROM messages m WHERE (?2 IS NULL OR m.sender = ?2)");
    match f.to.as_deref() {
        Some(BROADCAST) => sql.push_str(" AND m.recipient = ?1"),
        Some(_) => {
            let _ = write!(sql, " AND {IN_MAILBOX}");
        }
        None => sql.push_str(" AND ?1 IS NULL"),
    }
    if f.unread {
        match f.to.as_deref() {
            Some(to) if to != BROADCAST => {
                let _ = write!(sql, " AND {NOT_READ_BY}");
            }
            _ => sql
                .push_str(" AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id)"),
        }
    }
    sql.push_str(" ORDER BY m.id");
    db.read(|tx| {
        let mut stmt = tx.prepare(&sql)?;
        let messages: Vec<Message> = stmt
            .query_map(params![f.to, f.from], Message::from_row)?
            .collect::<rusqlite::Result<_>>()?;
        let mut dels = tx.prepare_cached(
            "SELECT reader, read_at FROM deliveries WHERE message_id = ?1 ORDER BY read_at, reader",
        )?;
        let mut out = Vec::with_capacity(messages.len());
        for message in messages {
            let read_by = dels
                .query_map([message.id], |r| {
                    Ok(Delivery {
                        reader: r.get(0)?,
                        read_at: r.get(1)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            out.push(Listed { message, read_by });
        }
        Ok(out)
    })
}

/// Deletes messages sent before `before` (UTC ms) and their deliveries; returns how many.
pub fn purge(db: &Db, before: i64) -> Result<usize> {
    db.write(|tx| {
        tx.execute(
            "DELETE FROM deliveries WHERE message_id IN (SELECT id FROM messages WHERE created_at < ?1)",
            [before],
        )?;
        Ok(tx.execute("DELETE FROM messages WHERE created_at < ?1", [before])?)
    })
}

/// The mailbox name of each task of a batch, in order, all different: its
/// role when no other task of the batch has that role, else `ROLE-ID`. Unique
/// by construction, whatever the roles: the plain names are taken first, and a
/// made-up name that is already taken (roles `worker`, `worker`, `worker-2`)
/// gets a further `-2`, `-3`… until it is free.
pub fn mailbox_names(tasks: &[Task]) -> Vec<String> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for t in tasks {
        *count.entry(t.role.as_str()).or_default() += 1;
    }
    let mut taken: std::collections::HashSet<String> = tasks
        .iter()
        .filter(|t| count[t.role.as_str()] == 1)
        .map(|t| t.role.clone())
        .collect();
    tasks
        .iter()
        .map(|t| {
            if count[t.role.as_str()] == 1 {
                return t.role.clone();
            }
            let name = (1..)
                .map(|k| match k {
                    1 => with_suffix(&t.role, &format!("-{}", t.id)),
                    k => with_suffix(&t.role, &format!("-{}-{k}", t.id)),
                })
                .find(|n| !taken.contains(n))
                .unwrap_or_default();
            taken.insert(name.clone());
            name
        })
        .collect()
}

/// `role` cut so that `role` + `suffix` fits the 64 characters of a name.
fn with_suffix(role: &str, suffix: &str) -> String {
    // Roles are ASCII, so cutting at a byte is cutting at a character.
    let keep = role.len().min(64usize.saturating_sub(suffix.len()));
    format!("{}{suffix}", &role[..keep])
}

/// The line `orch-emit --with-mailbox` adds to an agent's prompt: its mailbox
/// name, its peers', and the exact commands to send and read. `db` is the
/// database to name with `--db` (when it was chosen by `--db` or `ORCH_DB`, which
/// the agent's shell may not have).
pub fn mailbox_line(me: &str, peers: &[String], db: Option<&Path>) -> String {
    let cmd = match db {
        Some(p) => format!("orch-msg --db {}", sh_word(&p.to_string_lossy())),
        None => "orch-msg".to_string(),
    };
    let peers = match peers {
        [] => "no other agent runs in this batch".to_string(),
        _ => {
            let names: Vec<String> = peers.iter().map(|p| format!("`{p}`")).collect();
            format!("your peers in this batch are {}", names.join(", "))
        }
    };
    format!(
        "Mailbox: your name is `{me}` and {peers}. To tell a peer something, run `{cmd} send --from {me} --to PEER 'TEXT'` (`--to '*'` reaches every peer; `-` instead of TEXT reads stdin). To read messages sent to you, run `{cmd} recv --as {me}` (exit 1: none waiting; add `--wait 60` to wait up to 60 s for one)."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(from: &str, to: &str, body: &str) -> ValidMessage {
        NewMessage {
            from: Some(from.into()),
            to: Some(to.into()),
            body: body.into(),
            ..Default::default()
        }
        .validate(&Defaults::default())
        .unwrap()
    }

    #[test]
    fn direct_messages_are_delivered_once() {
        let db = Db::open_in_memory().unwrap();
        let ids = send(
            &db,
            &[
                msg("a", "b", "one"),
                msg("a", "b", "two"),
                msg("a", "c", "other"),
            ],
        )
        .unwrap();
        assert_eq!(peek(&db, "b", None).unwrap().len(), 2);
        let got = claim(&db, "b", Some(1)).unwrap();
        assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[0]]);
        let got = claim(&db, "b", None).unwrap();
        assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[1]]);
        assert!(claim(&db, "b", None).unwrap().is_empty());
        assert!(!has_unread(&db, "b").unwrap());
        assert!(has_unread(&db, "c").unwrap());
    }

    #[test]
    fn broadcast_reaches_each_reader_once_but_not_its_sender() {
        let db = Db::open_in_memory().unwrap();
        let id = send(&db, &[msg("a", "*", "all")]).unwrap()[0];
        for r in ["b", "c"] {
            assert_eq!(claim(&db, r, None).unwrap()[0].id, id);
            assert!(claim(&db, r, None).unwrap().is_empty());
        }
        assert!(claim(&db, "a", None).unwrap().is_empty());
        let l = list(&db, &MessageFilter::default()).unwrap();
        assert_eq!(l[0].read_by.len(), 2);
    }

    #[test]
    fn bad_input_is_refused() {
        let d = Defaults::default();
        let bad = [
            NewMessage {
                from: Some("a".into()),
                to: Some("b".into()),
                body: " \n".into(),
                ..Default::default()
            },
            NewMessage {
                from: Some("a".into()),
                to: Some("b".into()),
                body: "x\0y".into(),
                ..Default::default()
            },
            NewMessage {
                from: Some("a".into()),
                to: Some("b".into()),
                body: "x".repeat(MAX_BODY + 1),
                ..Default::default()
            },
            NewMessage {
                from: Some("*".into()),
                to: Some("b".into()),
                body: "x".into(),
                ..Default::default()
            },
            NewMessage {
                from: Some("a".into()),
                to: Some("b c".into()),
                body: "x".into(),
                ..Default::default()
            },
            NewMessage {
                from: Some("a".into()),
                to: Some("b".into()),
                kind: Some("-x".into()),
                body: "x".into(),
            },
            NewMessage {
                to: Some("b".into()),
                body: "x".into(),
                ..Default::default()
            },
        ];
        for m in bad {
            assert!(m.clone().validate(&d).is_err(), "{m:?}");
        }
        let max = NewMessage {
            from: Some("a".into()),
            to: Some("*".into()),
            body: "x".repeat(MAX_BODY),
            ..Default::default()
        };
        assert!(max.validate(&d).is_ok());
    }

    #[test]
    fn purge_drops_old_messages_and_their_deliveries() {
        let db = Db::open_in_memory().unwrap();
        send(&db, &[msg("a", "b", "old")]).unwrap();
        claim(&db, "b", None).unwrap();
        assert_eq!(purge(&db, now_ms() + 1).unwrap(), 1);
        let left: i64 = db
            .read(|tx| Ok(tx.query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn mailbox_names_are_unique_in_a_batch() {
        let t = |id: i64, role: &str| Task::sample(id, role, "", "");
        let long = "r".repeat(64);
        let names = mailbox_names(&[
            t(1, "dev"),
            t(2, "dev"),
            t(3, "qa"),
            t(4, &long),
            t(5, &long),
        ]);
        assert_eq!(&names[..3], ["dev-1", "dev-2", "qa"]);
        for n in &names {
            validate_name("name", n).unwrap();
        }
        assert_ne!(names[3], names[4]);
    }

    /// Item 12: names are unique whatever the roles, including roles shaped
    /// like the names made up for others.
    #[test]
    fn item12_mailbox_names_are_unique_for_adversarial_roles() {
        let long = "w".repeat(64);
        let cut = format!("{}-1", "w".repeat(62));
        let sets: Vec<Vec<(i64, &str)>> = vec![
            vec![(1, "worker"), (2, "worker"), (3, "worker-2")],
            vec![
                (1, "worker-2"),
                (2, "worker"),
                (3, "worker"),
                (4, "worker-2-2"),
            ],
            vec![
                (2, "a"),
                (3, "a"),
                (4, "a-3"),
                (5, "a-3-2"),
                (6, "a-3-3"),
                (7, "a-2"),
            ],
            vec![(1, &long), (2, &long), (3, &cut), (4, &cut)],
            vec![(1, "x"), (1, "x"), (1, "x-1"), (1, "x-1-2")],
        ];
        for set in sets {
            let tasks: Vec<Task> = set
                .iter()
                .map(|&(id, r)| Task::sample(id, r, "", ""))
                .collect();
            let names = mailbox_names(&tasks);
            let distinct: std::collections::HashSet<&String> = names.iter().collect();
            assert_eq!(distinct.len(), names.len(), "{set:?} -> {names:?}");
            for n in &names {
                validate_name("name", n).unwrap();
            }
        }
        // Every mix of a few roles that look like each other's made-up names.
        let pool = ["w", "w-1", "w-2", "w-2-2", "w-1-2", "w-3"];
        for mask in 0..(1u32 << 12) {
            let tasks: Vec<Task> = (0..6)
                .filter_map(|i| match (mask >> (2 * i)) & 3 {
                    0 => None,
                    k => Some(Task::sample(
                        i as i64 + k as i64,
                        pool[(i + k as usize) % 6],
                        "",
                        "",
                    )),
                })
                .chain([Task::sample(2, "w", "", ""), Task::sample(1, "w", "", "")])
                .collect();
            let names = mailbox_names(&tasks);
            let distinct: std::collections::HashSet<&String> = names.iter().collect();
            assert_eq!(distinct.len(), names.len(), "{names:?}");
        }
    }

    #[test]
    fn mailbox_line_names_the_database_when_asked() {
        let line = mailbox_line("a", &["b".into()], Some(Path::new("/tmp/my dir/o.db")));
        assert!(
            line.contains("orch-msg --db '/tmp/my dir/o.db' recv --as a"),
            "{line}"
        );
        assert!(!mailbox_line("a", &[], None).contains("--db"));
    }
}
