// Runs one MicroPython program on MicroPython's WebAssembly port and reports what happened.
// Request on stdin (JSON): {files: {"/lib/x.py": {text} | {b64}}, romfs (an image, b64), code
// (one program, or a list of steps run in turn in the same interpreter), async, heapsize, net (the host's TCP
// sockets as `kioskhost`, see sockets.mjs), echo (the program's output also streamed on
// standard error as it comes, so that a test can follow a long run)}.
// Reply on stdout (JSON): {stdout, error: null | {type, traceback}}.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import { hostSockets } from "./sockets.mjs";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const out = [];
const mp = await loadMicroPython({
  heapsize: request.heapsize ?? 1024 * 1024,
  // A ROMFS image, mounted at /rom (on sys.path before /lib): its .mpy code runs in place,
  // out of the GC heap, as from a device's ROMFS partition.
  romfs: request.romfs !== undefined ? Buffer.from(request.romfs, "base64") : undefined,
  linebuffer: false,
  stdout: (bytes) => {
    out.push(...bytes);
    if (request.echo) process.stderr.write(Buffer.from(bytes));
  },
  stderr: (bytes) => out.push(...bytes),
});

// This port starts in /rom when it has one; a device starts at the root of its flash.
if (request.romfs !== undefined) mp.runPython("import os\nos.chdir('/')\ndel os");

const sockets = request.net ? hostSockets() : null;
if (sockets !== null) mp.registerJsModule("kioskhost", sockets.calls);

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

// `code` may be a list of steps, each run by its own call: this port's gc.collect() frees
// nothing while a call is running, only what earlier calls left behind.
const steps = Array.isArray(request.code) ? request.code : [request.code];
let error = null;
try {
  for (const step of steps) {
    if (request.async) {
      // Node's collector first (started with --expose-gc): the port keeps Python objects
      // that JS holds, such as each async step's own coroutine, until JS has collected its
      // proxies, which would otherwise happen at random and move heap figures by kilobytes.
      if (globalThis.gc) {
        globalThis.gc();
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      await mp.runPythonAsync(step);
    } else mp.runPython(step);
  }
} catch (e) {
  // A PythonError carries the exception's type name and the MicroPython traceback.
  error = { type: e.type ?? e.constructor.name, traceback: e.message ?? String(e) };
}
if (sockets !== null) sockets.closeAll();
// Exit once the reply is flushed: tasks the program left running would keep Node alive.
process.stdout.write(JSON.stringify({ stdout: Buffer.from(out).toString("utf8"), error }), () =>
  process.exit(0),
);
