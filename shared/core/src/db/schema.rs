//! The schema: append-only migrations under `PRAGMA user_version`.
//!
//! Never edit a migration that has shipped; add a new one at the end.

/// `PRAGMA application_id` of every orch database: "orch" in ASCII.
pub const APPLICATION_ID: i64 = 0x6f72_6368;

/// Migration `i` moves the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: tasks, batches, the mailbox, verification runs, agent calls seen by hooks.
    r#"
    CREATE TABLE batches (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at    INTEGER NOT NULL,
        emitted_at    INTEGER,
        run_claimed_at INTEGER,
        runner_pid    INTEGER
    );
    CREATE TABLE tasks (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        role        TEXT    NOT NULL,
        description TEXT    NOT NULL,
        prompt      TEXT    NOT NULL,
        priority    INTEGER NOT NULL DEFAULT 0,
        status      TEXT    NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued','batched','running','done','failed','cancelled')),
        batch_id    INTEGER REFERENCES batches(id),
        created_at  INTEGER NOT NULL,
        batched_at  INTEGER,
        started_at  INTEGER,
        finished_at INTEGER,
        result      TEXT,
        error       TEXT,
        exit_code   INTEGER,
        log         TEXT
    );
    CREATE INDEX tasks_by_status ON tasks(status, priority DESC, id);
    CREATE INDEX tasks_by_batch ON tasks(batch_id);
    CREATE TABLE task_deps (
        task_id  INTEGER NOT NULL REFERENCES tasks(id),
        after_id INTEGER NOT NULL REFERENCES tasks(id),
        PRIMARY KEY (task_id, after_id)
    ) WITHOUT ROWID;
    CREATE INDEX task_deps_by_after ON task_deps(after_id);

    CREATE TABLE messages (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        sender     TEXT    NOT NULL,
        recipient  TEXT    NOT NULL,
        kind       TEXT,
        body       TEXT    NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX messages_by_recipient ON messages(recipient, id);
    CREATE TABLE deliveries (
        message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        reader     TEXT    NOT NULL,
        read_at    INTEGER NOT NULL,
        PRIMARY KEY (message_id, reader)
    ) WITHOUT ROWID;

    CREATE TABLE verify_runs (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        n          INTEGER NOT NULL,
        sleep_ms   INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        label      TEXT
    );
    CREATE TABLE verify_probes (
        run_id      INTEGER NOT NULL REFERENCES verify_runs(id),
        idx         INTEGER NOT NULL,
        started_at  INTEGER,
        finished_at INTEGER,
        pid         INTEGER,
        PRIMARY KEY (run_id, idx)
    ) WITHOUT ROWID;

    CREATE TABLE agent_calls (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id  TEXT    NOT NULL,
        call_id     TEXT    NOT NULL,
        source      TEXT    NOT NULL,
        task_id     INTEGER,
        agent_type  TEXT,
        description TEXT,
        started_at  INTEGER,
        finished_at INTEGER,
        status      TEXT,
        UNIQUE (session_id, call_id)
    );
    CREATE INDEX agent_calls_by_start ON agent_calls(started_at);
    "#,
    // 2: what `claude -p --output-format json` reported about a task's run
    // (session id, cost, usage, errors), as a JSON object of the fields it had.
    r#"
    ALTER TABLE tasks ADD COLUMN claude TEXT;
    "#,
    // 3: every run of a task is an attempt; a failed one may be retried no
    // earlier than `not_before`; database-wide settings (the pause, the limit).
    r#"
    CREATE TABLE attempts (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id       INTEGER NOT NULL REFERENCES tasks(id),
        n             INTEGER NOT NULL,
        batch_id      INTEGER,
        runner        TEXT    NOT NULL CHECK (runner IN ('orch-run','hook','mcp','manual')),
        started_at    INTEGER NOT NULL,
        ended_at      INTEGER,
        outcome       TEXT    CHECK (outcome IN ('done','failed')),
        error_class   TEXT,
        error         TEXT,
        exit_code     INTEGER,
        retry_at      INTEGER,
        cost_usd      REAL,
        input_tokens  INTEGER,
        output_tokens INTEGER,
        cache_read_tokens     INTEGER,
        cache_creation_tokens INTEGER,
        turns         INTEGER,
        model         TEXT,
        session_id    TEXT,
        duration_ms   INTEGER,
        UNIQUE (task_id, n)
    );
    CREATE INDEX attempts_by_batch ON attempts(batch_id);
    ALTER TABLE tasks ADD COLUMN not_before INTEGER;
    -- The batcher reads not_before from the index: tasks waiting for a retry
    -- cost it no table lookups.
    DROP INDEX tasks_by_status;
    CREATE INDEX tasks_by_status ON tasks(status, priority DESC, id, not_before);
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    ALTER TABLE batches ADD COLUMN lease_holder TEXT;
    ALTER TABLE batches ADD COLUMN lease_until INTEGER;
    CREATE TABLE slots (
        holder     TEXT    NOT NULL,
        key        TEXT    NOT NULL,
        taken_at   INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (holder, key)
    ) WITHOUT ROWID;
    "#,
    // 4: batches sent out as bundles (a lease that expires), and the result
    // records ingested from them, one per task; an ingested record is an
    // attempt of runner `job` (SQLite cannot widen a CHECK: the table is
    // rebuilt, its rows and ids kept).
    r#"
    CREATE TABLE attempts_new (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id       INTEGER NOT NULL REFERENCES tasks(id),
        n             INTEGER NOT NULL,
        batch_id      INTEGER,
        runner        TEXT    NOT NULL CHECK (runner IN ('orch-run','hook','mcp','manual','job')),
        started_at    INTEGER NOT NULL,
        ended_at      INTEGER,
        outcome       TEXT    CHECK (outcome IN ('done','failed')),
        error_class   TEXT,
        error         TEXT,
        exit_code     INTEGER,
        retry_at      INTEGER,
        cost_usd      REAL,
        input_tokens  INTEGER,
        output_tokens INTEGER,
        cache_read_tokens     INTEGER,
        cache_creation_tokens INTEGER,
        turns         INTEGER,
        model         TEXT,
        session_id    TEXT,
        duration_ms   INTEGER,
        UNIQUE (task_id, n)
    );
    INSERT INTO attempts_new SELECT * FROM attempts;
    DROP TABLE attempts;
    ALTER TABLE attempts_new RENAME TO attempts;
    CREATE INDEX attempts_by_batch ON attempts(batch_id);
    CREATE TABLE dispatches (
        batch_id      INTEGER PRIMARY KEY REFERENCES batches(id),
        token         TEXT    NOT NULL,
        base          TEXT,
        dispatched_at INTEGER NOT NULL,
        expires_at    INTEGER NOT NULL
    );
    CREATE TABLE job_results (
        task_id     INTEGER PRIMARY KEY REFERENCES tasks(id),
        batch_id    INTEGER NOT NULL,
        record      TEXT    NOT NULL,
        branch      TEXT,
        ingested_at INTEGER NOT NULL
    );
    "#,
    // 5: work that lands. Status gains `landed` (after `done`; widening a
    // CHECK in place is safe, SQLite's own documented procedure); a task keeps
    // its Agent options, the paths it expects to touch, and its git worktree,
    // branch, base and head commits, the merge that landed it or the conflict
    // that stopped it.
    r#"
    PRAGMA writable_schema = ON;
    UPDATE sqlite_schema
       SET sql = replace(sql, '''failed'',''cancelled'')', '''failed'',''cancelled'',''landed'')')
     WHERE type = 'table' AND name = 'tasks';
    PRAGMA writable_schema = RESET;
    ALTER TABLE tasks ADD COLUMN model TEXT;
    ALTER TABLE tasks ADD COLUMN isolation TEXT;
    ALTER TABLE tasks ADD COLUMN background INTEGER;
    ALTER TABLE tasks ADD COLUMN agent_name TEXT;
    ALTER TABLE tasks ADD COLUMN mode TEXT;
    ALTER TABLE tasks ADD COLUMN touches TEXT;
    ALTER TABLE tasks ADD COLUMN worktree TEXT;
    ALTER TABLE tasks ADD COLUMN branch TEXT;
    ALTER TABLE tasks ADD COLUMN base_commit TEXT;
    ALTER TABLE tasks ADD COLUMN head_commit TEXT;
    ALTER TABLE tasks ADD COLUMN landed_commit TEXT;
    ALTER TABLE tasks ADD COLUMN landed_at INTEGER;
    ALTER TABLE tasks ADD COLUMN conflict TEXT;
    "#,
    // 6: the event journal (`event.rs`): one row per state change, written in
    // the transaction of the change; ids in commit order, never reused.
    r#"
    CREATE TABLE events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        at          INTEGER NOT NULL,
        kind        TEXT    NOT NULL,
        task_id     INTEGER,
        batch_id    INTEGER,
        message_id  INTEGER,
        run_id      INTEGER,
        from_status TEXT,
        to_status   TEXT,
        detail      TEXT
    );
    CREATE INDEX events_by_task ON events(task_id, id) WHERE task_id IS NOT NULL;
    CREATE INDEX events_by_at ON events(at);

    -- What each agent of orch-run printed, a line per row (`tasklog.rs`).
    CREATE TABLE task_logs (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id INTEGER NOT NULL,
        at      INTEGER NOT NULL,
        stream  TEXT    NOT NULL CHECK (stream IN ('out','err','mark')),
        line    TEXT    NOT NULL
    );
    CREATE INDEX task_logs_by_task ON task_logs(task_id, id);
    "#,
    // 7: the total tokens an in-session agent reported (the Agent tool's
    // `totalTokens`), which front end made a batch (`mcp` for orch-mcp's
    // execute_parallel_batch: its tasks' attempts are the MCP runner's), and
    // the open agent calls by start (stale ones are reconciled as lost).
    r#"
    ALTER TABLE attempts ADD COLUMN total_tokens INTEGER;
    ALTER TABLE batches ADD COLUMN made_by TEXT;
    -- Every batching looks for hook-tracked agents whose end never came:
    -- only the open calls, never the whole history.
    CREATE INDEX agent_calls_open ON agent_calls(started_at) WHERE finished_at IS NULL;
    "#,
];

/// The tables of the current schema: every open checks they are there.
pub const TABLES: &[&str] = &[
    "agent_calls",
    "attempts",
    "batches",
    "deliveries",
    "dispatches",
    "events",
    "job_results",
    "messages",
    "settings",
    "slots",
    "task_deps",
    "task_logs",
    "tasks",
    "verify_probes",
    "verify_runs",
];

/// The schema version this build writes and understands.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}
