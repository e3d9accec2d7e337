/**
 * The runner's identity: a UUID and an X25519 key pair, created on first start and kept (mode
 * 600) in the state dir so a restarted agent re-registers as the same runner. The server seals
 * job secrets to the public key; the private key never leaves this file.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { generateRunnerKeys, isValidPublicKey } from '../lib/sealed.js';

export interface Identity {
  id: string;
  publicKey: string;
  privateKey: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(s: string): boolean {
  return UUID.test(s);
}

/**
 * Loads the identity in `file`, or creates one. A requested id (the provider passes `--id`) wins:
 * a stored identity with another id is replaced, keys included.
 */
export function loadOrCreateIdentity(file: string, requestedId?: string): { identity: Identity; created: boolean } {
  const wanted = requestedId?.toLowerCase();
  const stored = readIdentity(file);
  if (stored && (!wanted || stored.id === wanted)) return { identity: stored, created: false };
  const identity: Identity = { id: wanted ?? randomUUID(), ...generateRunnerKeys() };
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(identity, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, file);
  return { identity, created: true };
}

/** After deregistering, the server will never accept this id again: the next start makes a new one. */
export function forgetIdentity(file: string): void {
  rmSync(file, { force: true });
}

function readIdentity(file: string): Identity | undefined {
  let raw: string;
  try {
    raw = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const j = JSON.parse(raw);
    if (typeof j.id === 'string' && isUuid(j.id) && typeof j.privateKey === 'string' && typeof j.publicKey === 'string' && isValidPublicKey(j.publicKey)) {
      return { id: j.id.toLowerCase(), publicKey: j.publicKey, privateKey: j.privateKey };
    }
  } catch {
    // corrupt: replaced below by a fresh identity
  }
  return undefined;
}
