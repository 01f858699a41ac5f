// The operator page's traces: one uPlot per channel, a fixed µM scale, epochs shaded.
"use strict";

class Traces {
  constructor(container) {
    this.container = container;
    this.window = 30; // seconds shown
    this.scale = 5; // ± µM
    this.labels = []; // epoch vocabulary
    this.channels = [];
    this.charts = [];
    this.cards = [];
    this.clear();
    this.dirty = false;
    this.visible = new Set(); // charts on screen: only those are redrawn
    this.observer = new IntersectionObserver((entries) => {
      for (const e of entries) {
        const c = Number(e.target.dataset.channel);
        if (e.isIntersecting) {
          this.visible.add(c);
          if (this.charts[c]) this.charts[c].setData(this.data(c), true);
        } else {
          this.visible.delete(c);
        }
      }
    });
  }

  clear() {
    this.t = [];
    this.ep = [];
    this.hb = []; // per channel: [hbo[], hbr[], hbt[]]
    for (let c = 0; c < this.channels.length; c++) this.hb.push([[], [], []]);
    this.lastT = null;
  }

  setup(channels, labels) {
    const same = channels.length === this.channels.length &&
      channels.every((c, i) => c === this.channels[i]);
    this.labels = labels || [];
    if (same && this.charts.length) return;
    for (const u of this.charts) u.destroy();
    this.observer.disconnect();
    this.visible.clear();
    this.container.replaceChildren();
    this.channels = channels.slice();
    this.charts = [];
    this.cards = [];
    this.clear();
    const width = this.chartWidth();
    channels.forEach((name, i) => {
      const badge = Nirsd.el("span", {class: "badge nodata", text: "no data"});
      const values = Nirsd.el("span", {class: "values", text: ""});
      const off = Nirsd.el("span", {class: "offscale", text: ""});
      const head = Nirsd.el("div", {class: "card-head"},
        Nirsd.el("span", {class: "chan", text: name}), badge, off, values);
      const plot = Nirsd.el("div", {class: "chart", "data-channel": String(i)});
      const card = Nirsd.el("div", {class: "card"}, head, plot);
      this.container.append(card);
      this.cards.push({badge, values, off});
      this.charts.push(new uPlot(this.options(width), this.data(i), plot));
      this.observer.observe(plot);
    });
  }

  columns() {
    const n = this.channels.length;
    return n <= 1 ? 1 : n <= 4 ? 2 : n <= 9 ? 3 : 4;
  }

  // as tall as the screen allows for the rows needed, within readable bounds
  chartHeight() {
    const rows = Math.ceil(this.channels.length / this.columns());
    const top = this.container.getBoundingClientRect().top + window.scrollY;
    const room = window.innerHeight - top - 170; // leave the summary's caption in view
    return Math.round(Math.min(260, Math.max(110, room / rows - 40)));
  }

  chartWidth() {
    const cols = this.columns();
    this.container.style.gridTemplateColumns = `repeat(${cols}, minmax(0, 1fr))`;
    const gap = 8;
    const w = this.container.clientWidth || 800;
    return Math.max(200, Math.floor((w - gap * (cols - 1)) / cols) - 18);
  }

  options(width) {
    const self = this;
    return {
      width, height: this.chartHeight(),
      legend: {show: false},
      cursor: {show: false},
      scales: {
        x: {time: true, auto: false, range: () => [Nirsd.now() - self.window, Nirsd.now()]},
        y: {auto: false, range: () => [-self.scale, self.scale]},
      },
      axes: [
        // time before now, on grid lines that stay put while the traces scroll
        {size: 24, font: "11px system-ui", ticks: {size: 4},
         splits: () => self.timeSplits(),
         values: (u, splits) => splits.map((v) => self.ago(v))},
        {size: 46, font: "11px system-ui", label: "µM", labelSize: 14,
         labelFont: "11px system-ui", splits: () => [-self.scale, -self.scale / 2, 0,
           self.scale / 2, self.scale]},
      ],
      series: [
        {},
        {stroke: "#d62728", width: 1.5, spanGaps: false},
        {stroke: "#1f63b4", width: 1.5, spanGaps: false},
        {stroke: "#2ca02c", width: 1, dash: [4, 3], spanGaps: false},
      ],
      hooks: {drawClear: [(u) => self.shade(u)]},
    };
  }

  // the finest step whose labels (about 55 px each) fit the plot's width
  tickStep() {
    const width = (this.charts[0] && this.charts[0].bbox.width / devicePixelRatio) || 400;
    const fits = Math.max(2, Math.floor(width / 55));
    const steps = [5, 10, 15, 30, 60, 120, 300];
    return steps.find((s) => this.window / s <= fits) || 600;
  }

  timeSplits() {
    const now = Nirsd.now(), step = this.tickStep(), out = [];
    for (let k = Math.floor(this.window / step); k >= 0; k--) out.push(now - k * step);
    return out;
  }

  ago(v) {
    const s = Math.round(Nirsd.now() - v);
    if (s <= 0) return "now";
    return s < 120 ? `−${s} s` : `−${Math.round(s / 60)} min`;
  }

  data(c) {
    const h = this.hb[c] || [[], [], []];
    return [this.t, h[0], h[1], h[2]];
  }

  // epochs as shaded spans behind the traces, with their label at the top
  shade(u) {
    const {ctx} = u;
    const {left, top, width, height} = u.bbox;
    let i = 0;
    ctx.save();
    ctx.font = `${Math.round(11 * devicePixelRatio)}px system-ui`;
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    while (i < this.t.length) {
      const e = this.ep[i];
      let j = i;
      while (j + 1 < this.t.length && this.ep[j + 1] === e) j++;
      if (e !== null && e >= 0) {
        const x0 = Math.max(left, u.valToPos(this.t[i], "x", true));
        const x1 = Math.min(left + width, u.valToPos(this.t[j], "x", true));
        if (x1 > x0) {
          const rgb = Nirsd.epochColour(this.labels[e], this.labels);
          ctx.fillStyle = Nirsd.rgba(rgb, 0.18);
          ctx.fillRect(x0, top, x1 - x0, height);
          if (x1 - x0 > 40 * devicePixelRatio) {
            ctx.fillStyle = Nirsd.rgba(rgb, 0.9);
            ctx.fillText(this.labels[e] || "", x0 + 3 * devicePixelRatio, top + 2 * devicePixelRatio);
          }
        }
      }
      i = j + 1;
    }
    ctx.restore();
  }

  // a snapshot or an hb event: columnar, channel-major
  append(pts) {
    if (!pts || !pts.t || !pts.t.length) return;
    const n = pts.t.length;
    const gap = 3 * this.pointSpacing(pts);
    for (let k = 0; k < n; k++) {
      const t = pts.t[k];
      if (this.lastT !== null && t <= this.lastT) continue; // never draw backwards
      if (this.lastT !== null && t - this.lastT > gap) this.pushPoint(this.lastT + gap / 3, null);
      this.pushPoint(t, pts.ep[k], pts, k);
      this.lastT = t;
    }
    this.trim();
    this.dirty = true;
  }

  pointSpacing(pts) {
    if (pts.t.length > 1) return Math.max(0.02, (pts.t[pts.t.length - 1] - pts.t[0]) / (pts.t.length - 1));
    return this.spacing || 0.1;
  }

  pushPoint(t, ep, pts, k) {
    this.t.push(t);
    this.ep.push(ep === undefined ? null : ep);
    for (let c = 0; c < this.hb.length; c++) {
      const h = this.hb[c];
      h[0].push(pts ? pts.hbo[c][k] : null);
      h[1].push(pts ? pts.hbr[c][k] : null);
      h[2].push(pts ? pts.hbt[c][k] : null);
    }
    if (pts && this.t.length > 1) this.spacing = t - this.t[this.t.length - 2];
  }

  trim() {
    const keep = Nirsd.now() - 600 - 5;
    let drop = 0;
    while (drop < this.t.length && this.t[drop] < keep) drop++;
    if (!drop) return;
    this.t.splice(0, drop);
    this.ep.splice(0, drop);
    for (const h of this.hb) for (const s of h) s.splice(0, drop);
  }

  // latest values, the off-scale note and the quality badge under each channel name
  annotate(quality) {
    this.cards.forEach((card, c) => {
      const q = (quality && quality[c]) || "no data";
      Nirsd.put(card.badge, q);
      Nirsd.cls(card.badge, `badge ${q.replace(" ", "-")}`);
      const h = this.hb[c];
      const last = (s) => {
        for (let i = s.length - 1; i >= 0 && i >= s.length - 20; i--) if (s[i] !== null) return s[i];
        return null;
      };
      const fmt = (v) => (v === null ? "–" : (v >= 0 ? "+" : "") + v.toFixed(2));
      const o = last(h[0]), r = last(h[1]);
      Nirsd.put(card.values, `HbO ${fmt(o)} · HbR ${fmt(r)} µM`);
      const out = [o, r].some((v) => v !== null && Math.abs(v) > this.scale);
      Nirsd.put(card.off, out ? "off scale" : "");
    });
  }

  setWindow(seconds) {
    this.window = seconds;
    this.draw(true);
  }

  setScale(uM) {
    this.scale = uM;
    this.draw(true);
  }

  // redraw a few times a second: the x axis scrolls with the clock even between points;
  // charts scrolled out of view wait until they are seen again
  draw(force) {
    // a long window moves a pixel every few seconds: redraw only as often as it moves
    const width = (this.charts[0] && this.charts[0].bbox.width / devicePixelRatio) || 400;
    const every = Math.min(2000, Math.max(250, (this.window / width) * 2000));
    const now = performance.now();
    if (!force && now - (this.drawn || 0) < every) return;
    this.drawn = now;
    // a few charts per task, so that arriving points are handled between them
    const todo = [...this.visible];
    const batch = () => {
      for (const c of todo.splice(0, 6)) {
        if (this.charts[c]) this.charts[c].setData(this.data(c), true);
      }
      if (todo.length) setTimeout(batch, 0);
    };
    batch();
    this.dirty = false;
  }

  resize() {
    const w = this.chartWidth();
    const h = this.chartHeight();
    for (const u of this.charts) u.setSize({width: w, height: h});
  }
}
