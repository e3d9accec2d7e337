/*
 * moto's AWS emulator (`moto_server`, pip-installed on these machines) on a free loopback port, for
 * differential runs: the same call sequence against a runyard fake and against moto, comparing
 * response shapes and error types. When moto_server is missing, startMoto() throws saying so.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { waitFor } from '../server.js';

export interface Moto {
  url: string;
  /** moto's own control API, e.g. `POST /moto-api/state-manager/set-transition`. */
  control(path: string, body?: unknown): Promise<unknown>;
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  const { port } = s.address() as { port: number };
  await new Promise<void>((ok) => s.close(() => ok()));
  return port;
}

export async function startMoto(): Promise<Moto> {
  if (spawnSync('sh', ['-c', 'command -v moto_server'], { encoding: 'utf8' }).status !== 0)
    throw new Error('moto_server is not installed: the differential AWS tests need it (pip install "moto[server]")');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-4000)));
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
  await waitFor(`moto_server on ${url}\n${stderr}`, async () => {
    if (child.exitCode !== null) throw new Error(`moto_server exited (${child.exitCode}): ${stderr}`);
    return (await fetch(`${url}/moto-api/`).catch(() => undefined))?.ok;
  }, 30_000);
  return {
    url,
    async control(path, body) {
      const res = await fetch(url + path, { method: body === undefined ? 'GET' : 'POST', body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await res.text();
      if (!res.ok) throw new Error(`moto ${path}: ${res.status} ${text.slice(0, 300)}`);
      return text ? JSON.parse(text) : undefined;
    },
    async close() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
