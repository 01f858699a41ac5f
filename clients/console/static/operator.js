// The operator page: traces, quality, epochs, markers, baseline, protocol, session.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const traces = new Traces($("plots"));
  let state = null;
  let source = null;
  let windowS = 30;
  let consoleUp = false;
  // arrival times of the newest points (for bench/console.py): [seq, ms since epoch]
  window.nirsdArrivals = [];
  window.nirsdTraces = traces; // for benchmarks and debugging

  // -- messages to the operator ------------------------------------------------------
  function say(text, bad) {
    const m = $("message");
    Nirsd.put(m, text);
    Nirsd.cls(m, bad ? "message bad" : "message");
  }

  async function act(path, body, done) {
    const reply = await Nirsd.post(path, body);
    if (reply.ok) say(done(reply));
    else say(`Refused: ${reply.error}`, true);
    return reply;
  }

  // -- the stream --------------------------------------------------------------------
  function open() {
    if (source) source.close();
    source = Nirsd.connect(windowS, {
      snapshot: (snap) => {
        consoleUp = true;
        Nirsd.syncClock(snap.state.now);
        traces.setup(snap.info.channels || [], snap.info.labels || []);
        traces.clear();
        traces.append(snap.trace);
        render(snap.state);
      },
      info: (info) => traces.setup(info.channels || [], info.labels || []),
      hb: (pts, arrived) => {
        traces.append(pts);
        const a = window.nirsdArrivals;
        a.push([pts.seq[pts.seq.length - 1], arrived]);
        if (a.length > 5000) a.splice(0, a.length - 5000);
      },
      state: (s) => {
        consoleUp = true;
        Nirsd.syncClock(s.now);
        render(s);
      },
      error: () => {
        consoleUp = false;
        renderDaemon();
      },
    });
  }

  // -- rendering the state -----------------------------------------------------------
  function render(s) {
    const first = state === null;
    state = s;
    if (first || s.labels.join() !== (render.labels || "")) buildMarkers(s.labels);
    if (first || s.protocols.join() !== (render.protocols || "")) buildProtocols(s.protocols);
    render.labels = s.labels.join();
    render.protocols = s.protocols.join();
    renderDaemon();
    Nirsd.put($("rate"), s.rate);
    traces.annotate(s.quality);
    renderEpoch();
    renderProtocol();
    renderSession();
    renderSummary(s.last_epoch);
    renderLegend(s.labels);
  }

  function renderDaemon() {
    const pill = $("daemon-state");
    const banner = $("outage");
    if (!consoleUp) {
      Nirsd.put(pill, "console unreachable");
      Nirsd.cls(pill, "pill pill-bad");
      banner.hidden = false;
      Nirsd.put(banner, "The console server does not answer. Reconnecting by itself…");
      return;
    }
    if (!state || !state.connected) {
      const since = state && state.outage_since;
      Nirsd.put(pill, "daemon unreachable");
      Nirsd.cls(pill, "pill pill-bad");
      banner.hidden = false;
      Nirsd.put(banner, "The daemon does not answer" +
        (since ? ` since ${Nirsd.clock(since)} (${Nirsd.duration(Nirsd.now() - since)})` : "") +
        ". No data is being recorded by it. Reconnecting by itself…");
      return;
    }
    banner.hidden = true;
    const ds = state.daemon_state || "?";
    Nirsd.put(pill, `daemon ${ds}` + (state.restarts ? ` · restarted ${state.restarts}×` : ""));
    Nirsd.cls(pill, ds === "streaming" ? "pill pill-ok" : "pill pill-wait");
  }

  function buildMarkers(labels) {
    const box = $("marker-buttons");
    box.replaceChildren();
    for (const label of labels) {
      const start = Nirsd.el("button", {
        type: "button", id: `mark-start-${label}`, class: "mark-start",
        "data-label": label, text: `Start ${label}`,
        onclick: () => act("/api/mark", {label, action: "start"},
          (r) => `Marked the start of ${label} at sample ${r.seq}.`),
      });
      const end = Nirsd.el("button", {
        type: "button", id: `mark-end-${label}`, class: "mark-end secondary",
        "data-label": label, text: `End ${label}`,
        onclick: () => act("/api/mark", {label, action: "end"},
          (r) => `Marked the end of ${label} at sample ${r.seq}.`),
      });
      const rgb = Nirsd.epochColour(label, labels);
      start.style.borderLeft = `6px solid ${Nirsd.rgba(rgb, 1)}`;
      box.append(Nirsd.el("div", {class: "row"}, start, end));
    }
  }

  function openEpoch() {
    const e = state && state.epoch;
    return e && e.label ? e : null;
  }

  function renderEpoch() {
    const e = openEpoch();
    Nirsd.put($("epoch-open"), e
      ? `Open: ${e.label}, ${Nirsd.duration(Nirsd.now() - e.onset_t)}`
      : "No epoch open.");
    for (const label of (state ? state.labels : [])) {
      const start = $(`mark-start-${label}`);
      const end = $(`mark-end-${label}`);
      if (!start || !end) continue;
      Nirsd.put(start, e && e.label !== label ? `Start ${label} (ends ${e.label})` : `Start ${label}`);
      start.disabled = !state.connected || (e && e.label === label);
      end.disabled = !state.connected || !(e && e.label === label);
    }
    $("baseline").disabled = !state || !state.connected;
  }

  function buildProtocols(names) {
    const sel = $("protocol-name");
    const sessionSel = $("session-protocol");
    sel.replaceChildren(...names.map((n) => Nirsd.el("option", {value: n, text: n})));
    sessionSel.replaceChildren(Nirsd.el("option", {value: "", text: "none"}),
      ...names.map((n) => Nirsd.el("option", {value: n, text: n})));
    if (!names.length) sel.append(Nirsd.el("option", {value: "", text: "none configured"}));
  }

  function renderProtocol() {
    const p = state && state.protocol;
    const line = $("protocol-step");
    if (!p) {
      Nirsd.put(line, "No protocol running.");
    } else {
      const left = Math.max(0, p.step_end_t - Nirsd.now());
      const next = p.next ? ` Next: ${p.next.label} (${Nirsd.duration(p.next.seconds)}).` : " Last step.";
      Nirsd.put(line, `${p.name}, step ${p.step + 1} of ${p.steps}: ${p.label}, ` +
        `${Math.ceil(left)} s left.${next}`);
    }
    $("protocol-start").disabled = !!p || !state.connected || !state.protocols.length;
    $("protocol-stop").disabled = !p;
  }

  function renderSession() {
    const s = state.session;
    const form = $("session-form");
    const supported = state.sessions_supported !== false;
    const who = (x) => `${x.subject || "?"} / ${x.session || "?"}` +
      (x.group ? `, group ${x.group}` : "") + (x.task ? `, task ${x.task}` : "") +
      (x.run ? `, run ${x.run}` : "");
    let text = "No session.";
    if (!supported) {
      text = "This daemon does not support sessions (it answered “unknown command”); " +
        "update nirsd to start sessions from here.";
    } else if (s && s.session_id) {
      const what = s.state === "starting" ? "Starting" : s.state === "ending" ? "Ending" : "Running";
      text = `${what}: ${who(s)}` + (s.protocol ? `, protocol ${s.protocol}` : "") +
        (s.t ? `, since ${Nirsd.clock(s.t)} (${Nirsd.duration(Nirsd.now() - s.t)})` : "") +
        `. Session id ${s.session_id}, from sample ${s.seq ?? "?"}.`;
    } else if (state.last_session && state.last_session.session_id) {
      const l = state.last_session;
      text = `No session. The last: ${who(l)}, samples ${l.seq ?? "?"}–${l.end_seq ?? "?"}` +
        (l.reason ? ` (${l.reason})` : "") + ".";
    }
    Nirsd.put($("session-now"), text);
    const running = !!(s && s.session_id);
    for (const input of form.querySelectorAll("input, select")) input.disabled = running || !supported;
    $("session-start").disabled = running || !supported || !state.connected;
    $("session-stop").disabled = !running || s.state === "ending";
  }

  function renderSummary(e) {
    const table = $("summary");
    if (!e || !e.channels) return;
    const key = `${e.start_id}/${e.end_id}/${e.onset_seq}`;
    if (renderSummary.key === key) return; // re-rendered only when another epoch ends
    renderSummary.key = key;
    const cap = `${e.label}, ${Number(e.duration_s || 0).toFixed(1)} s from ${Nirsd.clock(e.onset_t)}; ` +
      `change from the mean of the ${Number(e.baseline_s || 0).toFixed(0)} s before (µM)`;
    Nirsd.put($("summary-caption"), cap);
    const fmt = (v) => (v === null || v === undefined ? "–" : (v >= 0 ? "+" : "") + Number(v).toFixed(2));
    const head = Nirsd.el("tr", {}, ...["Channel", "mean ΔHbO", "mean ΔHbR", "mean ΔHbT",
      "peak ΔHbO", "peak ΔHbR"].map((h) => Nirsd.el("th", {text: h})));
    const rows = e.channels.map((ch, i) => Nirsd.el("tr", {},
      Nirsd.el("th", {text: ch}),
      ...[e.mean_hbo, e.mean_hbr, e.mean_hbt, e.peak_hbo, e.peak_hbr].map(
        (col) => Nirsd.el("td", {text: fmt(col && col[i])}))));
    table.replaceChildren(Nirsd.el("thead", {}, head), Nirsd.el("tbody", {}, ...rows));
  }

  function renderLegend(labels) {
    const box = $("epoch-legend");
    if (box.dataset.labels === labels.join()) return;
    box.dataset.labels = labels.join();
    box.replaceChildren(...labels.map((l) => {
      const key = Nirsd.el("span", {class: "key epoch", text: l});
      key.style.background = Nirsd.rgba(Nirsd.epochColour(l, labels), 0.25);
      return key;
    }));
  }

  // -- controls ----------------------------------------------------------------------
  function segmented(attr, current, apply) {
    const buttons = document.querySelectorAll(`button[data-${attr}]`);
    const mark = (v) => buttons.forEach((b) => b.classList.toggle("on", Number(b.dataset[attr]) === v));
    buttons.forEach((b) => b.addEventListener("click", () => {
      const v = Number(b.dataset[attr]);
      mark(v);
      apply(v);
    }));
    mark(current);
  }

  segmented("window", windowS, (v) => {
    const longer = v > windowS;
    windowS = v;
    traces.setWindow(v);
    if (longer) open(); // a longer window needs more history than the page holds
  });
  segmented("scale", traces.scale, (v) => traces.setScale(v));

  $("baseline").addEventListener("click", () => $("baseline-dialog").showModal());
  $("baseline-dialog").addEventListener("close", () => {
    if ($("baseline-dialog").returnValue !== "confirm") return;
    act("/api/baseline", {}, (r) =>
      `Baseline re-taken from sample ${r.seq} over ${Number(r.seconds).toFixed(0)} s.`);
  });

  $("protocol-start").addEventListener("click", () => {
    const name = $("protocol-name").value;
    act("/api/protocol/start", {name}, () => `Protocol ${name} started.`);
  });
  $("protocol-stop").addEventListener("click", () =>
    act("/api/protocol/stop", {}, () => "Protocol stopped."));

  $("session-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body = Object.fromEntries(new FormData(ev.target).entries());
    act("/api/session/start", body,
      (r) => `Session ${r.session_id} started at sample ${r.seq}.`);
  });
  $("session-stop").addEventListener("click", () =>
    act("/api/session/stop", {}, (r) => `Session stopped at sample ${r.end_seq}.`));

  window.addEventListener("resize", () => traces.resize());
  setInterval(() => {
    if (state) {
      renderDaemon();
      renderEpoch();
      renderProtocol();
      renderSession();
    }
    traces.draw();
  }, 250);
  open();
})();
