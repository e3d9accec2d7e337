import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { RunyardServer } from '../../src/server.js';
import { silentLogger } from '../../src/lib/logger.js';
import type { Clock } from '../../src/lib/clock.js';
import { createPgDatabase, type StoreKind } from './db.js';

export const ADMIN_TOKEN = 'ryd_adm_test-admin-token-0123456789';

export interface TestServer {
  server: RunyardServer;
  url: string;
  token: string;
  dataDir: string;
  /** JSON request with the admin token (or `token`); returns status and parsed body. */
  api: (method: string, path: string, body?: unknown, opts?: { token?: string | null; headers?: Record<string, string>; raw?: string }) => Promise<{ status: number; body: any }>;
  close: () => Promise<void>;
}

/**
 * A real server on a random loopback port, over a fresh store: in-memory PGlite or a new
 * PostgreSQL database. `config` is runyard.yaml content (validated as at start-up).
 */
export async function startTestServer(opts: { store?: StoreKind; config?: Record<string, unknown>; clock?: Clock; loops?: boolean; dbUrl?: string; dataDir?: string } = {}): Promise<TestServer> {
  const store = opts.store ?? 'pglite';
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'runyard-test-'));
  let drop: (() => Promise<void>) | undefined;
  let url = opts.dbUrl;
  if (!url) {
    if (store === 'postgres') ({ url, drop } = await createPgDatabase());
    else url = 'memory://';
  }
  const config = loadConfig({
    env: {},
    overrides: { port: 0, dataDir, adminToken: ADMIN_TOKEN, logLevel: 'silent', secretKey: 'test-secret-key-0123456789', ...opts.config, store: { url } },
  });
  const server = new RunyardServer({ config, clock: opts.clock, log: silentLogger, loops: opts.loops });
  await server.start();
  const api: TestServer['api'] = async (method, path, body, o = {}) => {
    const token = o.token === undefined ? ADMIN_TOKEN : o.token;
    const res = await fetch(server.url + path, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body !== undefined || o.raw !== undefined ? { 'content-type': 'application/json' } : {}),
        ...o.headers,
      },
      body: o.raw ?? (body !== undefined ? JSON.stringify(body) : undefined),
    });
    const text = await res.text();
    let parsed: any = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON (metrics, SSE): keep the text
    }
    return { status: res.status, body: parsed };
  };
  return {
    server,
    url: server.url,
    token: ADMIN_TOKEN,
    dataDir,
    api,
    close: async () => {
      await server.close();
      await drop?.();
      if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Polls `check` until it returns a truthy value, or fails after `timeoutMs` with `what`. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 10_000, intervalMs = 20): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
