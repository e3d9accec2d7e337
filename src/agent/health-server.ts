/**
 * Kubernetes-style probes on the agent's own port: GET /livez (the process is up) and GET /readyz
 * (registered and the control channel connected; 503 otherwise).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export class HealthServer {
  private server: Server | undefined;

  constructor(private readonly ready: () => { ready: boolean; detail: Record<string, unknown> }) {}

  async listen(port: number, host: string): Promise<number> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, { status: 'method not allowed' });
      if (path === '/livez') return reply(res, 200, { status: 'ok' });
      if (path === '/readyz') {
        const r = this.ready();
        return reply(res, r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not ready', ...r.detail });
      }
      reply(res, 404, { status: 'not found' });
    });
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(port, host, () => ok());
    });
    this.server = server;
    return (server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = undefined;
    await new Promise<void>((ok) => {
      s.close(() => ok());
      s.closeAllConnections();
    });
  }
}

function reply(res: import('node:http').ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body) + '\n');
}
