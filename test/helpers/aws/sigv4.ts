/*
 * AWS Signature Version 4, checked the way AWS checks it, for the loopback fakes of ECS and EC2:
 * rebuild the canonical request from what arrived, sign it with the known test key, compare.
 * Written from the published algorithm rather than with the SDK's own signer, so the SDK and the
 * AWS CLI (botocore) are each checked against an independent implementation.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

export const TEST_CREDENTIALS = { accessKeyId: 'AKIDRUNYARDTEST0001', secretAccessKey: 'runyard-test-secret-key-0000000000000000' };

export interface SignedRequest {
  method: string;
  /** Path and query as received, e.g. `/` or `/?Action=…`. */
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export type SigV4Result = { ok: true; region: string; service: string; accessKeyId: string } | { ok: false; code: string; message: string };

const sha256 = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');
const hmac = (key: string | Buffer, s: string) => createHmac('sha256', key).update(s).digest();
// RFC 3986 unreserved characters stay; everything else is %XX (upper case), as SigV4 requires.
const encode = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

function canonicalQuery(search: URLSearchParams): string {
  return [...search.entries()]
    .map(([k, v]) => [encode(k), encode(v)] as const)
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

const header = (h: IncomingHttpHeaders, name: string) => {
  const v = h[name];
  return Array.isArray(v) ? v.join(',') : v;
};

/**
 * Verifies the request's `Authorization: AWS4-HMAC-SHA256 …` header against `credentials`.
 * Errors use the codes AWS answers with (`MissingAuthenticationToken`, `UnrecognizedClientException`,
 * `SignatureDoesNotMatch`, `InvalidSignatureException`).
 */
export function verifySigV4(req: SignedRequest, credentials = TEST_CREDENTIALS, opts: { mismatchCode?: string; now?: number } = {}): SigV4Result {
  const mismatch = opts.mismatchCode ?? 'SignatureDoesNotMatch';
  const auth = header(req.headers, 'authorization');
  if (!auth) return { ok: false, code: 'MissingAuthenticationToken', message: 'Request is missing Authentication Token' };
  const m = /^AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$/.exec(auth.trim());
  if (!m) return { ok: false, code: 'IncompleteSignature', message: `Authorization header is not a SigV4 signature: ${auth.slice(0, 60)}` };
  const [, credential, signedHeaders, signature] = m as unknown as [string, string, string, string];
  const [accessKeyId, date, region, service, terminator] = credential.split('/');
  if (!accessKeyId || !date || !region || !service || terminator !== 'aws4_request')
    return { ok: false, code: 'IncompleteSignature', message: `malformed credential scope ${credential}` };
  if (accessKeyId !== credentials.accessKeyId) return { ok: false, code: 'UnrecognizedClientException', message: 'The security token included in the request is invalid.' };
  const amzDate = header(req.headers, 'x-amz-date');
  if (!amzDate || !amzDate.startsWith(date)) return { ok: false, code: 'IncompleteSignature', message: 'X-Amz-Date is missing or does not match the credential scope' };
  const signedAt = Date.UTC(+amzDate.slice(0, 4), +amzDate.slice(4, 6) - 1, +amzDate.slice(6, 8), +amzDate.slice(9, 11), +amzDate.slice(11, 13), +amzDate.slice(13, 15));
  if (Math.abs((opts.now ?? Date.now()) - signedAt) > 15 * 60_000) return { ok: false, code: mismatch, message: 'Signature expired: the request time is more than 15 minutes away' };

  const url = new URL(req.url, 'http://fake');
  const names = signedHeaders.split(';');
  if (!names.includes('host')) return { ok: false, code: mismatch, message: 'host must be a signed header' };
  const canonicalHeaders = names.map((n) => `${n}:${(header(req.headers, n) ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  // A declared payload hash must be the body's (AWS checks it), unless the payload is unsigned.
  const bodyHash = sha256(req.body);
  const declared = header(req.headers, 'x-amz-content-sha256');
  if (declared && declared !== 'UNSIGNED-PAYLOAD' && declared !== bodyHash)
    return { ok: false, code: mismatch, message: 'The provided x-amz-content-sha256 header does not match what was computed.' };
  const payloadHash = declared ?? bodyHash;
  const path = url.pathname.split('/').map((s) => encode(decodeURIComponent(s))).join('/') || '/';
  const canonicalRequest = [req.method.toUpperCase(), path, canonicalQuery(url.searchParams), canonicalHeaders, signedHeaders, payloadHash].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonicalRequest)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${credentials.secretAccessKey}`, date), region), service), 'aws4_request');
  const expected = createHmac('sha256', key).update(stringToSign).digest();
  if (!timingSafeEqual(expected, Buffer.from(signature, 'hex')))
    return { ok: false, code: mismatch, message: 'The request signature we calculated does not match the signature you provided.' };
  return { ok: true, region, service, accessKeyId };
}
