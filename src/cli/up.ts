import type { Command } from 'commander';
import { CliError } from './client.js';

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
      const { RunyardServer } = await import('../server.js');
      const server = new RunyardServer({ config });
      try {
        await server.start();
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (e.code === 'EADDRINUSE') throw new CliError(`error: port ${config.port} is already in use; pick another with --port`, 1);
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
