-- Launch tokens (registration tokens bound to one runner id) are single-use: the first
-- successful registration spends them in its own transaction. A spent one is honoured again
-- only as a retry by the same runner with the same key (its 201 was lost).
alter table tokens add column used_at timestamptz;
