-- Why a pool's queued jobs wait (its provider is missing on this server, the engine is down,
-- the image is missing): set by the scheduler when a runner cannot be started, cleared when one
-- starts. Shown on the waiting jobs (API, CLI, dashboard), not only in the events. Per pool, so
-- neither submit nor claim writes it.
alter table pools add column waiting_reason text;
