import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** One registry per server, so several servers can live in one test process. */
export class Metrics {
  readonly registry = new Registry();
  readonly jobsQueued = new Gauge({ name: 'runyard_jobs', help: 'Jobs not yet finished, by pool and state', labelNames: ['pool', 'state'], registers: [this.registry] });
  readonly jobOutcomes = new Counter({ name: 'runyard_job_outcomes_total', help: 'Finished jobs by pool and final state', labelNames: ['pool', 'state'], registers: [this.registry] });
  readonly jobsSubmitted = new Counter({ name: 'runyard_jobs_submitted_total', help: 'Jobs submitted, by pool and source', labelNames: ['pool', 'source'], registers: [this.registry] });
  readonly claimLatency = new Histogram({
    name: 'runyard_claim_duration_seconds',
    help: 'Time to run one claim statement',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly claims = new Counter({ name: 'runyard_claimed_jobs_total', help: 'Jobs handed to runners', labelNames: ['pool'], registers: [this.registry] });
  readonly waitTime = new Histogram({
    name: 'runyard_job_wait_seconds',
    help: 'Time from queued to claimed',
    labelNames: ['pool'],
    buckets: [0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });
  readonly runTime = new Histogram({
    name: 'runyard_job_run_seconds',
    help: 'Time from started to finished',
    labelNames: ['pool'],
    buckets: [0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600],
    registers: [this.registry],
  });
  readonly runners = new Gauge({ name: 'runyard_runners', help: 'Runners by pool and state', labelNames: ['pool', 'state'], registers: [this.registry] });
  readonly coldStart = new Histogram({
    name: 'runyard_runner_cold_start_seconds',
    help: 'Time from runner launch to registration',
    labelNames: ['pool'],
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly runnerCreate = new Histogram({
    name: 'runyard_runner_create_seconds',
    help: "Time a provider took to start a runner (a container's create and start)",
    labelNames: ['provider'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
    registers: [this.registry],
  });
  readonly imageBuild = new Histogram({
    name: 'runyard_image_build_seconds',
    help: 'Time to build a runner image for a dynamic base image, by outcome (built, failed)',
    labelNames: ['provider', 'outcome'],
    buckets: [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
    registers: [this.registry],
  });
  readonly heartbeats = new Counter({ name: 'runyard_heartbeats_total', help: 'Runner heartbeats received', registers: [this.registry] });
  readonly providerErrors = new Counter({ name: 'runyard_provider_errors_total', help: 'Provider operations that failed', labelNames: ['provider', 'op'], registers: [this.registry] });
  readonly controlChannels = new Gauge({ name: 'runyard_control_channels', help: 'Open runner control channels', registers: [this.registry] });
  readonly httpLatency = new Histogram({
    name: 'runyard_http_request_duration_seconds',
    help: 'HTTP request latency by route and status',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [this.registry],
  });

  constructor() {
    // prom-client's names already start with process_ / nodejs_: runyard_process_cpu_user_seconds_total
    collectDefaultMetrics({ register: this.registry, prefix: 'runyard_' });
  }
}
