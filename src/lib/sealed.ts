/*
 * Secret handling. At rest, job secrets are encrypted with the server's key (AES-256-GCM).
 * At claim time they are re-encrypted to the claiming runner's X25519 public key: an ephemeral
 * key pair, ECDH, HKDF-SHA256, AES-256-GCM. Only that runner's private key opens the box.
 */
import { createCipheriv, createDecipheriv, createHash, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes } from 'node:crypto';

const INFO = Buffer.from('runyard-job-secrets-v1');

function gcmSeal(key: Buffer, plain: Buffer): Buffer {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  const body = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([iv, c.getAuthTag(), body]);
}

function gcmOpen(key: Buffer, sealed: Buffer): Buffer {
  const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
  d.setAuthTag(sealed.subarray(12, 28));
  return Buffer.concat([d.update(sealed.subarray(28)), d.final()]);
}

/** Derives the at-rest key from the configured secret key text. */
export function atRestKey(secretKey: string): Buffer {
  return createHash('sha256').update('runyard-at-rest-v1:' + secretKey).digest();
}

export function encryptAtRest(key: Buffer, secrets: Record<string, string>): string {
  return gcmSeal(key, Buffer.from(JSON.stringify(secrets))).toString('base64');
}

export function decryptAtRest(key: Buffer, box: string): Record<string, string> {
  return JSON.parse(gcmOpen(key, Buffer.from(box, 'base64')).toString());
}

export interface RunnerKeyPair {
  publicKey: string; // base64 SPKI DER
  privateKey: string; // base64 PKCS8 DER
}

export function generateRunnerKeys(): RunnerKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  return {
    publicKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
    privateKey: privateKey.export({ type: 'pkcs8', format: 'der' }).toString('base64'),
  };
}

export function isValidPublicKey(b64: string): boolean {
  try {
    return createPublicKey({ key: Buffer.from(b64, 'base64'), format: 'der', type: 'spki' }).asymmetricKeyType === 'x25519';
  } catch {
    return false;
  }
}

/** Encrypts secrets to a runner's public key. */
export function sealTo(publicKeyB64: string, secrets: Record<string, string>): string {
  const recipient = createPublicKey({ key: Buffer.from(publicKeyB64, 'base64'), format: 'der', type: 'spki' });
  const eph = generateKeyPairSync('x25519');
  const shared = diffieHellman({ privateKey: eph.privateKey, publicKey: recipient });
  const ephPub = eph.publicKey.export({ type: 'spki', format: 'der' });
  const key = Buffer.from(hkdfSync('sha256', shared, ephPub, INFO, 32));
  const box = gcmSeal(key, Buffer.from(JSON.stringify(secrets)));
  return `${ephPub.toString('base64')}.${box.toString('base64')}`;
}

/** Opens a box sealed to this runner. */
export function openSealed(privateKeyB64: string, sealed: string): Record<string, string> {
  const [ephB64, boxB64] = sealed.split('.');
  const ephPubDer = Buffer.from(ephB64!, 'base64');
  const priv = createPrivateKey({ key: Buffer.from(privateKeyB64, 'base64'), format: 'der', type: 'pkcs8' });
  const shared = diffieHellman({ privateKey: priv, publicKey: createPublicKey({ key: ephPubDer, format: 'der', type: 'spki' }) });
  const key = Buffer.from(hkdfSync('sha256', shared, ephPubDer, INFO, 32));
  return JSON.parse(gcmOpen(key, Buffer.from(boxB64!, 'base64')).toString());
}
