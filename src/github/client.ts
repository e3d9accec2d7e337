import { createSign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from '../lib/logger.js';
import type { GithubSettings } from './settings.js';

/** A GitHub API call that failed; `status` 0 means GitHub could not be reached. */
export class GithubApiError extends Error {
  constructor(message: string, readonly status: number, readonly rateLimited = false) {
    super(message);
    this.name = 'GithubApiError';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MAX_TRIES = 4;

/**
 * GitHub REST client: GitHub App (JWT RS256 -> installation token, cached until shortly before
 * it expires) or a personal access token; honours rate limits (x-ratelimit-remaining/-reset,
 * retry-after, secondary limits on 403/429) by waiting up to `maxRateLimitWait`, and retries
 * 5xx and network errors with backoff.
 */
export class GithubClient {
  private tokens = new Map<string, { token: string; expiresAt: number }>();
  private repoInstallations = new Map<string, number>();
  /** No call before this time (epoch ms): a rate limit is in force. */
  blockedUntil = 0;

  constructor(private settings: () => GithubSettings, private log: Logger, private now: () => number = Date.now) {}

  /** Drops cached installation tokens (the next call mints a new one). */
  forgetTokens(): void {
    this.tokens.clear();
  }

  get usesApp(): boolean {
    const s = this.settings();
    return !!(s.appId && s.privateKeyPath);
  }

  /** The app's JWT (RS256, 9 minutes, iat backdated 60 s for clock drift). */
  appJwt(): string {
    const s = this.settings();
    const key = readFileSync(s.privateKeyPath!, 'utf8');
    const iat = Math.floor(this.now() / 1000) - 60;
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const data = `${b64({ alg: 'RS256', typ: 'JWT' })}.${b64({ iat, exp: iat + 600, iss: s.appId })}`;
    const sig = createSign('RSA-SHA256').update(data).sign(key).toString('base64url');
    return `${data}.${sig}`;
  }

  /** The credential for a call about `repo` (owner/name) or `installationId`. */
  async authFor(target: { installationId?: number | null; repo?: string; org?: string }, maxWaitMs?: number): Promise<string> {
    const s = this.settings();
    if (!this.usesApp) {
      if (!s.token) throw new GithubApiError('no GitHub credentials: set github.appId + github.privateKeyPath, or github.token', 0);
      return s.token;
    }
    let inst = target.installationId ?? undefined;
    const lookup = target.repo ? `repos/${target.repo}` : target.org ? `orgs/${target.org}` : undefined;
    if (!inst && lookup) {
      inst = this.repoInstallations.get(lookup);
      if (!inst) {
        const r = await this.send('GET', `/${lookup}/installation`, undefined, `Bearer ${this.appJwt()}`, maxWaitMs);
        inst = Number(r.id);
        this.repoInstallations.set(lookup, inst);
      }
    }
    if (!inst) throw new GithubApiError('no installation id for this call', 0);
    const key = String(inst);
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt - 60_000 > this.now()) return cached.token;
    const r = await this.send('POST', `/app/installations/${inst}/access_tokens`, undefined, `Bearer ${this.appJwt()}`, maxWaitMs);
    this.tokens.set(key, { token: r.token, expiresAt: Date.parse(r.expires_at) || this.now() + 3_000_000 });
    return r.token;
  }

  /**
   * One API call for `target`. `maxWaitMs` bounds the wait for a rate limit (default
   * `maxRateLimitWait`); the webhook path uses a short one, as GitHub gives a delivery 10 s.
   */
  async request(method: string, path: string, body: unknown, target: { installationId?: number | null; repo?: string; org?: string }, opts: { maxWaitMs?: number } = {}): Promise<any> {
    const auth = await this.authFor(target, opts.maxWaitMs);
    try {
      return await this.send(method, path, body, `Bearer ${auth}`, opts.maxWaitMs);
    } catch (err) {
      // A revoked or expired installation token: forget it, so the next call mints a new one.
      if (err instanceof GithubApiError && err.status === 401 && this.usesApp) this.forgetTokens();
      throw err;
    }
  }

  private async send(method: string, path: string, body: unknown, authorization: string, maxWaitMs?: number): Promise<any> {
    // Paths are built from webhook and stored values: none may climb out of the resource it names.
    if (path.split('?')[0]!.split('/').some((seg) => seg === '.' || seg === '..' || /[%\\#]/.test(seg)))
      throw new GithubApiError(`refused to call GitHub at ${JSON.stringify(path.slice(0, 200))}: a path segment is not a plain name`, 400);
    const s = this.settings();
    const maxWait = Math.min(maxWaitMs ?? s.maxRateLimitWait, s.maxRateLimitWait);
    for (let attempt = 1; ; attempt++) {
      const wait = this.blockedUntil - this.now();
      if (wait > 0) {
        if (wait > maxWait) throw new GithubApiError(`GitHub rate limit in force for another ${Math.ceil(wait / 1000)}s`, 429, true);
        await sleep(wait);
      }
      let res: Response;
      try {
        res = await fetch(s.apiUrl + path, {
          method,
          headers: {
            accept: 'application/vnd.github+json',
            'x-github-api-version': '2022-11-28',
            'user-agent': 'runyard',
            authorization,
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          },
          body: body !== undefined ? JSON.stringify(body) : undefined,
          signal: AbortSignal.timeout(30_000),
        });
      } catch (err) {
        if (attempt >= MAX_TRIES) throw new GithubApiError(`GitHub unreachable: ${(err as Error).message}`, 0);
        await sleep(250 * 2 ** attempt);
        continue;
      }
      const text = await res.text();
      let parsed: any = undefined;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        parsed = text;
      }
      const remaining = res.headers.get('x-ratelimit-remaining');
      const reset = Number(res.headers.get('x-ratelimit-reset'));
      const retryAfter = res.headers.get('retry-after');
      const limited = res.status === 429 || (res.status === 403 && (retryAfter !== null || remaining === '0' || /rate limit/i.test(String(parsed?.message ?? ''))));
      if (limited) {
        let until: number;
        if (retryAfter !== null && Number.isFinite(Number(retryAfter))) until = this.now() + Number(retryAfter) * 1000;
        else if (remaining === '0' && reset > 0) until = reset * 1000 + 1000;
        else until = this.now() + Math.min(60_000, 1000 * 2 ** attempt); // secondary limit without a hint
        this.blockedUntil = Math.max(this.blockedUntil, until);
        this.log.warn({ method, path, status: res.status, retryInMs: until - this.now() }, 'GitHub rate limit; backing off');
        if (attempt >= MAX_TRIES || until - this.now() > maxWait)
          throw new GithubApiError(`GitHub rate limit (${res.status}) on ${method} ${path}`, res.status, true);
        continue;
      }
      if (remaining === '0' && reset > 0) this.blockedUntil = Math.max(this.blockedUntil, reset * 1000 + 1000);
      if (res.status >= 500) {
        if (attempt >= MAX_TRIES) throw new GithubApiError(`GitHub ${method} ${path} failed: ${res.status} ${String(parsed?.message ?? '').slice(0, 200)}`, res.status);
        await sleep(250 * 2 ** attempt);
        continue;
      }
      if (!res.ok) throw new GithubApiError(`GitHub ${method} ${path} failed: ${res.status} ${String(parsed?.message ?? '').slice(0, 200)}`, res.status);
      return parsed;
    }
  }
}
