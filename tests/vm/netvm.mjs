// Runs one MicroPython program on MicroPython's WebAssembly port with the host's TCP sockets
// (as `kioskhost`, what host/kiosk_host/sim/hardware/hostnet.py calls), for firmware tests
// that talk to real peers. Request and reply as in mpvm.mjs; the program's output is also
// streamed, line by line, on standard error, so that a test can follow it while it runs.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import { hostSockets } from "./sockets.mjs";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const out = [];
const mp = await loadMicroPython({
  heapsize: request.heapsize ?? 1024 * 1024,
  linebuffer: false,
  stdout: (bytes) => {
    out.push(...bytes);
    process.stderr.write(Buffer.from(bytes));
  },
  stderr: (bytes) => out.push(...bytes),
});

// The same calls as serial_kiosk.mjs's Wi-Fi: connect, recv, send and sclose on host sockets.
const sockets = hostSockets();
mp.registerJsModule("kioskhost", sockets.calls);

function mkdirs(path) {
  let dir = "";
  for (const part of path.split("/").slice(1, -1)) {
    dir += "/" + part;
    try { mp.FS.mkdir(dir); } catch (e) { if (e.errno !== 20) throw e; } // 20: EEXIST
  }
}

for (const [path, file] of Object.entries(request.files ?? {})) {
  mkdirs(path);
  mp.FS.writeFile(path, file.b64 !== undefined ? Buffer.from(file.b64, "base64") : file.text);
}

let error = null;
try {
  await mp.runPythonAsync(request.code);
} catch (e) {
  error = { type: e.type ?? e.constructor.name, traceback: e.message ?? String(e) };
}
sockets.closeAll();
process.stdout.write(JSON.stringify({ stdout: Buffer.from(out).toString("utf8"), error }), () =>
  process.exit(0),
);
