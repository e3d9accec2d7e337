-- Core tables. Times come from the application's clock (passed as parameters), never now(),
-- so recovery and scaling logic can be tested with an injected clock.

create table meta (
  key text primary key,
  value text not null
);
insert into meta (key, value) values ('instance_id', md5(random()::text || clock_timestamp()::text));

create table pools (
  name text primary key,
  config jsonb not null,
  config_hash text not null,
  source text not null default 'api',
  created_at timestamptz not null,
  updated_at timestamptz not null
);

-- Every token is stored only as a SHA-256 hash of its secret.
create table tokens (
  id text primary key,
  kind text not null check (kind in ('admin', 'registration', 'runner')),
  hash text not null unique,
  pool text,
  runner_id uuid,
  description text,
  created_at timestamptz not null,
  expires_at timestamptz,
  revoked_at timestamptz
);

create table runners (
  id uuid primary key,
  pool text not null,
  name text not null,
  state text not null check (state in ('starting', 'idle', 'busy', 'draining', 'offline', 'disabled', 'terminated')),
  state_reason text,
  version text,
  labels jsonb not null default '[]',
  public_key text,
  slots int not null default 1,
  config_hash text,
  provider text,
  provider_ref text,
  ephemeral boolean not null default false,
  jobs_started int not null default 0,
  created_at timestamptz not null,
  registered_at timestamptz,
  last_heartbeat_at timestamptz,
  idle_since timestamptz,
  state_changed_at timestamptz not null,
  terminated_at timestamptz
);
create index runners_live on runners (pool, state) where state <> 'terminated';

create table jobs (
  id bigint generated always as identity primary key,
  pool text not null,
  state text not null check (state in ('queued', 'claimed', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out')),
  commands jsonb not null,
  payload jsonb,
  env jsonb not null default '{}',
  -- encrypted at rest with the server's key; re-encrypted to the claiming runner's public key
  secrets_enc text,
  secret_names jsonb not null default '[]',
  labels jsonb not null default '[]',
  image text,
  source text not null default 'api',
  external_id text,
  idempotency_key text,
  attempt int not null default 0,
  max_attempts int not null default 3,
  retry_on_failure boolean not null default false,
  timeout_ms bigint not null,
  runner_id uuid,
  cancel_requested boolean not null default false,
  exit_code int,
  output jsonb,
  error text,
  log_seq int not null default 0,
  created_at timestamptz not null,
  queued_at timestamptz not null,
  claimed_at timestamptz,
  started_at timestamptz,
  finished_at timestamptz,
  last_activity_at timestamptz
);
create unique index jobs_idempotency on jobs (idempotency_key) where idempotency_key is not null;
-- The claim index holds only queued jobs: finished jobs leave the hot path.
create index jobs_queued on jobs (pool, id) where state = 'queued';
create index jobs_active on jobs (runner_id) where state in ('claimed', 'running');
create index jobs_pool on jobs (pool, id);

-- One row per log batch sent by a runner; seq orders batches, lines keep their own timestamps.
create table job_logs (
  job_id bigint not null,
  seq int not null,
  at timestamptz not null,
  lines jsonb not null,
  primary key (job_id, seq)
);

-- The audit trail: every state transition and operator action, with its reason.
create table events (
  id bigint generated always as identity primary key,
  at timestamptz not null,
  kind text not null,
  subject text not null,
  from_state text,
  to_state text,
  reason text,
  actor text,
  data jsonb
);
create index events_subject on events (kind, subject, id);

create table artifacts (
  digest text primary key,
  name text not null,
  size bigint not null,
  content bytea not null,
  created_at timestamptz not null
);
