// A kiosk on a serial line: MicroPython's WebAssembly VM behind standard input and output,
// with a flash that is a folder on the host. `socat PTY,link=PATH,raw,echo=0 EXEC:"node
// serial_kiosk.mjs --fs DIR"` puts a pseudo-terminal in front of it, and mpremote then
// treats it as a board on a USB cable.
//
// Written by hand: no package turns the WebAssembly port into a serial device. What this
// adds to the port's event-driven REPL, as the ESP32 port behaves:
//   * boot: boot.py then main.py from the flash; a program that keeps running (asyncio.run)
//     owns the line until Ctrl-C, which interrupts it into the REPL;
//   * raw-paste requests are answered "not supported" (R\x00): the port's raw-paste mode
//     hangs, and mpremote falls back to the plain raw REPL;
//   * Ctrl-D at an empty prompt is a soft reset ("MPY: soft reboot", boot.py, and main.py
//     unless in the raw REPL); machine.reset() and a starved watchdog are hard resets;
//   * the watchdog keeps counting after Ctrl-C and soft resets, until a hard reset.
// Every boot is a fresh VM in a worker thread, so that nothing of the last run survives but
// the flash. The flash, the Wi-Fi sockets and the wiring live in hardware/ (hostflash.py,
// hostnet.py, serialboot.py); they call the functions registered here as `kioskhost`.
// Each screen the firmware shows is written to standard error as `SCREEN <name>: <text>`,
// and each reset as `RESET <kind>`.
//
// A file `.romfs0` in the flash folder is the board's ROMFS partition 0 (its bytes, its
// size): each boot hands it to the VM, which mounts the image in it at /rom. This port's
// vfs.rom_ioctl reads the partition and refuses writes (-22), as a read-only partition
// does. The file is not part of the flash's file system: the kiosk neither lists it nor
// counts it as used.
//
// Options: --fs DIR (required), --flash-kb N (the flash partition, default 2048),
// --heap-kb N (default 1024); or SERIAL_KIOSK_FS, SERIAL_KIOSK_FLASH_KB and
// SERIAL_KIOSK_HEAP_KB in the environment, which socat's EXEC passes on unquoted.
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";

const SIMHW = path.join(path.dirname(fileURLToPath(import.meta.url)), "hardware");
const ROMFS_FILE = ".romfs0"; // in the flash folder: ROMFS partition 0
const SIM_FILES = ["simclock.py", "machine.py", "network.py", "ntptime.py", "hostflash.py",
  "hostnet.py", "serialboot.py"];
// machine.reset_cause() after each kind of start, as the ESP32 port numbers them.
const CAUSE = { "power-on": 1, hard: 2, watchdog: 3, soft: 5, "soft-raw": 5 };
const CTRL_A = 0x01, CTRL_B = 0x02, CTRL_C = 0x03, CTRL_D = 0x04, CTRL_E = 0x05;

if (isMainThread) {
  bridge(parseArgs(process.argv.slice(2)));
} else {
  vm(workerData).catch((e) => {
    parentPort.postMessage({ type: "fatal", message: String(e && e.stack || e) });
  });
}

function parseArgs(argv) {
  const env = process.env;
  const opts = {
    fs: env.SERIAL_KIOSK_FS ? path.resolve(env.SERIAL_KIOSK_FS) : null,
    flashKb: parseInt(env.SERIAL_KIOSK_FLASH_KB ?? "2048", 10),
    heapKb: parseInt(env.SERIAL_KIOSK_HEAP_KB ?? "1024", 10),
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === "--fs") opts.fs = path.resolve(value);
    else if (flag === "--flash-kb") opts.flashKb = parseInt(value, 10);
    else if (flag === "--heap-kb") opts.heapKb = parseInt(value, 10);
    else fail(`unknown option ${flag}`);
  }
  if (!opts.fs) fail("--fs DIR is required: the folder that is the kiosk's flash");
  if (!(opts.flashKb >= 16)) fail("--flash-kb must be at least 16");
  fs.mkdirSync(opts.fs, { recursive: true });
  return opts;
}

function fail(message) {
  process.stderr.write(`serial_kiosk: ${message}\n`);
  process.exit(2);
}

// -- the serial line and the chip's resets (main thread) --------------------------------------

function bridge(opts) {
  let worker = null;
  let ready = false; // the VM has booted and says who reads the line
  let program = false; // a program is running: only Ctrl-C reaches the chip
  let pending = []; // input that arrived while the VM was booting
  let watchdog = null; // {timeout, fed}: survives Ctrl-C and soft resets, not a hard reset
  let cause = CAUSE["power-on"];

  function start(mode, carry) {
    if (worker !== null) {
      worker.removeAllListeners();
      worker.terminate();
    }
    if (mode !== "interrupt") cause = CAUSE[mode];
    if (mode === "hard" || mode === "watchdog") watchdog = null;
    ready = false;
    program = false;
    pending = carry && carry.length ? [Buffer.from(carry)] : [];
    worker = new Worker(new URL(import.meta.url), {
      workerData: { fs: opts.fs, flashKb: opts.flashKb, heapKb: opts.heapKb, mode, cause },
    });
    worker.on("message", onMessage);
    worker.on("error", (e) => {
      process.stderr.write(`serial_kiosk: the VM failed: ${e && e.stack || e}\n`);
      process.exit(1);
    });
  }

  function onMessage(m) {
    switch (m.type) {
      case "out":
        process.stdout.write(Buffer.from(m.data));
        break;
      case "ready": {
        ready = true;
        program = m.program;
        const data = Buffer.concat(pending);
        pending = [];
        if (data.length) input(data);
        break;
      }
      case "reset":
        process.stderr.write(`RESET ${m.kind}\n`);
        start(m.kind, m.kind.startsWith("soft") ? m.carry : null);
        break;
      case "screen":
        process.stderr.write(`SCREEN ${m.name}: ${String(m.text).replace(/\n/g, " / ")}\n`);
        break;
      case "wdt":
        watchdog = { timeout: m.timeout, fed: Date.now() };
        break;
      case "feed":
        if (watchdog !== null) watchdog.fed = Date.now();
        break;
      case "fatal":
        process.stderr.write(`serial_kiosk: the VM failed: ${m.message}\n`);
        process.exit(1);
    }
  }

  function input(data) {
    if (!ready) {
      pending.push(data);
      return;
    }
    if (program) {
      // A running program does not read the line; Ctrl-C interrupts it into the REPL.
      const i = data.indexOf(CTRL_C);
      if (i >= 0) start("interrupt", data.subarray(i + 1));
      return;
    }
    worker.postMessage({ type: "input", data });
  }

  setInterval(() => {
    if (watchdog !== null && Date.now() - watchdog.fed > watchdog.timeout) {
      process.stderr.write("RESET watchdog\n");
      start("watchdog", null);
    }
  }, 100);
  process.stdin.on("data", input);
  process.stdin.on("end", () => process.exit(0));
  start("power-on", null);
}

// -- one boot of the chip: a fresh VM (worker thread) ---------------------------------------

async function vm({ fs: root, flashKb, heapKb, mode, cause }) {
  const { loadMicroPython } = await import("@micropython/micropython-webassembly-pyscript");
  let out = [];
  const queue = []; // input bytes for the REPL, fed one at a time in order
  let silent = false;
  let resetting = false;
  let program = false;
  let flushing = false;

  function emit(bytes) {
    if (silent || resetting) return;
    for (const b of bytes) out.push(b);
    if (!flushing) {
      flushing = true;
      setImmediate(flush);
    }
  }
  function flush() {
    flushing = false;
    if (out.length) parentPort.postMessage({ type: "out", data: Uint8Array.from(out) });
    out = [];
  }
  const say = (s) => emit(Buffer.from(s, "latin1"));

  const flash = new Flash(root, flashKb);
  const sockets = new Sockets();
  const t0 = performance.now();
  const romfsFile = path.join(root, ROMFS_FILE);
  const mp = await loadMicroPython({
    heapsize: heapKb * 1024,
    linebuffer: false,
    stdout: emit,
    stderr: emit,
    ...(fs.existsSync(romfsFile) ? { romfs: new Uint8Array(fs.readFileSync(romfsFile)) } : {}),
  });
  mp.registerJsModule("kioskhost", {
    ...flash.calls(),
    ...sockets.calls(),
    elapsed_ms: () => Math.floor(performance.now() - t0),
    unix_time: () => Math.floor(Date.now() / 1000),
    screen: (name, text) => parentPort.postMessage({ type: "screen", name, text }),
    program: () => {
      program = true;
    },
    reset: (kind) => {
      if (resetting) return;
      flush();
      resetting = true;
      queue.length = 0;
      parentPort.postMessage({ type: "reset", kind, carry: [] });
    },
    wdt_start: (timeout) => parentPort.postMessage({ type: "wdt", timeout }),
    wdt_feed: () => parentPort.postMessage({ type: "feed" }),
  });

  mp.FS.mkdir("/sim");
  for (const name of SIM_FILES) {
    mp.FS.writeFile(`/sim/${name}`, fs.readFileSync(path.join(SIMHW, name)));
  }
  mp.runPython("import sys\nsys.path.insert(0, '/sim')\nimport serialboot\nsys.path.pop(0)");
  mp.runPython(`serialboot.power_up(${cause})`);

  const runFile = (name) => {
    try {
      mp.runPython(`serialboot.run_file(${JSON.stringify(name)})`);
    } catch (e) {
      if (!resetting) throw e;
    }
  };
  if (mode === "soft" || mode === "soft-raw") say("MPY: soft reboot\r\n");
  if (mode === "interrupt") {
    say("Traceback (most recent call last):\r\n  File \"main.py\", in <module>\r\n" +
      "KeyboardInterrupt: \r\n");
  } else {
    runFile("boot.py");
    if (mode !== "soft-raw") runFile("main.py");
  }
  if (resetting) return;

  // The REPL.
  let busy = false;
  let raw = false; // in the raw REPL
  let atPrompt = false; // raw REPL, nothing of a command received yet
  let paste = 0; // bytes of a raw-paste request (Ctrl-E 'A' Ctrl-A) seen

  async function feed(c) {
    if (raw && atPrompt && paste === 0 && c === CTRL_E) {
      paste = 1;
      return;
    }
    if (paste === 1 && c === 0x41) {
      paste = 2;
      return;
    }
    if (paste === 2 && c === CTRL_A) {
      paste = 0;
      say("R\x00"); // raw paste not supported: mpremote sends the command the plain way
      return;
    }
    paste = 0;
    const soft = await mp.replProcessCharWithAsyncify(c);
    if (c === CTRL_A) {
      raw = true;
      atPrompt = true;
    } else if (c === CTRL_B) {
      raw = false;
    } else if (raw) {
      atPrompt = c === CTRL_D;
    }
    if (soft && !resetting) {
      flush();
      resetting = true;
      parentPort.postMessage({ type: "reset", kind: raw ? "soft-raw" : "soft", carry: queue.splice(0) });
    }
  }
  async function pump() {
    if (busy) return;
    busy = true;
    while (queue.length && !resetting) await feed(queue.shift());
    busy = false;
  }
  parentPort.on("message", (m) => {
    if (m.type !== "input" || resetting) return;
    for (const b of m.data) queue.push(b);
    pump();
  });

  if (program) {
    flush();
    parentPort.postMessage({ type: "ready", program: true });
    return;
  }
  silent = mode === "soft-raw"; // back in the raw REPL without the friendly banner
  mp.replInit();
  silent = false;
  if (mode === "soft-raw") await feed(CTRL_A);
  flush();
  parentPort.postMessage({ type: "ready", program: false });
}

// -- the flash: a folder on the host, with the partition's size -------------------------------

const ERRNO = { ENOENT: 2, EIO: 5, EBADF: 9, EACCES: 13, EEXIST: 17, ENOTDIR: 20, EISDIR: 21,
  EINVAL: 22, ENOSPC: 28, ENOTEMPTY: 13 }; // MicroPython has no ENOTEMPTY; littlefs says EACCES
const BLOCK = 4096;
const RESERVED_BLOCKS = 2; // littlefs keeps two for its superblock

class Flash {
  constructor(root, flashKb) {
    this.root = root;
    this.blocks = Math.floor((flashKb * 1024) / BLOCK);
    this.files = new Map(); // relative path -> size
    this.handles = new Map();
    this.next = 1;
    this.rescan();
  }

  static blocksOf(size) {
    return Math.max(1, Math.ceil(size / BLOCK));
  }

  rescan() {
    this.files.clear();
    this.dirs = 0;
    const walk = (rel) => {
      for (const e of fs.readdirSync(path.join(this.root, rel), { withFileTypes: true })) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (r === ROMFS_FILE) continue;
        if (e.isDirectory()) {
          this.dirs += 1;
          walk(r);
        } else if (e.isFile()) {
          this.files.set(r, fs.statSync(path.join(this.root, r)).size);
        }
      }
    };
    walk("");
  }

  used() {
    let n = RESERVED_BLOCKS + this.dirs;
    for (const size of this.files.values()) n += Flash.blocksOf(size);
    return n;
  }

  rel(p) {
    const rel = path.posix.normalize("/" + p).replace(/^\/+/, "").replace(/\/+$/, "");
    // The ROMFS partition is no file of the flash.
    if (rel === ROMFS_FILE) throw Object.assign(new Error("not on the flash"), { code: "ENOENT" });
    return rel;
  }

  host(rel) {
    return path.join(this.root, rel);
  }

  static errno(e) {
    return -(ERRNO[e && e.code] ?? ERRNO.EIO);
  }

  calls() {
    const guard = (fn) => (...args) => {
      try {
        return fn(...args);
      } catch (e) {
        return Flash.errno(e);
      }
    };
    return {
      stat: guard((p) => this.stat(p)),
      listdir: guard((p) => this.listdir(p)),
      mkdir: guard((p) => this.mkdir(p)),
      rmdir: guard((p) => this.rmdir(p)),
      remove: guard((p) => this.remove(p)),
      rename: guard((a, b) => this.rename(a, b)),
      statvfs: guard(() => `${BLOCK} ${this.blocks} ${Math.max(0, this.blocks - this.used())}`),
      fopen: guard((p, mode) => this.open(p, mode)),
      fread: guard((h, n) => this.read(h, n)),
      freadline: guard((h, limit) => this.readline(h, limit)),
      fwrite: guard((h, hex) => this.write(h, hex)),
      fseek: guard((h, off, whence) => this.seek(h, off, whence)),
      fclose: guard((h) => this.close(h)),
    };
  }

  stat(p) {
    const rel = this.rel(p);
    const st = fs.statSync(this.host(rel));
    const mtime = Math.floor(st.mtimeMs / 1000);
    return st.isDirectory() ? `d 0 ${mtime}` : `f ${st.size} ${mtime}`;
  }

  listdir(p) {
    const rel = this.rel(p);
    const lines = [];
    for (const e of fs.readdirSync(this.host(rel), { withFileTypes: true })) {
      if (rel === "" && e.name === ROMFS_FILE) continue;
      if (e.isDirectory()) lines.push(`d 0 ${e.name}`);
      else if (e.isFile()) lines.push(`f ${fs.statSync(this.host(path.join(rel, e.name))).size} ${e.name}`);
    }
    return lines.join("\n");
  }

  mkdir(p) {
    const rel = this.rel(p);
    if (rel === "") return -ERRNO.EEXIST;
    if (this.used() + 1 > this.blocks) return -ERRNO.ENOSPC;
    fs.mkdirSync(this.host(rel));
    this.dirs += 1;
    return 0;
  }

  rmdir(p) {
    const rel = this.rel(p);
    if (rel === "") return -ERRNO.EINVAL;
    fs.rmdirSync(this.host(rel));
    this.rescan();
    return 0;
  }

  remove(p) {
    const rel = this.rel(p);
    if (fs.statSync(this.host(rel)).isDirectory()) return -ERRNO.EISDIR;
    fs.unlinkSync(this.host(rel));
    this.files.delete(rel);
    return 0;
  }

  rename(a, b) {
    fs.renameSync(this.host(this.rel(a)), this.host(this.rel(b)));
    this.rescan();
    return 0;
  }

  open(p, mode) {
    const rel = this.rel(p);
    const file = this.host(rel);
    const exists = this.files.has(rel);
    if (!exists && fs.existsSync(file)) return -ERRNO.EISDIR;
    const writing = /[wax+]/.test(mode);
    if (!writing && !exists) return -ERRNO.ENOENT;
    if (writing && !exists && mode.includes("r")) return -ERRNO.ENOENT;
    if (writing && !exists && this.used() + 1 > this.blocks) return -ERRNO.ENOSPC;
    const fd = fs.openSync(file, !writing ? "r" : exists && !mode.includes("w") ? "r+" : "w+");
    if (!exists || mode.includes("w")) this.files.set(rel, 0);
    const h = this.next++;
    this.handles.set(h, { fd, rel, pos: 0, append: mode.includes("a"), writing });
    return h;
  }

  handle(h) {
    const f = this.handles.get(h);
    if (f === undefined) throw Object.assign(new Error("closed"), { code: "EBADF" });
    return f;
  }

  read(h, n) {
    const f = this.handle(h);
    const size = this.files.get(f.rel) ?? 0;
    const len = Math.max(0, Math.min(n < 0 ? size : n, size - f.pos));
    const buf = Buffer.alloc(len);
    const got = len ? fs.readSync(f.fd, buf, 0, len, f.pos) : 0;
    f.pos += got;
    return buf.subarray(0, got).toString("hex");
  }

  readline(h, limit) {
    const f = this.handle(h);
    const size = this.files.get(f.rel) ?? 0;
    const rest = Buffer.alloc(Math.max(0, size - f.pos));
    fs.readSync(f.fd, rest, 0, rest.length, f.pos);
    let end = rest.indexOf(0x0a);
    end = end < 0 ? rest.length : end + 1;
    if (limit >= 0) end = Math.min(end, limit);
    f.pos += end;
    return rest.subarray(0, end).toString("hex");
  }

  write(h, hex) {
    const f = this.handle(h);
    if (!f.writing) return -ERRNO.EBADF;
    const data = Buffer.from(hex, "hex");
    const size = this.files.get(f.rel) ?? 0;
    if (f.append) f.pos = size;
    const grown = Math.max(size, f.pos + data.length);
    if (this.used() + Flash.blocksOf(grown) - Flash.blocksOf(size) > this.blocks) {
      return -ERRNO.ENOSPC;
    }
    fs.writeSync(f.fd, data, 0, data.length, f.pos);
    f.pos += data.length;
    this.files.set(f.rel, grown);
    return data.length;
  }

  seek(h, offset, whence) {
    const f = this.handle(h);
    const base = [0, f.pos, this.files.get(f.rel) ?? 0][whence];
    if (base === undefined) return -ERRNO.EINVAL;
    f.pos = Math.max(0, base + offset);
    return f.pos;
  }

  close(h) {
    const f = this.handles.get(h);
    if (f !== undefined) {
      fs.closeSync(f.fd);
      this.handles.delete(h);
    }
    return 0;
  }
}

// -- Wi-Fi: the host's TCP sockets -------------------------------------------------------------

class Sockets {
  constructor() {
    this.socks = new Map();
    this.next = 1;
  }

  calls() {
    return {
      connect: (host, port) => this.connect(host, port),
      recv: (id, n) => this.recv(id, n),
      send: (id, hex) => this.send(id, hex),
      sclose: (id) => this.close(id),
    };
  }

  connect(host, port) {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port });
      const id = this.next++;
      const state = { s, data: [], ended: false, error: null, waiter: null };
      const wake = () => {
        if (state.waiter !== null) {
          const w = state.waiter;
          state.waiter = null;
          w();
        }
      };
      s.setNoDelay(true);
      s.once("connect", () => {
        this.socks.set(id, state);
        resolve(id);
      });
      s.on("data", (chunk) => {
        state.data.push(chunk);
        wake();
      });
      s.on("end", () => {
        state.ended = true;
        wake();
      });
      s.on("close", () => {
        state.ended = true;
        wake();
      });
      s.on("error", (e) => {
        state.error = e;
        if (!this.socks.has(id)) reject(e);
        wake();
      });
    });
  }

  recv(id, n) {
    const state = this.socks.get(id);
    return new Promise((resolve, reject) => {
      const serve = () => {
        if (state === undefined || (state.ended && state.data.length === 0)) {
          resolve("");
        } else if (state.data.length) {
          const all = Buffer.concat(state.data);
          const take = n < 0 ? all.length : Math.min(n, all.length);
          state.data = take < all.length ? [all.subarray(take)] : [];
          resolve(all.subarray(0, take).toString("hex"));
        } else if (state.error !== null) {
          reject(state.error);
        } else {
          state.waiter = serve;
        }
      };
      serve();
    });
  }

  send(id, hex) {
    const state = this.socks.get(id);
    if (state === undefined || state.ended || state.s.destroyed) return -1;
    state.s.write(Buffer.from(hex, "hex"));
    return 0;
  }

  close(id) {
    const state = this.socks.get(id);
    if (state === undefined) return 0;
    this.socks.delete(id);
    state.ended = true;
    state.s.destroy();
    if (state.waiter !== null) state.waiter();
    return 0;
  }
}
