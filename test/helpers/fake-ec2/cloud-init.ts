/*
 * The part of cloud-init an instance of the fake needs: which user-data scripts run at this boot.
 * As cloud-init does it: a plain `#!` script, or a multipart MIME document's `text/x-shellscript`
 * parts, run once per instance (first boot) unless a `text/cloud-config` part sets
 * `cloud_final_modules: [[scripts-user, always]]`; `text/cloud-boothook` parts run at every boot.
 * So a provider whose user data forgets the `always` gets a reused instance that boots to nothing,
 * here as on EC2.
 */
import { parse as parseYaml } from 'yaml';

export interface BootScript {
  name: string;
  body: string;
}

interface Part {
  type: string;
  body: string;
}

function header(block: string, name: string): string | undefined {
  const m = new RegExp(`^${name}:[ \\t]*(.*(?:\\r?\\n[ \\t].*)*)`, 'im').exec(block);
  return m?.[1]?.replace(/\r?\n[ \t]+/g, ' ').trim();
}

/** The parts of a user-data document (a MIME multipart, or one plain part). */
export function userDataParts(text: string): Part[] {
  if (!/^content-type:\s*multipart\//im.test(text.split(/\r?\n\r?\n/)[0] ?? '')) return [{ type: text.startsWith('#cloud-config') ? 'text/cloud-config' : text.startsWith('#cloud-boothook') ? 'text/cloud-boothook' : 'text/x-shellscript', body: text }];
  const head = text.split(/\r?\n\r?\n/)[0]!;
  const boundary = /boundary="?([^";\r\n]+)"?/i.exec(header(head, 'content-type') ?? '')?.[1];
  if (!boundary) return [];
  const parts: Part[] = [];
  const chunks = text.split(`--${boundary}`).slice(1);
  for (const chunk of chunks) {
    if (chunk.startsWith('--')) break; // the closing delimiter
    const body = chunk.replace(/^\r?\n/, '');
    const sep = /\r?\n\r?\n/.exec(body);
    if (!sep) continue;
    const headers = body.slice(0, sep.index);
    const type = (header(headers, 'content-type') ?? 'text/plain').split(';')[0]!.trim().toLowerCase();
    parts.push({ type, body: body.slice(sep.index + sep[0].length).replace(/\r?\n$/, '') });
  }
  return parts;
}

/** True when a cloud-config part makes `scripts-user` run at every boot. */
function scriptsUserAlways(parts: Part[]): boolean {
  for (const p of parts.filter((x) => x.type === 'text/cloud-config')) {
    let doc: unknown;
    try {
      doc = parseYaml(p.body);
    } catch {
      continue; // cloud-init skips a config it cannot read
    }
    const mods = (doc as { cloud_final_modules?: unknown })?.cloud_final_modules;
    if (Array.isArray(mods) && mods.some((m) => Array.isArray(m) && m[0] === 'scripts-user' && m[1] === 'always')) return true;
  }
  return false;
}

/** The scripts that run at boot number `boot` (1 = first) of an instance with this user data. */
export function bootScripts(userData: string, boot: number): BootScript[] {
  const parts = userDataParts(userData);
  const always = scriptsUserAlways(parts);
  const out: BootScript[] = [];
  parts.forEach((p, i) => {
    const body = p.type === 'text/cloud-boothook' ? p.body.replace(/^#cloud-boothook\r?\n/, '') : p.body;
    if (p.type === 'text/cloud-boothook') out.push({ name: `boothook-${i}`, body });
    else if (p.type === 'text/x-shellscript' && (boot === 1 || always)) out.push({ name: `part-${i}`, body });
  });
  // boothooks run before the final stage's user scripts
  return out.sort((a, b) => Number(b.name.startsWith('boothook')) - Number(a.name.startsWith('boothook')));
}

/**
 * PID 1 of an instance's container: runs this boot's scripts in order, then idles like a booted
 * machine. SIGTERM (a stop, or `poweroff` from inside) is the OS shutdown: every process gets
 * SIGTERM, and the machine goes down when they are gone (the engine's stop timeout is the hard
 * power-off).
 */
export const BOOT_SH = `#!/bin/sh
export PATH=/var/lib/cloud/fake/bin:/usr/local/bin:/usr/bin:/bin
down() {
  kill -s TERM -- -1 2>/dev/null
  while kill -s 0 -- -1 2>/dev/null; do sleep 0.1; done
  exit 0
}
trap down TERM INT
for s in /var/lib/cloud/fake/boot/*; do
  [ -f "$s" ] || continue
  echo "cloud-init: running $s"
  /bin/sh "$s" </dev/null &
  wait $!
done
echo "cloud-init: boot finished"
while :; do sleep 3600 & wait $!; done
`;

/** `poweroff` / `shutdown` inside an instance: the OS shutdown, through PID 1. */
export const POWEROFF_SH = '#!/bin/sh\nkill -s TERM 1\n';
