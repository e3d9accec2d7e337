import { createServer } from 'node:net';

/**
 * Whether host:port can be bound now. `up` asks before it creates a store or an admin token, so a
 * taken port changes nothing. (A port taken in the moment between stays a start-up error.)
 */
export function portIsFree(host: string, port: number): Promise<boolean | NodeJS.ErrnoException> {
  if (port === 0) return Promise.resolve(true);
  return new Promise((ok) => {
    const s = createServer();
    s.once('error', (err: NodeJS.ErrnoException) => ok(err.code === 'EADDRINUSE' ? false : err));
    s.listen({ host, port, exclusive: true }, () => s.close(() => ok(true)));
  });
}
