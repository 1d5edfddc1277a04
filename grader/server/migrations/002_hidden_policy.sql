-- learn serve, schema 2: when students see hidden checks (and the points they carry):
-- 'after_due' (default; at once when there is no due date), 'always' or 'never'.
ALTER TABLE assignments ADD COLUMN hidden_policy TEXT NOT NULL DEFAULT 'after_due'
