/*
 * The dashboard's static files: `/` (index.html) and `/assets/*`. No auth here: the page holds
 * no data; every API call it makes carries the admin token the user typed in, kept in the
 * browser's sessionStorage. The files are plain ES modules and CSS shipped in the package
 * (`dist/web/assets`), so `npx runyard up` serves them without a build on the user's machine.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Hono, type Context } from 'hono';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

/** The page runs only its own scripts and styles and talks only to this server. */
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

interface Asset {
  body: Uint8Array;
  type: string;
  etag: string;
}

/** Reads every file under `dir` once: only those paths are ever served (no traversal). */
export function loadAssets(dir: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  if (!existsSync(dir)) return assets;
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const full = join(d, name);
      if (statSync(full).isDirectory()) walk(full);
      else {
        const type = TYPES[extname(name)];
        if (!type) continue;
        const body = readFileSync(full);
        const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
        assets.set(relative(dir, full).split(sep).join('/'), { body, type, etag });
      }
    }
  };
  walk(dir);
  return assets;
}

export function webRouter(opts: { assetsDir?: string } = {}) {
  const dir = opts.assetsDir ?? fileURLToPath(new URL('./assets/', import.meta.url));
  const assets = loadAssets(dir);
  const app = new Hono();

  // Files are not fingerprinted: browsers revalidate each time (a 304 when unchanged).
  const send = (c: Context, asset: Asset | undefined) => {
    if (!asset) return c.json({ error: { code: 'not_found', message: `no dashboard file ${c.req.path}` } }, 404);
    const headers = { ...SECURITY_HEADERS, 'cache-control': 'no-cache', etag: asset.etag };
    if (c.req.header('if-none-match') === asset.etag) return c.body(null, 304, headers);
    return c.body(asset.body as Uint8Array<ArrayBuffer>, 200, { ...headers, 'content-type': asset.type });
  };

  app.get('/', (c) => {
    const index = assets.get('index.html');
    if (!index) return c.text(`The dashboard's files are missing from ${dir}: run \`npm run build\`.\n`, 503);
    return send(c, index);
  });
  app.get('/favicon.ico', (c) => c.redirect('assets/favicon.svg', 301));
  app.get('/assets/*', (c) => {
    let path: string;
    try {
      path = decodeURIComponent(c.req.path.slice('/assets/'.length));
    } catch {
      path = '';
    }
    return send(c, assets.get(path));
  });
  return app;
}
