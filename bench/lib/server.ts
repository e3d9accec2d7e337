/*
 * A real runyard server in this process (the section's), over a fresh PostgreSQL database or a
 * file-backed PGlite store (what `runyard up` uses by default), with the process provider.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { RunyardServer } from '../../src/server.js';
import { createLogger, silentLogger } from '../../src/lib/logger.js';
import { createBenchDatabase } from './pg.js';
import { HttpClient } from './http.js';

export const ADMIN_TOKEN = 'ryd_adm_bench-admin-token-0123456789';

export interface BenchServer {
  server: RunyardServer;
  url: string;
  token: string;
  dataDir: string;
  store: 'postgres' | 'pglite';
  /** the PostgreSQL URL (postgres store only) */
  dbUrl: string | null;
  dbName: string | null;
  http: HttpClient;
  close: () => Promise<void>;
}

export async function startBenchServer(opts: { store?: 'postgres' | 'pglite'; config?: Record<string, unknown>; tag?: string; serverLog?: boolean } = {}): Promise<BenchServer> {
  const store = opts.store ?? 'postgres';
  const dataDir = mkdtempSync(join(tmpdir(), 'runyard-bench-'));
  let db: { url: string; name: string; drop: () => Promise<void> } | undefined;
  let url: string | undefined;
  if (store === 'postgres') {
    db = await createBenchDatabase(opts.tag);
    url = db.url;
  }
  const config = loadConfig({
    env: {},
    overrides: { port: 0, dataDir, adminToken: ADMIN_TOKEN, logLevel: 'info', secretKey: 'bench-secret-key-0123456789', ...opts.config, ...(url ? { store: { url } } : {}) },
  });
  // The server logs at info, as `runyard up` does, to a file (not the bench's terminal).
  const log = opts.serverLog === false ? silentLogger : createLogger({ level: 'info', destination: join(dataDir, 'server.log') });
  const server = new RunyardServer({ config, log, announce: () => {} });
  await server.start();
  const http = new HttpClient(server.url, ADMIN_TOKEN);
  return {
    server,
    url: server.url,
    token: ADMIN_TOKEN,
    dataDir,
    store,
    dbUrl: url ?? null,
    dbName: db?.name ?? null,
    http,
    close: async () => {
      http.close();
      await server.close();
      await db?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
