-- learn serve, schema 3: a real class.
-- Server-side sessions (the cookie holds a random id; signing out, a password change or
-- deactivation deletes the rows, so a saved cookie stops working at once).
CREATE TABLE sessions (
    hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    created_at DOUBLE PRECISION NOT NULL,
    seen_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX sessions_by_user ON sessions(user_id);
-- deactivated accounts cannot sign in; their submissions and grades stay
ALTER TABLE users ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
-- CLI tokens: several per person, named, listed and revocable
ALTER TABLE tokens ADD COLUMN label TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN last_used_at DOUBLE PRECISION;
CREATE INDEX tokens_by_user ON tokens(user_id, purpose);
-- an override belongs to the student and the assignment until staff clear it
ALTER TABLE overrides ADD COLUMN user_id BIGINT;
ALTER TABLE overrides ADD COLUMN assignment_id BIGINT;
ALTER TABLE overrides ADD COLUMN cleared_at DOUBLE PRECISION;
ALTER TABLE overrides ADD COLUMN cleared_by BIGINT;
UPDATE overrides SET user_id = (SELECT s.user_id FROM submissions s WHERE s.id = overrides.submission_id),
    assignment_id = (SELECT s.assignment_id FROM submissions s WHERE s.id = overrides.submission_id);
CREATE INDEX overrides_by_student ON overrides(assignment_id, user_id);
-- extra credit (override points over the maximum) only when the instructor allows it; a
-- per-assignment time budget per submission (NULL: the notebooks' own limits added up)
ALTER TABLE assignments ADD COLUMN extra_credit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE assignments ADD COLUMN time_budget_s DOUBLE PRECISION;
-- bytes kept on disk per submission (the per-student quota)
ALTER TABLE submissions ADD COLUMN bytes BIGINT NOT NULL DEFAULT 0;
-- the fair queue: round-robin over students without a join
ALTER TABLE jobs ADD COLUMN user_id BIGINT;
UPDATE jobs SET user_id = (SELECT s.user_id FROM submissions s WHERE s.id = jobs.submission_id);
-- feedback reports, rendered once per graded submission ('full'; 'student' without hidden checks)
CREATE TABLE reports (
    submission_id BIGINT NOT NULL REFERENCES submissions(id),
    variant TEXT NOT NULL,
    html TEXT NOT NULL,
    grade_count INTEGER NOT NULL,
    PRIMARY KEY (submission_id, variant)
)
