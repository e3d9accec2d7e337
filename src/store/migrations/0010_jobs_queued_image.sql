-- Queued jobs that asked for a dynamic image, by pool and image: the scheduler counts them on
-- every pass (exactly), while it counts a pool's own-image queue only as far as its decision
-- needs (see src/store/queries/scheduling.ts), so a queue of 100,000 is not scanned every pass.
create index jobs_queued_image on jobs (pool, image) where state = 'queued' and image is not null;
