/**
 * The lease guard's program, run as `node -e GUARD_SCRIPT <marker> <killGraceMs> <agentPid>`.
 * It is a process of its own so that a frozen agent (SIGSTOP, a stalled VM thread) cannot keep
 * its jobs running past its lease: the guard is not frozen with it. Commands on stdin, one a line:
 *
 *   L <ms>    the lease holds until this CLOCK_MONOTONIC time (absolute, so a renewal written
 *             late by an agent that was frozen cannot stretch the lease)
 *   A <pgid>  a job's process group (killed at once if the lease has already run out)
 *   D <pgid>  that job is over
 *   Q         the agent is done: exit
 *
 * When the lease runs out it sends SIGTERM to every group, and to every process carrying this
 * agent's marker (RUNYARD_LEASE_ID=<marker>) in its environment (a job spawned just before its
 * group was announced, or one that left its group),
 * then SIGKILL to the same after the grace; it prints `E <count>`. If the agent dies (stdin
 * closes), the guard waits out the lease, stops what is left, and exits.
 *
 * Plain CommonJS in a string: the agent runs from a bundle, a container image or a checkout, and
 * the guard must start the same way in each without a file of its own.
 */
export const GUARD_SCRIPT = String.raw`'use strict';
const fs = require('fs');
const readline = require('readline');
const marker = '\0RUNYARD_LEASE_ID=' + process.argv[1] + '\0';
const graceMs = Number(process.argv[2]);
const owner = Number(process.argv[3]);
const now = () => Number(process.hrtime.bigint() / 1000000n);
const groups = new Set();
let deadline = -Infinity;
let expired = false;
let ended = false;
let killing = 0;
let timer;

function marked() {
  const pids = [];
  let entries = [];
  try { entries = fs.readdirSync('/proc'); } catch { return pids; }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid || pid === owner) continue;
    try {
      if (('\0' + fs.readFileSync('/proc/' + e + '/environ', 'latin1')).includes(marker)) pids.push(pid);
    } catch {}
  }
  return pids;
}

function signal(pid, sig) {
  try { process.kill(pid, sig); return true; } catch { return false; }
}

function expire() {
  expired = true;
  const doomedGroups = [...groups];
  const doomed = marked();
  groups.clear();
  let n = 0;
  for (const g of doomedGroups) if (signal(-g, 'SIGTERM')) n++;
  for (const p of doomed) if (signal(p, 'SIGTERM')) n++;
  try { process.stdout.write('E ' + n + '\n'); } catch {}
  killing++;
  setTimeout(() => {
    for (const g of doomedGroups) signal(-g, 'SIGKILL');
    for (const p of doomed) signal(p, 'SIGKILL');
    killing--;
    if (ended && killing === 0) process.exit(0);
  }, graceMs);
}

function arm() {
  clearTimeout(timer);
  const left = deadline - now();
  if (left <= 0) {
    if (!expired) expire();
    return;
  }
  timer = setTimeout(arm, Math.min(left, 2147483647));
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const [cmd, arg] = line.split(' ');
  const v = Number(arg);
  if (cmd === 'L' && v > deadline) {
    deadline = v;
    if (v > now()) expired = false;
    arm();
  } else if (cmd === 'A' && v > 1) {
    if (now() >= deadline) signal(-v, 'SIGKILL');
    else groups.add(v);
  } else if (cmd === 'D') groups.delete(v);
  else if (cmd === 'Q') process.exit(0);
});
rl.on('close', () => {
  ended = true;
  if (!expired) arm(); // waits out the lease, then expire() stops what is left and exits
  else if (killing === 0) process.exit(0);
});
`;
