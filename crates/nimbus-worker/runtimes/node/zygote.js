// Nimbus's Node.js zygote: the interpreter and bootstrap.js's modules, loaded ahead.
//
// Started by the worker in a pre-created environment shell before any function is known
// (nimbus-sandbox's zygote.rs), already isolated: its namespaces, root, cgroups, user and
// seccomp filter are the function's, and its stdout and stderr are already the
// environment's output. It reads one message from the descriptor NIMBUS_ZYGOTE_FD, in the
// sandbox's wire format (wire.rs): the function's working directory, argv (the
// interpreter, then the bootstrap script) and environment. It takes those as its own and
// runs the bootstrap, as `node /var/runtime/bootstrap.js` would, minus the start-up
// already done. The worker only gives a function a zygote whose start-up environment
// (NODE_*, LANG, TZ, LD_*, ...) matches the function's. Built-in modules only.
'use strict';
const fs = require('fs');

// What bootstrap.js requires at start, loaded now.
for (const m of ['http', 'path', 'stream', 'url', 'util']) require(m);

const MAGIC = 0x4e4d4253;
const HEADER = 32; // u32 magic, uid, gid; u64 nofile; u32 mounts, argc, envc

function fail(message) {
  process.stderr.write(`nimbus zygote: ${message}\n`);
  process.exit(127);
}

function receive(fd) {
  const buf = Buffer.alloc(128 * 1024);
  let n;
  for (;;) {
    try {
      n = fs.readSync(fd, buf, 0, buf.length, null);
      break;
    } catch (err) {
      if (err.code !== 'EINTR' && err.code !== 'EAGAIN') throw err;
    }
  }
  fs.closeSync(fd);
  if (n === 0) process.exit(0); // the worker dropped this shell unused
  if (n < HEADER || buf.readUInt32LE(0) !== MAGIC || buf.readUInt32LE(20) !== 0) {
    fail('not a function spec');
  }
  const argc = buf.readUInt32LE(24);
  const envc = buf.readUInt32LE(28);
  const strings = buf.subarray(HEADER, n).toString('utf8').split('\0');
  if (argc < 2 || strings.length < 2 + argc + envc) fail('truncated message');
  return {
    cwd: strings[0],
    argv: strings.slice(2, 2 + argc),
    env: strings.slice(2 + argc, 2 + argc + envc),
  };
}

const fd = Number(process.env.NIMBUS_ZYGOTE_FD);
delete process.env.NIMBUS_ZYGOTE_FD;
// What the interpreter set for itself at start-up; everything else here is also in the
// function's environment.
const startedWith = { ...process.env };
const { cwd, argv, env } = receive(fd);
for (const name of Object.keys(process.env)) delete process.env[name];
for (const entry of env) {
  const eq = entry.indexOf('=');
  process.env[entry.slice(0, eq)] = entry.slice(eq + 1);
}
for (const [name, value] of Object.entries(startedWith)) {
  if (!(name in process.env)) process.env[name] = value;
}
process.chdir(cwd);
process.argv = [process.execPath, ...argv.slice(1)];
// As for `node script`: no interpreter options (child_process.fork passes these on), and
// the bootstrap is the main module (require.main).
process.execArgv = [];
require('module').runMain();
