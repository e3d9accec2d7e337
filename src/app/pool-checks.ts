/*
 * What can never run is refused where it is asked for (pool apply, submit), naming the field:
 * a pool whose provider this server does not have, a distribution that is not in the store.
 */
import type { Queryable } from '../store/db.js';
import type { PoolConfig } from '../config/schema.js';
import type { Provider } from '../providers/provider.js';
import { artifactInfo } from '../store/artifacts.js';

/** What to do to get a provider this server lacks. */
export function providerHint(provider: string): string {
  if (provider === 'container')
    return 'start the server with RUNYARD_CONTAINER_HOST=unix:///run/podman/podman.sock (or DOCKER_HOST) pointing at a Docker or podman API';
  if (provider === 'process') return 'the process provider is built in; was the server started with a custom provider list?';
  return `this server has no ${provider} provider; configure one, or use provider process or container`;
}

/** Why a pool of `provider` cannot run here, or undefined when it can. */
export function providerProblem(providers: ReadonlyMap<string, Provider> | undefined, p: Pick<PoolConfig, 'name' | 'provider'>): string | undefined {
  if (!providers || providers.has(p.provider)) return undefined;
  return `pool ${p.name} uses provider ${p.provider}, which this server cannot run: ${providerHint(p.provider)}`;
}

/** Why a pool's distribution cannot be handed out, or undefined when it is in the store. */
export async function distributionProblem(q: Queryable, p: Pick<PoolConfig, 'name' | 'distribution'>): Promise<string | undefined> {
  if (!p.distribution || (await artifactInfo(q, p.distribution))) return undefined;
  return `distribution ${p.distribution} of pool ${p.name} is not in the artifact store; push it first with \`runyard artifacts push ${/^sha256:/.test(p.distribution) ? 'FILE' : p.distribution}\` (see \`runyard artifacts list\`)`;
}
