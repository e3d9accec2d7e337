import { createHmac, timingSafeEqual } from 'node:crypto';

/** Checks `X-Hub-Signature-256: sha256=<hex>` against the body, in constant time. */
export function verifySignature(secret: string, body: Uint8Array, header: string | undefined | null): boolean {
  if (!header) return false;
  const m = /^sha256=([0-9a-fA-F]{64})$/.exec(header.trim());
  if (!m) return false;
  const expected = createHmac('sha256', secret).update(body).digest();
  const given = Buffer.from(m[1]!, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export function sign(secret: string, body: string | Uint8Array): string {
  return 'sha256=' + createHmac('sha256', secret).update(body).digest('hex');
}
