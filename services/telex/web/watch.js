// The viewer's watch terms: kept in this browser (localStorage), highlighted on the wire, and
// optionally announced with a sound or a desktop notification.
import { termPattern } from "./dom.js";
import { parseList } from "./filters.js";

const KEY = "telex.watch";
const QUIET_MS = 4000; // at most one sound/notification this often

export class Watch {
  constructor() {
    this.terms = [];
    this.sound = false;
    this.notify = false;
    this.lastAlert = 0;
    this.audio = null;
    try {
      const saved = JSON.parse(localStorage.getItem(KEY) || "{}");
      this.terms = Array.isArray(saved.terms) ? parseList(saved.terms.join(",")) : [];
      this.sound = Boolean(saved.sound);
      this.notify = Boolean(saved.notify);
    } catch {
      // storage blocked or garbled: start with no watch terms
    }
    this.pattern = termPattern(this.terms);
  }

  save(terms, sound, notify) {
    this.terms = parseList(terms);
    this.sound = sound;
    this.notify = notify;
    this.pattern = termPattern(this.terms);
    try {
      localStorage.setItem(KEY, JSON.stringify({ terms: this.terms, sound, notify }));
    } catch {
      // private mode: the terms last for this page only
    }
  }

  /** Ask for permission to notify (must follow a user gesture). Resolves to a note or "". */
  async permit() {
    if (!this.notify) return "";
    if (!("Notification" in window)) return "This browser cannot show desktop notifications.";
    if (Notification.permission === "granted") return "";
    if (Notification.permission === "denied") return "Notifications are blocked for this site in the browser's settings.";
    const answer = await Notification.requestPermission();
    return answer === "granted" ? "" : "Notifications were not allowed.";
  }

  /** A watched update arrived live: beep and/or notify, at most once every few seconds. */
  alert(data, matched) {
    const now = Date.now();
    if (now - this.lastAlert < QUIET_MS) return;
    this.lastAlert = now;
    if (this.sound) this.beep();
    if (this.notify && "Notification" in window && Notification.permission === "granted") {
      const body = (data.title || data.text || "").replace(/\s+/g, " ").slice(0, 180);
      try {
        const n = new Notification(`telex · ${matched.join(", ")} · ${data.source_id}`, { body, tag: data.id });
        n.onclick = () => {
          window.focus();
          document.querySelector(`.card[data-id="${CSS.escape(data.id)}"]`)?.focus();
        };
      } catch {
        // some browsers only notify from a service worker: the highlight remains
      }
    }
  }

  beep() {
    try {
      this.audio ||= new AudioContext();
      const ctx = this.audio;
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, ctx.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.15, ctx.currentTime + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 0.35);
      osc.connect(gain).connect(ctx.destination);
      osc.start();
      osc.stop(ctx.currentTime + 0.4);
    } catch {
      // no audio output: the highlight remains
    }
  }
}
