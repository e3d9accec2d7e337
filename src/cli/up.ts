import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { dirname, resolve } from 'node:path';
import { CliError } from './client.js';
import { portIsFree } from '../lib/port-check.js';

/** The port is taken: say by whom when it is the runyard of this data dir. */
function portError(config: { host: string; port: number; dataDir: string }, other?: Error): CliError {
  if (other) return new CliError(`error: cannot listen on ${config.host}:${config.port}: ${other.message}`, 1);
  let holder = '';
  try {
    const s = JSON.parse(readFileSync(resolve(config.dataDir, 'server.json'), 'utf8'));
    if (new URL(s.url).port === String(config.port) && isRunning(s.pid)) holder = ` by runyard (pid ${s.pid}, ${s.url})`;
  } catch {
    // no server.json here: some other program
  }
  return new CliError(`error: port ${config.port} on ${config.host} is already in use${holder}; pick another with --port (nothing was created)`, 1);
}

function isRunning(pid: unknown): boolean {
  if (typeof pid !== 'number') return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function registerUp(program: Command) {
  program
    .command('up')
    .description('start the control plane (embedded store in ./.runyard unless RUNYARD_DATABASE_URL is set)')
    .option('-c, --config <file>', 'runyard.yaml to read')
    .option('-p, --port <port>', 'port to listen on (default 8080)')
    .option('--host <host>', 'address to bind (default 127.0.0.1; 0.0.0.0 to accept remote agents)')
    .option('--data-dir <dir>', 'where the embedded store, admin token and runner dirs live (default .runyard)')
    .action(async (opts) => {
      let port: number | undefined;
      if (opts.port !== undefined) {
        port = Number(opts.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CliError(`error: --port must be a port number, got ${JSON.stringify(opts.port)}`, 2);
      }
      // Loaded lazily, like the server below: client commands must not pay for zod and yaml.
      const { loadConfig, ConfigError } = await import('../config/load.js');
      let config;
      try {
        config = loadConfig({ file: opts.config, overrides: { port, host: opts.host, dataDir: opts.dataDir } });
      } catch (err) {
        if (err instanceof ConfigError) throw new CliError(err.message + '\nfix the listed fields and start again', 2);
        throw err;
      }
      // Before anything is created: a taken port must not leave a fresh store and token behind.
      const free = await portIsFree(config.host, config.port);
      if (free !== true) throw portError(config, free === false ? undefined : free);
      const { RunyardServer } = await import('../server.js');
      const { DataDirInUseError } = await import('../store/store-lock.js');
      const { UnprocessableError } = await import('../lib/errors.js');
      const server = new RunyardServer({ config, configDir: opts.config ? dirname(resolve(opts.config)) : undefined });
      try {
        await server.start();
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (e.code === 'EADDRINUSE') throw portError(config);
        if (err instanceof DataDirInUseError) throw new CliError(`error: ${err.message}`, 1);
        // a config pool naming what cannot be (a distribution that is nowhere): like a bad field
        if (err instanceof UnprocessableError) throw new CliError(`error: ${err.message}${err.field ? ` (field: ${err.field})` : ''}\nfix it and start again`, 2);
        throw err;
      }
      process.stdout.write(`runyard is up at ${server.url} (store: ${server.db.kind}, pools: ${config.pools.map((p) => p.name).join(', ')})\n`);
      let stopping = false;
      const stop = async () => {
        if (stopping) process.exit(1);
        stopping = true;
        process.stdout.write('runyard: shutting down\n');
        await server.close();
        process.exit(0);
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
}
