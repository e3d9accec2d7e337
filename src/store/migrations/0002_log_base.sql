-- Each attempt's runner numbers its log batches from 1. The seq a batch is stored under is
-- offset by the highest seq stored before the attempt was claimed, so a retried job's new
-- logs neither collide with the earlier attempt's (and get dropped as duplicates) nor sort
-- before them for a reader following with ?after=.
alter table jobs add column log_base int not null default 0;
