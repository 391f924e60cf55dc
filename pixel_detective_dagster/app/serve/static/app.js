// The search page: collection picker, text / image / more-like-this search with filters, detail view,
// duplicates and the map. Talks only to this service's /api; every text is set with textContent.
"use strict";

const $ = (selector) => document.querySelector(selector);
const PAGE = 24;
const state = { collection: null, collections: [], query: null, offset: 0, view: "search", mapFor: null, dupFor: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

async function api(path, params = {}, init = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
  }
  const response = await fetch(url, init);
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return response;
}

// paths are shown right-aligned (their file name matters most): a left-to-right mark keeps "/" in place
const ltr = (text) => `\u200e${text}\u200e`;

function thumbImg(url, alt = "") {
  const img = el("img", { src: url, alt, loading: "lazy", decoding: "async" });
  img.addEventListener("load", () => img.classList.add("loaded"));
  return img;
}

// -- collections ------------------------------------------------------------------------------

async function loadCollections() {
  const data = await (await api("/api/collections")).json();
  state.collections = data.collections;
  const picker = $("#collection");
  picker.replaceChildren(...data.collections.map((c) => el("option", { value: c.name, text: c.name })));
  const wanted = new URLSearchParams(location.search).get("collection") || data.default;
  state.collection = data.collections.some((c) => c.name === wanted) ? wanted : data.collections[0]?.name || null;
  if (state.collection) picker.value = state.collection;
  showCollection();
}

function showCollection() {
  const c = state.collections.find((x) => x.name === state.collection);
  $("#collection-stats").textContent = c ? `${c.points.toLocaleString()} images indexed · ${c.folder}` : "";
  const banner = $("#banner");
  banner.hidden = !(c && c.not_semantic);
  if (c && c.not_semantic) {
    banner.replaceChildren(el("strong", { text: "Not semantic." }),
      "This collection was indexed with tiny random-weight test models: rankings and captions are not meaningful.");
  }
  if (!c) {
    $("#results").replaceChildren(el("div", { class: "empty" }, el("strong", { text: "No collections yet" }),
      "Ingest a folder with pixel-detective ingest PATH --collection NAME, then reload."));
  }
}

// -- search -----------------------------------------------------------------------------------

function filters() {
  const form = new FormData($("#filters-form"));
  return Object.fromEntries([...form.entries()].filter(([, v]) => v !== ""));
}

async function search(query, append = false) {
  if (!state.collection) return;
  state.query = query;
  if (query.kind === "image" || query.like) $("#query").value = ""; // the box shows what is being searched
  state.offset = append ? state.offset + PAGE : 0;
  const grid = $("#results");
  if (!append) grid.setAttribute("aria-busy", "true");
  const params = { collection: state.collection, limit: PAGE, offset: state.offset };
  let response;
  try {
    if (query.kind === "image") {
      const body = new FormData();
      body.append("file", query.file);
      response = await api("/api/search/image", params, { method: "POST", body });
    } else {
      response = await api("/api/search", { ...params, ...filters(), q: query.text, mode: query.mode, like: query.like });
    }
  } catch (error) {
    grid.replaceChildren(el("div", { class: "error", text: error.message }));
    $("#results-summary").textContent = "";
    $("#load-more").hidden = true;
    return;
  } finally {
    grid.removeAttribute("aria-busy");
  }
  const data = await response.json();
  renderQueryChip(query);
  const cards = data.results.map((r) => card(r, data.mode !== "browse"));
  if (append) grid.append(...cards);
  else grid.replaceChildren(...(cards.length ? cards : [emptyState()]));
  const shown = state.offset + data.results.length;
  $("#results-summary").textContent = `${shown} result${shown === 1 ? "" : "s"} · ${describe(query)} · ${data.took_ms} ms`;
  $("#load-more").hidden = data.results.length < PAGE;
}

function describe(query) {
  if (query.kind === "image") return `similar to ${query.file.name || "your image"}`;
  if (query.like) return "more like the chosen image";
  if (query.text) return `“${query.text}” (${$("#mode").selectedOptions[0].textContent})`;
  return "browsing";
}

function emptyState() {
  return el("div", { class: "empty" }, el("strong", { text: "Nothing found" }), "Try other words or clear some filters.");
}

function renderQueryChip(query) {
  const chip = $("#query-chip");
  chip.hidden = !(query.kind === "image" || query.like);
  if (chip.hidden) return;
  const src = query.kind === "image" ? URL.createObjectURL(query.file) : `/api/thumbnails/${query.like}?collection=${state.collection}`;
  chip.replaceChildren(el("img", { src, alt: "" }),
    query.kind === "image" ? "Images like your upload" : "More like this image",
    el("button", { "aria-label": "Clear", text: "×", onclick: () => search({ kind: "text", text: null, mode: "vector" }) }));
}

function card(r, ranked) {
  const score = ranked ? el("span", { class: "score", title: "similarity", text: r.score.toFixed(3) }) : "";
  return el("article", { class: "card", tabindex: "0", "data-id": r.id, onclick: () => openDetail(r.id),
    onkeydown: (e) => { if (e.key === "Enter") openDetail(r.id); } },
  el("div", { class: "thumb" }, thumbImg(r.thumbnail_url, r.caption), score),
  el("div", { class: "body" }, el("div", { class: "caption", text: r.caption || "(no caption)" }),
    el("div", { class: "path", title: r.path, text: ltr(r.path) })));
}

// -- detail -----------------------------------------------------------------------------------

const EXIF_ROWS = [
  ["taken_at", "Taken"], ["camera_make", "Camera make"], ["camera_model", "Camera model"], ["format", "Format"],
  ["width", "Width"], ["height", "Height"], ["size", "File size"], ["frames", "Frames"], ["orientation", "Orientation"],
  ["gps_lat", "Latitude"], ["gps_lon", "Longitude"], ["cluster", "Cluster"], ["cluster_name", "Cluster name"],
  ["folders", "Folders"], ["paths", "All paths"], ["clip_model", "CLIP model"], ["caption_model", "Caption model"], ["id", "Point id"],
];

function formatValue(key, value) {
  if (key === "size") return `${(value / 1024 / 1024).toFixed(2)} MB`;
  if (key === "width" || key === "height") return `${value} px`;
  if (Array.isArray(value)) return value.join("\n");
  return String(value);
}

async function openDetail(id) {
  const dialog = $("#detail");
  let point;
  try {
    point = await (await api(`/api/points/${id}`, { collection: state.collection })).json();
  } catch (error) {
    alert(error.message);
    return;
  }
  $("#detail-img").src = point.image_url;
  $("#detail-img").onerror = () => { $("#detail-img").src = point.thumbnail_url; };
  $("#detail-title").textContent = point.path.split("/").pop();
  $("#detail-title").title = point.path;
  $("#detail-caption").textContent = point.caption || "";
  $("#detail-open").href = point.image_url;
  $("#detail-like").onclick = () => { dialog.close(); showView("search"); search({ kind: "like", like: id }); };
  const rows = EXIF_ROWS.filter(([key]) => point[key] !== undefined && point[key] !== null && point[key] !== "")
    .map(([key, label]) => el("tr", {}, el("th", { text: label }), el("td", { text: formatValue(key, point[key]), style: "white-space: pre-line" })));
  $("#detail-exif").replaceChildren(...rows);
  if (!dialog.open) dialog.showModal();
}

// -- map --------------------------------------------------------------------------------------

let pixelMap = null;

async function loadMap() {
  if (state.mapFor === state.collection) return;
  state.mapFor = state.collection;
  const status = $("#map-status");
  status.textContent = "Loading map…";
  status.hidden = false;
  if (!pixelMap) {
    pixelMap = new window.PixelMap($("#map-points"), $("#map-labels"), { onHover: showTooltip, onClick: openDetail });
    pixelMap.resize();
    window.pixelMap = pixelMap; // for the console and the browser test
  }
  try {
    const started = performance.now();
    const buffer = await (await api("/api/map", { collection: state.collection })).arrayBuffer();
    const header = pixelMap.setData(buffer);
    status.textContent = `${header.count.toLocaleString()} points · ${(buffer.byteLength / 1024).toFixed(0)} KB · ${Math.round(performance.now() - started)} ms`;
    renderClusterList();
  } catch (error) {
    status.textContent = error.message;
    $("#cluster-list").replaceChildren();
  }
}

function renderClusterList() {
  const list = $("#cluster-list");
  list.replaceChildren(...pixelMap.groups().map((g) => el("li", { "data-cluster": g.id, onclick: (e) => chooseCluster(g, e.currentTarget) },
    el("span", { class: "swatch", style: `background:${g.color}` }), el("span", { text: g.name }), el("span", { class: "count", text: g.count }))));
  $("#cluster-images").replaceChildren();
}

function chooseCluster(group, item) {
  const again = item.classList.contains("active");
  for (const li of document.querySelectorAll("#cluster-list li")) li.classList.remove("active");
  pixelMap.select(again ? null : group.id);
  if (again) { $("#cluster-images").replaceChildren(); return; }
  item.classList.add("active");
  $("#cluster-images").replaceChildren(...pixelMap.idsOf(group.id).map((id) =>
    el("img", { src: `/api/thumbnails/${id}?collection=${state.collection}`, alt: "", loading: "lazy", onclick: () => openDetail(id) })));
}

function showTooltip(hit) {
  const tip = $("#map-tooltip");
  if (!hit) { tip.hidden = true; return; }
  const img = tip.querySelector("img");
  const src = `/api/thumbnails/${hit.id}?collection=${state.collection}`;
  if (img.getAttribute("src") !== src) img.src = src;
  tip.querySelector("span").textContent = hit.label >= 0 ? `cluster ${hit.label}` : "unclustered";
  const wrap = tip.parentElement.getBoundingClientRect();
  tip.style.left = `${Math.min(hit.x + 14, wrap.width - 190)}px`;
  tip.style.top = `${Math.min(hit.y + 14, wrap.height - 160)}px`;
  tip.hidden = false;
}

// -- duplicates -------------------------------------------------------------------------------

async function loadDuplicates() {
  const threshold = $("#threshold").value;
  const key = `${state.collection}@${threshold}`;
  if (state.dupFor === key) return;
  state.dupFor = key;
  const list = $("#duplicates");
  $("#dup-summary").textContent = "Comparing every image with every other…";
  try {
    const data = await (await api("/api/duplicates", { collection: state.collection, threshold })).json();
    const groups = [...data.exact, ...data.near];
    $("#dup-summary").textContent = `${data.exact_groups} exact-copy group${data.exact_groups === 1 ? "" : "s"} · `
      + `${data.near_groups} near-duplicate group${data.near_groups === 1 ? "" : "s"} (${data.near_pairs} pairs at similarity ≥ ${threshold}) among ${data.points} images`;
    list.replaceChildren(...(groups.length ? groups.map(duplicateGroup) : [el("div", { class: "empty" }, el("strong", { text: "No duplicates" }), "Lower the threshold to see looser matches.")]));
  } catch (error) {
    list.replaceChildren(el("div", { class: "error", text: error.message }));
    $("#dup-summary").textContent = "";
  }
}

function duplicateGroup(group) {
  const title = group.kind === "exact"
    ? `Exact copies · ${group.files} files of one image`
    : `${group.size} near-duplicates · up to ${(100 * group.top).toFixed(1)} % similar`;
  return el("div", { class: "pair" },
    el("div", { class: "similarity", text: title }),
    el("div", { class: "images" }, ...group.members.map((m) => el("figure", {},
      el("img", { src: m.thumbnail_url, alt: m.paths[0].split("/").pop(), loading: "lazy", onclick: () => openDetail(m.id) }),
      el("figcaption", { title: m.paths.join("\n"), text: ltr(m.paths.length > 1 ? `${m.paths[0]} (+${m.paths.length - 1})` : m.paths[0]) })))));
}

// -- wiring -----------------------------------------------------------------------------------

function showView(view) {
  state.view = view;
  for (const tab of document.querySelectorAll(".tabs button")) tab.classList.toggle("active", tab.dataset.view === view);
  for (const section of document.querySelectorAll(".view")) section.classList.toggle("active", section.id === `view-${view}`);
  if (view === "map") loadMap();
  if (view === "duplicates") loadDuplicates();
}

function textQuery() {
  const text = $("#query").value.trim();
  return { kind: "text", text: text || null, mode: $("#mode").value };
}

function imageQuery(file) {
  showView("search");
  search({ kind: "image", file });
}

function wire() {
  $("#search-form").addEventListener("submit", (e) => { e.preventDefault(); showView("search"); search(textQuery()); });
  $("#filters-form").addEventListener("submit", (e) => { e.preventDefault(); search(state.query?.kind === "image" ? textQuery() : state.query || textQuery()); });
  $("#filters-form").addEventListener("reset", () => setTimeout(() => search(textQuery())));
  $("#load-more").addEventListener("click", () => search(state.query, true));
  $("#upload-button").addEventListener("click", () => $("#upload-input").click());
  $("#upload-input").addEventListener("change", (e) => { if (e.target.files[0]) imageQuery(e.target.files[0]); e.target.value = ""; });
  $("#collection").addEventListener("change", (e) => {
    state.collection = e.target.value;
    showCollection();
    state.mapFor = state.dupFor = null;
    search(textQuery());
    if (state.view !== "search") showView(state.view);
  });
  for (const tab of document.querySelectorAll(".tabs button")) tab.addEventListener("click", () => showView(tab.dataset.view));
  $("#detail-close").addEventListener("click", () => $("#detail").close());
  $("#detail").addEventListener("click", (e) => { if (e.target === $("#detail")) $("#detail").close(); });
  $("#threshold").addEventListener("input", (e) => { $("#threshold-value").textContent = Number(e.target.value).toFixed(2); });
  $("#threshold").addEventListener("change", () => loadDuplicates());
  let depth = 0;
  const overlay = $("#drop-overlay");
  document.addEventListener("dragenter", (e) => { if (e.dataTransfer.types.includes("Files")) { depth++; overlay.hidden = false; } });
  document.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) overlay.hidden = true; });
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    overlay.hidden = true;
    const file = [...e.dataTransfer.files].find((f) => f.type.startsWith("image/") || f.name);
    if (file) imageQuery(file);
  });
}

wire();
loadCollections().then(() => search(textQuery())).catch((error) => {
  $("#results").replaceChildren(el("div", { class: "error", text: `Cannot reach the search service: ${error.message}` }));
});
