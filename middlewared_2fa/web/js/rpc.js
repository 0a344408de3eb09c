// JSON-RPC 2.0 over one WebSocket (API.md §1, §2, §7).
//
// The endpoint is derived from the page's own location, so the browser sends the
// daemon's own origin and the Origin check passes; the CSP's connect-src 'self' allows
// nothing else. Requests carry numeric ids; replies are routed by id; notifications
// (`collection_update`) are re-dispatched as DOM events. Nothing here logs: requests
// carry passwords, codes and tokens.

/** The API URL for the page's origin: ws://HOST:PORT/api/current (wss on https). */
export function apiUrl(loc = window.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/api/current`;
}

/** A JSON-RPC error reply. `data` = {error, errname, reason, trace, extra}. */
export class RpcError extends Error {
  constructor(error) {
    const data = (error && typeof error.data === 'object' && error.data) || {};
    super(String(data.reason || (error && error.message) || 'Error'));
    this.name = 'RpcError';
    this.code = error ? error.code : null;
    this.data = data;
  }

  get errname() {
    return this.data.errname || null;
  }

  get errno() {
    return this.data.error ?? null;
  }

  /** Validation errors: [[attribute, message, errno], ...] (empty for other errors). */
  get extra() {
    return Array.isArray(this.data.extra) ? this.data.extra : [];
  }
}

/** The socket could not be opened, or closed before the reply arrived. */
export class ConnectionLost extends Error {
  constructor(message) {
    super(message);
    this.name = 'ConnectionLost';
  }
}

const CALL_TIMEOUT_MS = 90000;

export class RpcClient extends EventTarget {
  #url;
  #ws = null;
  #opening = null;
  #nextId = 1;
  #pending = new Map();

  constructor(url) {
    super();
    this.#url = url;
  }

  get connected() {
    return this.#ws !== null && this.#ws.readyState === WebSocket.OPEN;
  }

  /** Open the socket (or wait for the one being opened). Rejects with ConnectionLost. */
  open() {
    if (this.#opening) return this.#opening;
    this.#opening = new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.#url);
      } catch (err) {
        this.#opening = null;
        reject(new ConnectionLost('cannot connect'));
        return;
      }
      let opened = false;
      ws.addEventListener('open', () => {
        opened = true;
        this.#ws = ws;
        resolve();
      });
      ws.addEventListener('message', (event) => this.#receive(event.data));
      ws.addEventListener('close', (event) => {
        const current = this.#ws === ws || !opened;
        if (this.#ws === ws) this.#ws = null;
        if (current) this.#opening = null;
        this.#failPending(ws);
        if (!opened) {
          reject(new ConnectionLost('cannot connect'));
        } else if (!ws.closedOnPurpose) {
          this.dispatchEvent(new CustomEvent('lost', { detail: { code: event.code } }));
        }
      });
    });
    return this.#opening;
  }

  /** Close the socket on purpose (no `lost` event). Pending calls fail. */
  close() {
    const ws = this.#ws;
    this.#ws = null;
    this.#opening = null;
    if (ws) {
      ws.closedOnPurpose = true;
      this.#failPending(ws);
      ws.close(1000, 'bye');
    }
  }

  /**
   * Call `method` with positional `params`. Resolves with the result; rejects with
   * RpcError (error reply) or ConnectionLost.
   */
  async call(method, params = []) {
    await this.open();
    const ws = this.#ws;
    if (!ws) throw new ConnectionLost('connection closed');
    const id = this.#nextId;
    this.#nextId += 1;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new ConnectionLost('no answer from the server'));
      }, CALL_TIMEOUT_MS);
      this.#pending.set(id, { resolve, reject, timer, ws });
      try {
        ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
      } catch (err) {
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(new ConnectionLost('connection closed'));
      }
    });
  }

  #failPending(ws) {
    for (const [id, entry] of this.#pending) {
      if (entry.ws !== ws) continue;
      clearTimeout(entry.timer);
      this.#pending.delete(id);
      entry.reject(new ConnectionLost('connection closed'));
    }
  }

  #receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch (err) {
      return;
    }
    if (!message || typeof message !== 'object' || Array.isArray(message)) return;
    if (message.method === 'collection_update' && message.params) {
      this.dispatchEvent(new CustomEvent('collection_update', { detail: message.params }));
      return;
    }
    const entry = this.#pending.get(message.id);
    if (!entry) return;
    this.#pending.delete(message.id);
    clearTimeout(entry.timer);
    if ('error' in message) entry.reject(new RpcError(message.error));
    else entry.resolve(message.result);
  }
}
