-- One row per task. Times are UTC microseconds since the Unix epoch so they
-- sort and compare as integers; `task_context` is a JSON object with the
-- keys `parameters`, `progress`, `summary` and `error`.
CREATE TABLE ace_tasks (
    task_id       TEXT    PRIMARY KEY NOT NULL,
    task_type     TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN
                      ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    cluster       TEXT    NOT NULL,
    schema_name   TEXT,
    table_name    TEXT,
    repset        TEXT,
    submitted_by  TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    time_taken_us INTEGER,
    report_path   TEXT,
    task_context  TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(task_context))
);

CREATE INDEX ace_tasks_owner_created ON ace_tasks (submitted_by, created_at);
CREATE INDEX ace_tasks_status_created ON ace_tasks (status, created_at);
CREATE INDEX ace_tasks_created ON ace_tasks (created_at);
