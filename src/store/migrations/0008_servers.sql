-- Control planes sharing this database, each with the URL runners reach it at and a heartbeat:
-- runners learn every live server from it and fail over when theirs stops answering.
create table servers (
  id uuid primary key,
  url text not null,
  pid int,
  started_at timestamptz not null,
  heartbeat_at timestamptz not null
);
create index servers_heartbeat on servers (heartbeat_at);
