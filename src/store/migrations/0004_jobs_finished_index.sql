-- The overview's "jobs per minute over the last hour" reads finished jobs by time.
create index jobs_finished on jobs (finished_at) where finished_at is not null;
