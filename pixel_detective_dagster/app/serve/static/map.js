// The collection map: points plotted straight into an ImageData buffer (fast at 100k points on any
// machine, no GPU needed), a grid index for hover / click, cluster names drawn on an overlay canvas.
"use strict";

const PALETTE = [
  "#4f46e5", "#e11d48", "#059669", "#d97706", "#0891b2", "#7c3aed", "#db2777", "#65a30d",
  "#2563eb", "#ea580c", "#0d9488", "#9333ea", "#ca8a04", "#dc2626", "#16a34a", "#0284c7",
  "#c026d3", "#4d7c0f", "#b45309", "#6366f1",
];
const NOISE = "#64748b";

function hexToRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

function clusterColor(label) {
  return label < 0 ? NOISE : PALETTE[label % PALETTE.length];
}

// Parse the binary map (see map_encoding.py): magic, uint32 header length, JSON header, aligned columns.
function parseMap(buffer) {
  const magic = new TextDecoder().decode(new Uint8Array(buffer, 0, 7));
  if (magic !== "PDMAP1\n") throw new Error("not a Pixel Detective map");
  const length = new DataView(buffer).getUint32(7, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 11, length)));
  const n = header.count;
  const column = (name, Type) => new Type(buffer, header.columns[name][1], n);
  return {
    header,
    n,
    x: column("x", Float32Array),
    y: column("y", Float32Array),
    cluster: column("cluster", Int32Array),
    kmeans: column("kmeans", Int32Array),
    outlier: column("outlier", Uint8Array),
    idBytes: new Uint8Array(buffer, header.columns.id[1], 16 * n),
  };
}

function pointId(map, i) {
  let hex = "";
  for (let b = 16 * i; b < 16 * i + 16; b++) hex += map.idBytes[b].toString(16).padStart(2, "0");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

class PixelMap {
  constructor(pointsCanvas, labelsCanvas, { onHover, onClick }) {
    this.canvas = pointsCanvas;
    this.labels = labelsCanvas;
    this.onHover = onHover;
    this.onClick = onClick;
    this.map = null;
    this.selected = null; // a cluster label shown in front, the rest dimmed
    this.view = { cx: 0, cy: 0, k: 1 }; // data centre and pixels per data unit
    this.fitK = 1; // pixels per data unit when the whole map fits
    this.frame = 0;
    this.bindEvents();
    new ResizeObserver(() => this.resize()).observe(pointsCanvas.parentElement);
  }

  setData(buffer) {
    this.map = parseMap(buffer);
    const m = this.map;
    // colour by density clusters when there are any, else by K-Means (small collections are all noise)
    const dense = m.cluster.some((c) => c >= 0);
    this.labelsOf = dense ? m.cluster : m.kmeans;
    this.colors = new Uint8Array(3 * m.n);
    for (let i = 0; i < m.n; i++) this.colors.set(hexToRgb(clusterColor(this.labelsOf[i])), 3 * i);
    this.order = Array.from({ length: m.n }, (_, i) => i).sort((a, b) => (this.labelsOf[a] < 0) - (this.labelsOf[b] < 0)).reverse();
    this.buildGrid();
    this.fit();
    return m.header;
  }

  groups() {
    // what the legend lists: named density clusters, else K-Means groups
    const m = this.map;
    if (m.header.clusters.length) return m.header.clusters.map((c) => ({ ...c, color: clusterColor(c.id), filter: "cluster" }));
    const counts = new Map();
    for (let i = 0; i < m.n; i++) counts.set(m.kmeans[i], (counts.get(m.kmeans[i]) || 0) + 1);
    return [...counts.entries()].filter(([k]) => k >= 0).sort((a, b) => a[0] - b[0])
      .map(([id, count]) => ({ id, count, name: `group ${id + 1}`, color: clusterColor(id), filter: "kmeans" }));
  }

  select(label) {
    this.selected = label;
    this.draw();
  }

  idsOf(label) {
    const out = [];
    for (let i = 0; i < this.map.n && out.length < 60; i++) if (this.labelsOf[i] === label) out.push(pointId(this.map, i));
    return out;
  }

  buildGrid() {
    const m = this.map;
    const [x0, y0, x1, y1] = m.header.bounds.length ? m.header.bounds : [0, 0, 1, 1];
    const size = Math.max(1, Math.ceil(Math.sqrt(m.n / 4)));
    const gx = (x1 - x0) / size || 1;
    const gy = (y1 - y0) / size || 1;
    const cellOf = (i) => Math.min(size - 1, Math.floor((m.x[i] - x0) / gx)) * size + Math.min(size - 1, Math.floor((m.y[i] - y0) / gy));
    const start = new Uint32Array(size * size + 1);
    for (let i = 0; i < m.n; i++) start[cellOf(i) + 1]++;
    for (let c = 0; c < size * size; c++) start[c + 1] += start[c];
    const fill = start.slice(0, -1);
    const items = new Uint32Array(m.n);
    for (let i = 0; i < m.n; i++) items[fill[cellOf(i)]++] = i;
    this.grid = { x0, y0, gx, gy, size, start, items };
  }

  nearest(px, py, radius = 8) {
    if (!this.map || !this.map.n) return -1;
    const [x, y] = this.toData(px, py);
    const g = this.grid;
    const r = radius / this.view.k;
    const cx0 = Math.max(0, Math.floor((x - r - g.x0) / g.gx)), cx1 = Math.min(g.size - 1, Math.floor((x + r - g.x0) / g.gx));
    const cy0 = Math.max(0, Math.floor((y - r - g.y0) / g.gy)), cy1 = Math.min(g.size - 1, Math.floor((y + r - g.y0) / g.gy));
    let best = -1, bestD = r * r;
    for (let cx = cx0; cx <= cx1; cx++) {
      for (let cy = cy0; cy <= cy1; cy++) {
        const c = cx * g.size + cy;
        for (let j = g.start[c]; j < g.start[c + 1]; j++) {
          const i = g.items[j];
          const d = (this.map.x[i] - x) ** 2 + (this.map.y[i] - y) ** 2;
          if (d <= bestD) { bestD = d; best = i; }
        }
      }
    }
    return best;
  }

  toData(px, py) {
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    return [this.view.cx + (px - w / 2) / this.view.k, this.view.cy - (py - h / 2) / this.view.k];
  }

  toScreen(x, y) {
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    return [w / 2 + (x - this.view.cx) * this.view.k, h / 2 - (y - this.view.cy) * this.view.k];
  }

  fit() {
    const b = this.map && this.map.header.bounds.length ? this.map.header.bounds : [-1, -1, 1, 1];
    const w = this.canvas.clientWidth || 800, h = this.canvas.clientHeight || 600;
    const spanX = Math.max(b[2] - b[0], 1e-6), spanY = Math.max(b[3] - b[1], 1e-6);
    this.fitK = 0.9 * Math.min(w / spanX, h / spanY);
    this.view = { cx: (b[0] + b[2]) / 2, cy: (b[1] + b[3]) / 2, k: this.fitK };
    this.draw();
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    for (const c of [this.canvas, this.labels]) {
      c.width = Math.max(1, Math.round(c.clientWidth * dpr));
      c.height = Math.max(1, Math.round(c.clientHeight * dpr));
    }
    if (this.map) this.fit();
  }

  draw() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }

  render() {
    const ctx = this.canvas.getContext("2d");
    const W = this.canvas.width, H = this.canvas.height;
    if (!W || !H) return;
    const image = ctx.createImageData(W, H);
    const pixels = new Uint32Array(image.data.buffer);
    pixels.fill(0xff190f0b); // background #0b0f19 (little-endian ABGR)
    if (this.map) {
      const dpr = W / this.canvas.clientWidth;
      const k = this.view.k * dpr, ox = W / 2 - this.view.cx * k, oy = H / 2 + this.view.cy * k;
      const m = this.map, sel = this.selected;
      const base = m.n < 2000 ? 5 : m.n < 20000 ? 3 : 2; // pixels; grows gently as one zooms in
      const radius = Math.max(1, Math.min(12, Math.round(dpr * base * Math.pow(this.view.k / this.fitK, 0.35))));
      for (const pass of sel === null ? [1] : [0, 1]) {
        for (const i of this.order) {
          const chosen = sel === null || this.labelsOf[i] === sel;
          if ((pass === 0) === chosen) continue;
          const px = Math.round(m.x[i] * k + ox), py = Math.round(oy - m.y[i] * k);
          if (px < -radius || py < -radius || px >= W + radius || py >= H + radius) continue;
          let r = this.colors[3 * i], g = this.colors[3 * i + 1], b = this.colors[3 * i + 2];
          if (!chosen) { r = (r + 3 * 11) >> 2; g = (g + 3 * 15) >> 2; b = (b + 3 * 25) >> 2; }
          const color = 0xff000000 | (b << 16) | (g << 8) | r;
          const size = m.outlier[i] && chosen ? radius + 1 : radius;
          for (let dy = -size + 1; dy < size; dy++) {
            const yy = py + dy;
            if (yy < 0 || yy >= H) continue;
            const row = yy * W;
            for (let dx = -size + 1; dx < size; dx++) {
              const xx = px + dx;
              if (xx >= 0 && xx < W && dx * dx + dy * dy < size * size) pixels[row + xx] = color;
            }
          }
        }
      }
    }
    ctx.putImageData(image, 0, 0);
    this.renderLabels();
  }

  renderLabels() {
    const ctx = this.labels.getContext("2d");
    const dpr = this.labels.width / (this.labels.clientWidth || 1);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, this.labels.clientWidth, this.labels.clientHeight);
    if (!this.map) return;
    ctx.font = "600 13px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.lineJoin = "round";
    for (const c of this.map.header.clusters) {
      if (this.selected !== null && c.id !== this.selected) continue;
      const [sx, sy] = this.toScreen(c.x, c.y);
      ctx.lineWidth = 4;
      ctx.strokeStyle = "rgba(11, 15, 25, 0.85)";
      ctx.strokeText(c.name, sx, sy);
      ctx.fillStyle = "#f8fafc";
      ctx.fillText(c.name, sx, sy);
    }
  }

  bindEvents() {
    const c = this.canvas;
    let drag = null;
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      const rect = c.getBoundingClientRect();
      const px = e.clientX - rect.left, py = e.clientY - rect.top;
      const [x, y] = this.toData(px, py);
      this.view.k *= Math.exp(-e.deltaY * 0.0015);
      const [x2, y2] = this.toData(px, py);
      this.view.cx += x - x2;
      this.view.cy += y - y2;
      this.draw();
    }, { passive: false });
    c.addEventListener("pointerdown", (e) => {
      drag = { x: e.clientX, y: e.clientY, moved: false };
      c.setPointerCapture(e.pointerId);
    });
    c.addEventListener("pointermove", (e) => {
      const rect = c.getBoundingClientRect();
      if (drag) {
        const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; c.classList.add("dragging"); }
        if (drag.moved) {
          this.view.cx -= dx / this.view.k;
          this.view.cy += dy / this.view.k;
          drag.x = e.clientX;
          drag.y = e.clientY;
          this.draw();
        }
        return;
      }
      const i = this.nearest(e.clientX - rect.left, e.clientY - rect.top);
      this.onHover(i < 0 ? null : { id: pointId(this.map, i), x: e.clientX - rect.left, y: e.clientY - rect.top, label: this.labelsOf[i] });
    });
    c.addEventListener("pointerup", (e) => {
      const rect = c.getBoundingClientRect();
      const clicked = drag && !drag.moved;
      drag = null;
      c.classList.remove("dragging");
      if (!clicked) return;
      const i = this.nearest(e.clientX - rect.left, e.clientY - rect.top);
      if (i >= 0) this.onClick(pointId(this.map, i));
    });
    c.addEventListener("pointerleave", () => this.onHover(null));
    c.addEventListener("dblclick", () => this.fit());
  }

  // screen position of the i-th point (the browser test clicks one through it)
  screenPositionOf(index) {
    return this.toScreen(this.map.x[index], this.map.y[index]);
  }
}

window.PixelMap = PixelMap;
