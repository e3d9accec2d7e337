// Loaded with NODE_OPTIONS=--require into agent processes when profiling (`--cpu-prof` itself is
// not allowed in NODE_OPTIONS). Starts the V8 profiler at once and writes a .cpuprofile on exit.
'use strict';
const inspector = require('node:inspector');
const fs = require('node:fs');
const path = require('node:path');
const dir = process.env.BENCH_AGENT_PROFILE_DIR;
if (dir) {
  const session = new inspector.Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 1000 });
  session.post('Profiler.start');
  process.on('exit', () => {
    // The in-thread inspector session answers synchronously, so this works in an exit handler.
    session.post('Profiler.stop', (err, res) => {
      if (err || !res) return;
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, `agent-${process.pid}.cpuprofile`), JSON.stringify(res.profile));
    });
  });
}
