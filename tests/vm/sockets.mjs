// The host's TCP sockets for a program on MicroPython's WebAssembly VM: the calls that
// host/kiosk_host/sim/hardware/hostnet.py makes (connect, recv, send, sclose), registered as
// `kioskhost`, as serial_kiosk.mjs does for the serial kiosk. `hold(true)` keeps what the
// peers send in the simulated network until `hold(false)`: a slow network, so that a test can
// see the kiosk with its whole window of events in flight.
import net from "node:net";

export function hostSockets() {
  const socks = new Map();
  let next = 1;
  let held = false;

  function connect(host, port) {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port });
      const id = next++;
      const st = { s, data: [], ended: false, error: null, waiter: null };
      const wake = () => {
        if (st.waiter !== null && !held) {
          const w = st.waiter;
          st.waiter = null;
          w();
        }
      };
      st.wake = wake;
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
    });
  }

  function recv(id, n) {
    const st = socks.get(id);
    return new Promise((resolve, reject) => {
      const serve = () => {
        if (st === undefined) {
          resolve("");
        } else if (held) {
          st.waiter = serve;
        } else if (st.data.length) {
          const all = Buffer.concat(st.data);
          const take = n < 0 ? all.length : Math.min(n, all.length);
          st.data = take < all.length ? [all.subarray(take)] : [];
          resolve(all.subarray(0, take).toString("hex"));
        } else if (st.error !== null) {
          reject(st.error);
        } else if (st.ended) {
          resolve("");
        } else {
          st.waiter = serve;
        }
      };
      serve();
    });
  }

  function send(id, hex) {
    const st = socks.get(id);
    if (st === undefined || st.ended || st.s.destroyed) return -1;
    st.s.write(Buffer.from(hex, "hex"));
    return 0;
  }

  function sclose(id) {
    const st = socks.get(id);
    if (st === undefined) return 0;
    socks.delete(id);
    st.ended = true;
    st.s.destroy();
    if (st.waiter !== null) {
      const w = st.waiter;
      st.waiter = null;
      w();
    }
    return 0;
  }

  // The same sockets, polled: no promise per read. This port keeps about 90 bytes of its
  // own heap for every JS promise a task awaits (the proxies of its callbacks), which would
  // pass for a leak of the firmware in a heap measurement; the polled calls keep none.
  function open(host, port) {
    const s = net.connect({ host, port });
    const id = next++;
    const st = { s, data: [], ended: false, error: null, waiter: null, open: false };
    st.wake = () => {};
    s.setNoDelay(true);
    socks.set(id, st);
    s.once("connect", () => {
      st.open = true;
    });
    s.on("data", (c) => st.data.push(c));
    s.on("end", () => {
      st.ended = true;
    });
    s.on("close", () => {
      st.ended = true;
    });
    s.on("error", (e) => {
      st.error = e;
    });
    return id;
  }

  // 0 connecting, 1 open, 2 ended, 3 failed
  function status(id) {
    const st = socks.get(id);
    if (st === undefined) return 2;
    if (st.error !== null) return 3;
    if (st.data.length && !held) return 1;
    if (st.ended) return 2;
    return st.open ? 1 : 0;
  }

  // Up to n bytes (all when n < 0) that have come in, as hex; "" when none has (or held).
  function take(id, n) {
    const st = socks.get(id);
    if (st === undefined || held || !st.data.length) return "";
    const all = Buffer.concat(st.data);
    const k = n < 0 ? all.length : Math.min(n, all.length);
    st.data = k < all.length ? [all.subarray(k)] : [];
    return all.subarray(0, k).toString("hex");
  }

  function hold(on) {
    held = Boolean(on);
    if (!held) for (const st of socks.values()) st.wake();
    return 0;
  }

  return {
    calls: { connect, recv, send, sclose, hold, open, status, take },
    closeAll: () => {
      for (const st of socks.values()) st.s.destroy();
    },
  };
}
