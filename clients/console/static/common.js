// Shared by both pages: the live stream, the API, the server clock, label colours.
"use strict";

const Nirsd = (() => {
  const EPOCH_COLOURS = {
    extension: [230, 126, 34],
    flexion: [142, 68, 173],
    rest: [127, 140, 141],
  };
  const SPARE_COLOURS = [[22, 160, 133], [192, 57, 43], [41, 128, 185], [211, 84, 0]];
  let offset = 0; // server clock minus this browser's clock, seconds

  function epochColour(label, labels) {
    if (EPOCH_COLOURS[label]) return EPOCH_COLOURS[label];
    const i = Math.max(0, (labels || []).indexOf(label));
    return SPARE_COLOURS[i % SPARE_COLOURS.length];
  }

  function rgba(rgb, a) {
    return `rgba(${rgb[0]},${rgb[1]},${rgb[2]},${a})`;
  }

  // the server's "now" in Unix seconds, from the offset seen in its last state
  function now() {
    return Date.now() / 1000 + offset;
  }

  function syncClock(serverNow) {
    if (typeof serverNow === "number") offset = serverNow - Date.now() / 1000;
  }

  async function post(path, body) {
    const resp = await fetch(path, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body || {}),
      credentials: "same-origin",
    });
    let reply;
    try {
      reply = await resp.json();
    } catch (e) {
      reply = {ok: false, error: `${resp.status} ${resp.statusText}`};
    }
    if (!resp.ok && reply.ok !== false) reply = {ok: false, error: `${resp.status}`};
    return reply;
  }

  // One EventSource; handlers by event name.  Reopened with another window on demand.
  function connect(seconds, handlers, extra) {
    const url = `/api/stream?seconds=${encodeURIComponent(seconds)}${extra ? "&" + extra : ""}`;
    const source = new EventSource(url, {withCredentials: true});
    for (const [name, fn] of Object.entries(handlers)) {
      if (name === "open" || name === "error") continue;
      source.addEventListener(name, (ev) => {
        const arrived = performance.timeOrigin + performance.now();
        fn(JSON.parse(ev.data), arrived);
      });
    }
    source.onopen = () => handlers.open && handlers.open();
    source.onerror = () => handlers.error && handlers.error();
    return source;
  }

  function clock(t) {
    if (!t) return "?";
    return new Date(t * 1000).toLocaleTimeString([], {hour12: false});
  }

  function duration(s) {
    if (s === null || s === undefined || !isFinite(s)) return "";
    s = Math.max(0, Math.floor(s));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    return m < 60 ? `${m} min ${s % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  // write to the page only what changed: an unchanged text or class costs no layout
  function put(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function cls(node, name) {
    if (node.className !== name) node.className = name;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  return {epochColour, rgba, now, syncClock, post, connect, clock, duration, el, put, cls};
})();
