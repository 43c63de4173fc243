// The connection to the gateway's /v1/stream: one WebSocket at a time, reconnected with
// back-off, resumed from the last cursor so that nothing is missed and nothing repeated.
//
// Phases of the events handed to `onEvent`:
//   "backlog" recent matches sent on a fresh subscription (until our ping's pong comes back);
//   "replay"  events missed while disconnected (until the gateway's `live` frame);
//   "live"    everything after that.
import { toParams } from "./filters.js";

export const BACKLOG = 100;
const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;
const STABLE_MS = 5000; // a connection open this long resets the back-off

const CLOSE_REASONS = {
  1000: "closed",
  1001: "the gateway went away",
  1006: "connection lost",
  1008: "the gateway refused the request",
  1009: "a message was too large",
  1011: "the gateway stopped answering",
  1012: "the gateway is restarting",
  4000: "idle",
  4008: "this browser fell behind",
};

const REFUSALS = new Set(["bad_filter", "forbidden", "bad_request"]);

export class Stream {
  /**
   * `handlers`: onEvent(event, {phase, cursor}), onState(state, detail), onResync(reason),
   * onSubscribed(filter), onError(frame). States: "connecting", "loading", "catching-up",
   * "live", "reconnecting", "offline".
   */
  constructor(filter, handlers) {
    this.filter = filter;
    this.h = handlers;
    this.cursor = null;
    this.ws = null;
    this.phase = "backlog";
    this.attempt = 0;
    this.timer = null;
    this.openedAt = 0;
    this.switching = false;
    this.connections = 0;
    this.refused = null;
    this.token = null;
  }

  start() {
    window.addEventListener("online", () => this.retryNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && this.timer) this.retryNow();
    });
    this.connect();
  }

  url() {
    const params = toParams(this.filter);
    // Browsers cannot set headers on a WebSocket: the gateway takes the credential as ?token=.
    if (this.token) params.set("token", this.token);
    // With a cursor the gateway replays what we missed, then says `live`; without one it
    // sends recent matches (the backlog) and goes live in the same step.
    if (this.cursor) params.set("cursor", this.cursor);
    else params.set("backlog", String(BACKLOG));
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    return `${proto}//${location.host}/v1/stream?${params}`;
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.switching) {
      // The connection dropped while changing view: start the new view afresh.
      this.switching = false;
      this.cursor = null;
      this.h.onSubscribed(this.filter);
    }
    const resuming = Boolean(this.cursor);
    this.phase = resuming ? "replay" : "backlog";
    this.h.onState(this.connections ? "reconnecting" : "connecting", { attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (err) {
      this.scheduleReconnect(1006);
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.connections += 1;
      this.openedAt = Date.now();
      if (resuming) {
        this.h.onState("catching-up", {});
      } else {
        this.h.onState("loading", {});
        // The query's subscription (and its backlog) is served before any message we send:
        // the pong marks the end of the backlog.
        ws.send(JSON.stringify({ op: "ping" }));
      }
    };
    ws.onmessage = (msg) => this.receive(ws, msg.data);
    ws.onclose = async (ev) => {
      if (this.ws !== ws) return; // replaced on purpose
      this.ws = null;
      const opened = this.openedAt;
      if (opened && Date.now() - opened > STABLE_MS) this.attempt = 0;
      this.openedAt = 0;
      if (!opened && this.h.refusedAccess && (await this.h.refusedAccess())) {
        // The handshake was answered 401: retrying without a credential cannot help.
        if (!this.ws) this.h.onState("unauthorized", {});
        return;
      }
      if (this.ws) return; // reconnected meanwhile ("Retry now")
      this.scheduleReconnect(ev.code);
    };
  }

  receive(ws, text) {
    if (this.ws !== ws) return;
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return; // not ours to interpret: the gateway only sends JSON
    }
    switch (frame.type) {
      case "event":
        this.cursor = frame.cursor;
        if (this.switching) return; // the old filter's last events, before `subscribed`
        this.h.onEvent(frame.event, { phase: this.phase, cursor: frame.cursor });
        break;
      case "live":
        this.cursor = frame.cursor;
        this.goLive({ resumed: true, replayed: frame.replayed });
        break;
      case "pong":
        if (this.phase !== "live" && !this.switching) {
          this.cursor = frame.cursor;
          this.goLive({ resumed: false });
        }
        break;
      case "heartbeat":
        // The connection's position: a filtered view resumes from here, not from its last match.
        if (this.phase === "live") this.cursor = frame.cursor;
        break;
      case "resync":
        this.cursor = frame.cursor;
        this.goLive({ resumed: false, resync: true });
        this.h.onResync(frame.reason);
        break;
      case "subscribed":
        if (this.switching) {
          this.switching = false;
          this.phase = "backlog";
          this.h.onSubscribed(frame.filter);
          ws.send(JSON.stringify({ op: "ping" }));
        }
        break;
      case "error":
        // A view the gateway refuses is not retried until the viewer changes it.
        if (REFUSALS.has(frame.code)) this.refused = frame.error;
        this.h.onError(frame);
        break;
      default:
        break;
    }
  }

  goLive(detail) {
    this.phase = "live";
    this.h.onState("live", detail);
  }

  scheduleReconnect(code) {
    const reason = CLOSE_REASONS[code] || `closed (${code})`;
    if (this.refused) {
      this.h.onState("refused", { reason: this.refused });
      return;
    }
    let delay;
    if (code === 1012 && this.attempt === 0) {
      // A restart: come back soon, spread out so that every client does not land at once.
      delay = 250 + Math.random() * 1000;
    } else {
      const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.attempt);
      delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    }
    this.attempt += 1;
    const offline = navigator.onLine === false;
    this.h.onState(offline ? "offline" : "reconnecting", {
      reason,
      code,
      retryAt: Date.now() + delay,
      attempt: this.attempt,
    });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Reconnect at once (a button, the browser coming back online). */
  retryNow() {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return;
    this.refused = null;
    this.connect();
  }

  /**
   * Show another filter: replace the connection's subscription. The view starts afresh with
   * the new filter's backlog (so its cursor is dropped).
   */
  setFilter(filter) {
    this.filter = filter;
    this.refused = null;
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      this.switching = true;
      this.phase = "backlog";
      // Without a cursor, a subscribe on a connection that has none sends the backlog; drop
      // the current one first so that it has none.
      ws.send(JSON.stringify({ op: "unsubscribe", id: "default" }));
      ws.send(JSON.stringify({ op: "subscribe", id: "default", filter, backlog: BACKLOG }));
      this.h.onState("loading", {});
    } else {
      this.cursor = null;
      if (ws) {
        this.ws = null;
        ws.close();
      }
      this.h.onSubscribed(filter);
      this.connect();
    }
  }
}
