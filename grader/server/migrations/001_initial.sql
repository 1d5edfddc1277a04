-- learn serve, schema 1. Portable SQL: SQLite and PostgreSQL run this file as written
-- (ids are assigned by db.py from a counters table, so no SERIAL or AUTOINCREMENT is needed).
CREATE TABLE users (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    display TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL,
    password_hash TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    purpose TEXT NOT NULL,
    expires_at DOUBLE PRECISION,
    used_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE assignments (
    id BIGINT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    pack TEXT NOT NULL,
    seed BIGINT NOT NULL,
    due_at DOUBLE PRECISION,
    late_percent_per_day DOUBLE PRECISION NOT NULL DEFAULT 0,
    late_cap_percent DOUBLE PRECISION NOT NULL DEFAULT 100,
    max_submissions INTEGER,
    published INTEGER NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE submissions (
    id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    assignment_id BIGINT NOT NULL REFERENCES assignments(id),
    created_at DOUBLE PRECISION NOT NULL,
    files TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    notes TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL,
    status TEXT,
    points DOUBLE PRECISION,
    max_points DOUBLE PRECISION,
    result_json TEXT,
    error TEXT,
    graded_at DOUBLE PRECISION,
    grade_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX submissions_by_student ON submissions(assignment_id, user_id);
CREATE TABLE jobs (
    id BIGINT PRIMARY KEY,
    submission_id BIGINT NOT NULL REFERENCES submissions(id),
    state TEXT NOT NULL,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION
);
CREATE INDEX jobs_by_state ON jobs(state, id);
CREATE TABLE overrides (
    id BIGINT PRIMARY KEY,
    submission_id BIGINT NOT NULL REFERENCES submissions(id),
    points DOUBLE PRECISION NOT NULL,
    reason TEXT NOT NULL,
    by_user BIGINT NOT NULL REFERENCES users(id),
    at DOUBLE PRECISION NOT NULL
);
CREATE TABLE extensions (
    id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    assignment_id BIGINT NOT NULL REFERENCES assignments(id),
    due_at DOUBLE PRECISION NOT NULL,
    by_user BIGINT NOT NULL REFERENCES users(id),
    at DOUBLE PRECISION NOT NULL
);
CREATE TABLE audit (
    id BIGINT PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    actor BIGINT,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE manual_items (
    id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    assignment_id BIGINT NOT NULL REFERENCES assignments(id),
    item TEXT NOT NULL,
    answer TEXT NOT NULL DEFAULT '',
    max_points DOUBLE PRECISION NOT NULL,
    points DOUBLE PRECISION,
    comment TEXT NOT NULL DEFAULT '',
    graded_by BIGINT,
    graded_at DOUBLE PRECISION
);
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
-- every table's counter exists from the start, so two first inserts never race to create one
INSERT INTO counters (name, value) VALUES ('users', 0), ('assignments', 0), ('submissions', 0), ('jobs', 0), ('overrides', 0),
    ('extensions', 0), ('audit', 0), ('manual_items', 0);
