// The zk_batch_prover's Groth16 worker: a long-lived process around snarkjs's prover and verifier.
//
//   node circuits/groth16.cjs <setup dir>
//
// Reads one JSON request per line on stdin and answers one line each, in order:
//   {"prove": <circuit input>}                  -> {"proof": <snarkjs proof>, "publicSignals": [...], "ms": n}
//   {"verify": {"publicSignals": [...], "proof": <snarkjs proof>}}   -> {"valid": true|false, "ms": n}
//   anything that fails                         -> {"error": "..."}
// The circuit input is {prevRoot, newRoot, spentBefore, spentAfter, count, records, fees} as decimal
// strings. One process serves many checkpoints, so Node and the curve start once (agentgpt/zk/batch.py).
"use strict";
const fs = require("fs");
const path = require("path");
const readline = require("readline");
const snarkjs = require("snarkjs");

const dir = process.argv[2];
if (!dir) {
  process.stderr.write("usage: node prove.cjs <setup dir>\n");
  process.exit(2);
}
const wasm = path.join(dir, "batch_chain.wasm");
const zkey = path.join(dir, "batch_chain.zkey");
let vkey = null;
const rl = readline.createInterface({ input: process.stdin, terminal: false });
let queue = Promise.resolve();
rl.on("line", (line) => {
  queue = queue.then(async () => {
    let out;
    try {
      const started = Date.now();
      const req = JSON.parse(line);
      if (req.prove) {
        const { proof, publicSignals } = await snarkjs.groth16.fullProve(req.prove, wasm, zkey);
        out = { proof, publicSignals, ms: Date.now() - started };
      } else if (req.verify) {
        if (vkey === null) vkey = JSON.parse(fs.readFileSync(path.join(dir, "verification_key.json"), "utf8"));
        const valid = await snarkjs.groth16.verify(vkey, req.verify.publicSignals, req.verify.proof);
        out = { valid: valid === true, ms: Date.now() - started };
      } else {
        out = { error: "a request is {prove: ...} or {verify: ...}" };
      }
    } catch (err) {
      out = { error: String((err && err.message) || err) };
    }
    process.stdout.write(JSON.stringify(out) + "\n");
  });
});
rl.on("close", () => {
  queue.then(() => process.exit(0));
});
