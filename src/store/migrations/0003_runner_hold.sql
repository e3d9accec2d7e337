-- An operator's disable or drain is a hold that outlives reconnects: a runner that goes offline
-- and comes back, or re-registers, returns to its held state instead of idle.
alter table runners add column hold text check (hold in ('disabled', 'draining'));
