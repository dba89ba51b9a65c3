#!/usr/bin/env node
// A local Arweave gateway (arlocal) on loopback, its store kept in a directory across restarts.
//
//   node tools/arlocal/arlocal-node.js --port 1984 --db DIR [--host 127.0.0.1] [--logs]
//
// Prints one line once the HTTP server listens, then serves until SIGTERM/SIGINT or until its parent exits:
//   arlocal ready on http://127.0.0.1:1984 (db DIR, pid N)
// and exits 1 with the reason if it cannot start (port taken, store unreadable). arlocal itself appends a
// request log to ./logs in the working directory: run it from a directory meant for that.
//
// Two things differ from `npx arlocal`:
// - it binds loopback only (arlocal's own listen() takes every interface);
// - it shuts down by closing the server and the database itself. ArLocal.stop() with persist=true
//   *drops every table* (its `down()` tests the flag the wrong way round), which would lose the store.
'use strict';

const path = require('path');
const ArLocal = require('arlocal').default;

function parseArgs(argv) {
  const opts = { port: 1984, db: '', host: '127.0.0.1', logs: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === '--port') opts.port = Number(value());
    else if (arg === '--db') opts.db = value();
    else if (arg === '--host') opts.host = value();
    else if (arg === '--logs') opts.logs = true;
    else if (arg === '-h' || arg === '--help') usage('', 0);
    else usage(`unknown argument ${arg}`);
  }
  if (!Number.isInteger(opts.port) || opts.port <= 0 || opts.port > 65535) usage('--port must be 1..65535');
  if (!opts.db) usage('--db DIR is required (the gateway keeps its SQLite store and data files there)');
  opts.db = path.resolve(opts.db);
  return opts;
}

function usage(problem, code = 2) {
  if (problem) console.error(`arlocal-node: ${problem}`);
  console.error('usage: node arlocal-node.js --port PORT --db DIR [--host 127.0.0.1] [--logs]');
  process.exit(code);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const ar = new ArLocal(opts.port, opts.logs, opts.db, true);
  // Koa's listen(...args) hands its arguments to http.Server.listen: add the host.
  const listen = ar.app.listen.bind(ar.app);
  ar.app.listen = (port, callback) => listen(port, opts.host, callback);
  await ar.start();
  const server = ar.getServer();
  await new Promise((resolve, reject) => {
    if (server.listening) return resolve();
    server.once('listening', resolve);
    server.once('error', reject);
  });

  let stopping = false;
  const shutdown = async (signal) => {
    if (stopping) return;
    stopping = true;
    const closed = new Promise((resolve) => server.close(() => resolve()));
    server.closeAllConnections();  // keep-alive clients would hold close() open
    await closed;
    try {
      // Not ar.apollo.stop(): Apollo handles SIGTERM itself and that stop never settles a second time.
      await ar.connection.destroy();  // closes the SQLite store
    } catch (err) {
      console.error(`arlocal-node: error while closing the store: ${err.message}`);
      process.exit(1);
    }
    console.log(`arlocal stopped (${signal})`);
    process.exit(0);
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  // A parent killed with SIGKILL (or one that died mid-start) cannot stop us: when we are re-parented,
  // shut down as if told to, so no gateway outlives the stack or test that started it.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) shutdown('parent exited');
  }, 1000).unref();

  console.log(`arlocal ready on http://${opts.host}:${opts.port} (db ${opts.db}, pid ${process.pid})`);
}

main().catch((err) => {
  console.error(`arlocal-node: cannot start: ${err && err.code ? err.code + ' ' : ''}${err && err.message}`);
  process.exit(1);
});
