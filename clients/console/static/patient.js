// The patient screen: the current instruction, a countdown, the next step, a beep at
// each step change (muted with the button; browsers allow sound only after a click).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  let state = null;
  let connected = false;
  let muted = localStorage.getItem("nirsd-muted") === "1";
  let audio = null;
  let lastStep = null;
  window.nirsdBeeps = 0; // step changes announced (for tests)

  function ensureAudio() {
    if (!audio) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (Ctx) audio = new Ctx();
    }
    if (audio && audio.state === "suspended") audio.resume();
  }

  // two short tones: a rising pair to start, one lower tone for rest
  function beep(rest) {
    window.nirsdBeeps += 1;
    if (muted || !audio || audio.state !== "running") return;
    const tones = rest ? [523] : [660, 880];
    tones.forEach((f, i) => {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      const t0 = audio.currentTime + i * 0.22;
      osc.frequency.value = f;
      gain.gain.setValueAtTime(0.0001, t0);
      gain.gain.exponentialRampToValueAtTime(0.4, t0 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + 0.2);
      osc.connect(gain).connect(audio.destination);
      osc.start(t0);
      osc.stop(t0 + 0.21);
    });
  }

  function renderMute() {
    const b = $("mute");
    const blocked = !muted && (!audio || audio.state !== "running");
    b.textContent = muted ? "Sound off" : blocked ? "Click to allow sound" : "Sound on";
    b.classList.toggle("off", muted || blocked);
  }

  $("mute").addEventListener("click", () => {
    if (!audio || audio.state !== "running") {
      muted = false;
      ensureAudio();
    } else {
      muted = !muted;
    }
    localStorage.setItem("nirsd-muted", muted ? "1" : "0");
    setTimeout(renderMute, 100);
  });
  document.body.addEventListener("click", (ev) => {
    if (ev.target.id !== "mute") ensureAudio();
  });

  function colour(label) {
    return label ? Nirsd.rgba(Nirsd.epochColour(label, state ? state.labels : []), 1) : "";
  }

  function render() {
    const body = document.body;
    const p = state && state.protocol;
    const e = state && state.epoch;
    let text = "WAIT", count = "", unit = "", next = "", label = null;
    if (p) {
      label = p.label;
      text = p.label.toUpperCase();
      count = String(Math.max(0, Math.ceil(p.step_end_t - Nirsd.now())));
      unit = "seconds";
      next = p.next ? `Next: ${p.next.label.toUpperCase()} (${Math.round(p.next.seconds)} s)` : "Last step";
      const key = `${p.name}/${p.step}/${p.step_start_t}`;
      if (lastStep !== null && key !== lastStep) beep(p.label === "rest");
      lastStep = key;
    } else {
      if (lastStep !== null) beep(true);
      lastStep = null;
      if (e && e.label) {
        label = e.label;
        text = e.label.toUpperCase();
        count = String(Math.floor(Math.max(0, Nirsd.now() - e.onset_t)));
        unit = "seconds so far";
      }
    }
    $("instruction").textContent = text;
    $("instruction").style.color = colour(label);
    $("countdown").textContent = count;
    $("countdown-unit").textContent = unit;
    $("next").textContent = next;
    body.classList.toggle("idle", !label);
    $("link").textContent = !connected ? "connection to the console lost: reconnecting…"
      : state && !state.connected ? "paused: the daemon does not answer" : "";
    renderMute();
  }

  Nirsd.connect(0, {
    snapshot: (snap) => {
      connected = true;
      Nirsd.syncClock(snap.state.now);
      state = snap.state;
      render();
    },
    state: (s) => {
      connected = true;
      Nirsd.syncClock(s.now);
      state = s;
      render();
    },
    error: () => {
      connected = false;
      render();
    },
  }, "samples=0");
  setInterval(render, 200);
  render();
})();
