// Runs one MicroPython program on MicroPython's WebAssembly port with the host's TCP sockets
// (as `kioskhost`, what host/kiosk_host/sim/hardware/hostnet.py calls), for firmware tests
// that talk to real peers. Request and reply as in mpvm.mjs; the program's output is also
// streamed, line by line, on standard error, so that a test can follow it while it runs.
import net from "node:net";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

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
const socks = new Map();
let next = 1;
mp.registerJsModule("kioskhost", {
  connect: (host, port) =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host, port });
      const id = next++;
      const st = { s, data: [], ended: false, error: null, waiter: null };
      const wake = () => {
        if (st.waiter !== null) {
          const w = st.waiter;
          st.waiter = null;
          w();
        }
      };
      s.setNoDelay(true);
      s.once("connect", () => {
        socks.set(id, st);
        resolve(id);
      });
      s.on("data", (c) => {
        st.data.push(c);
        wake();
      });
      s.on("end", () => {
        st.ended = true;
        wake();
      });
      s.on("close", () => {
        st.ended = true;
        wake();
      });
      s.on("error", (e) => {
        st.error = e;
        if (!socks.has(id)) reject(e);
        wake();
      });
    }),
  recv: (id, n) => {
    const st = socks.get(id);
    return new Promise((resolve, reject) => {
      const serve = () => {
        if (st === undefined) {
          resolve("");
        } else if (st.data.length) {
          const all = Buffer.concat(st.data);
          const take = n < 0 ? all.length : Math.min(n, all.length);
          st.data = take < all.length ? [all.subarray(take)] : [];
          resolve(all.subarray(0, take).toString("hex"));
        } else if (st.error !== null) {
          reject(st.error); // a reset is an error, not an end
        } else if (st.ended) {
          resolve("");
        } else {
          st.waiter = serve;
        }
      };
      serve();
    });
  },
  send: (id, hex) => {
    const st = socks.get(id);
    if (st === undefined || st.ended || st.s.destroyed) return -1;
    st.s.write(Buffer.from(hex, "hex"));
    return 0;
  },
  sclose: (id) => {
    const st = socks.get(id);
    if (st === undefined) return 0;
    socks.delete(id);
    st.ended = true;
    st.s.destroy();
    if (st.waiter !== null) st.waiter();
    return 0;
  },
});

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
for (const st of socks.values()) st.s.destroy();
process.stdout.write(JSON.stringify({ stdout: Buffer.from(out).toString("utf8"), error }), () =>
  process.exit(0),
);
