// The MUNet annotation page: one 2D ultrasound image at a time, on MONAI Label's own API.
// State lives here until the server confirms a save: the mask of each image is also kept in
// localStorage (a draft), so a failed save, a server restart or a page reload loses nothing.
"use strict";

const $ = (id) => document.getElementById(id);
const view = $("view");
const ctx = view.getContext("2d");

const state = {
  token: sessionStorage.getItem("munet-token") || "",
  info: null, // GET /info/
  images: [], // [{id, labelled, uncertainty}]
  next: null,
  id: null, // current image id
  picture: null, // ImageBitmap of the image
  rows: 0, cols: 0,
  mask: null, // Uint8Array rows*cols, 0/1
  maskCanvas: document.createElement("canvas"),
  undo: [],
  clicks: { foreground: [], background: [] },
  mode: "click",
  zoom: 1, panX: 0, panY: 0,
  opacity: 0.45,
  busy: false,
  pending: null, // {key, point}: a click sent, not answered yet
  drawing: null, // {erase, last}
  panning: null,
  spaceDown: false,
};

// ---- messages -----------------------------------------------------------------------------
function say(text, kind = "info") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

function busy(on) {
  state.busy = on;
  $("busy").hidden = !on;
}

// ---- the server ---------------------------------------------------------------------------
class ServerError extends Error {}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.token) headers.set("Authorization", `Bearer ${state.token}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (err) {
    throw new ServerError("the server did not answer (stopped or restarting?): nothing was lost, try again in a moment");
  }
  if (response.status === 401) {
    const token = await askToken();
    if (token) return api(path, options);
    throw new ServerError("this server needs an access token");
  }
  if (!response.ok) {
    let detail = "";
    try {
      const body = await response.clone().json();
      detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body);
    } catch (err) {
      detail = (await response.text()).slice(0, 300);
    }
    throw new ServerError(`${response.status}: ${detail || response.statusText}`);
  }
  return response;
}

function askToken() {
  return new Promise((resolve) => {
    const dialog = $("token-dialog");
    dialog.onclose = () => {
      state.token = $("token-input").value.trim();
      sessionStorage.setItem("munet-token", state.token);
      resolve(state.token);
    };
    dialog.showModal();
  });
}

// ---- drafts: the mask kept in the browser until the server confirms the save --------------
function encodeRuns(mask) {
  const runs = [];
  let value = 0, count = 0;
  for (let i = 0; i < mask.length; i++) {
    if (mask[i] === value) count++;
    else { runs.push(count); value = mask[i]; count = 1; }
  }
  runs.push(count);
  return runs.join(",");
}

function decodeRuns(text, length) {
  const mask = new Uint8Array(length);
  let index = 0, value = 0;
  for (const run of text.split(",").map(Number)) {
    if (value) mask.fill(1, index, Math.min(length, index + run));
    index += run;
    value = 1 - value;
  }
  return mask;
}

const draftKey = (id) => `munet-draft:${location.host}:${id}`;

function keepDraft() {
  if (!state.id) return;
  try {
    localStorage.setItem(draftKey(state.id), JSON.stringify({ rows: state.rows, cols: state.cols, runs: encodeRuns(state.mask), cls: $("class").value }));
    $("draft-info").textContent = "unsaved drawing kept in this browser";
  } catch (err) {
    $("draft-info").textContent = "could not keep a copy of the drawing in this browser: save soon";
  }
}

function loadDraft(id) {
  const text = localStorage.getItem(draftKey(id));
  if (!text) return null;
  try {
    const draft = JSON.parse(text);
    if (draft.rows !== state.rows || draft.cols !== state.cols) return null;
    return draft;
  } catch (err) {
    return null;
  }
}

// ---- the image list -----------------------------------------------------------------------
async function refreshList() {
  const body = await (await api("api/images")).json();
  state.images = body.images;
  state.next = body.next;
  $("progress").textContent = `${body.labelled} of ${body.total} labelled`;
  const list = $("images");
  list.replaceChildren(...body.images.map((image) => {
    const item = document.createElement("li");
    item.textContent = image.id;
    item.dataset.id = image.id;
    item.title = image.labelled ? "labelled" : "no label yet" + (image.uncertainty !== undefined ? ` (uncertainty ${image.uncertainty.toFixed(2)})` : "");
    item.classList.toggle("labelled", image.labelled);
    item.classList.toggle("current", image.id === state.id);
    item.onclick = () => openImage(image.id);
    return item;
  }));
  $("next").disabled = !body.next;
  $("next").textContent = body.next ? `Next unlabelled (N)` : "all labelled";
}

async function openNext() {
  await refreshList();
  if (!state.next) { say("every image has a label", "ok"); return; }
  await openImage(state.next);
}

// ---- one image ----------------------------------------------------------------------------
async function openImage(id) {
  if (state.busy) return;
  busy(true);
  try {
    const blob = await (await api(`api/image?image=${encodeURIComponent(id)}`)).blob();
    const picture = await createImageBitmap(blob);
    state.id = id;
    state.picture = picture;
    state.rows = picture.height;
    state.cols = picture.width;
    state.mask = new Uint8Array(state.rows * state.cols);
    state.undo = [];
    state.clicks = { foreground: [], background: [] };
    $("class").value = "";
    const draft = loadDraft(id);
    if (draft) {
      state.mask = decodeRuns(draft.runs, state.rows * state.cols);
      $("class").value = draft.cls || "";
      $("draft-info").textContent = "unsaved drawing restored from this browser";
    } else {
      $("draft-info").textContent = "";
    }
    $("image-info").textContent = `${id}: ${state.cols} x ${state.rows} px`;
    $("result").innerHTML = '<p class="muted">Press A for the automatic segmentation.</p>';
    paintMask();
    fit();
    history.replaceState(null, "", `#${encodeURIComponent(id)}`);
    for (const item of $("images").children) item.classList.toggle("current", item.dataset.id === id);
    say("");
  } catch (err) {
    say(`image ${id} cannot be shown: ${err.message}`, "error");
  } finally {
    busy(false);
  }
}

// ---- drawing ------------------------------------------------------------------------------
function paintMask() {
  const canvas = state.maskCanvas;
  canvas.width = state.cols;
  canvas.height = state.rows;
  const pixels = new ImageData(state.cols, state.rows);
  for (let i = 0; i < state.mask.length; i++) {
    if (state.mask[i]) { pixels.data[i * 4] = 255; pixels.data[i * 4 + 1] = 40; pixels.data[i * 4 + 2] = 40; pixels.data[i * 4 + 3] = 255; }
  }
  canvas.getContext("2d").putImageData(pixels, 0, 0);
  render();
}

function render() {
  const ratio = window.devicePixelRatio || 1;
  const width = view.clientWidth, height = view.clientHeight;
  if (view.width !== Math.round(width * ratio) || view.height !== Math.round(height * ratio)) {
    view.width = Math.round(width * ratio);
    view.height = Math.round(height * ratio);
  }
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, view.width, view.height);
  if (!state.picture) return;
  ctx.setTransform(ratio * state.zoom, 0, 0, ratio * state.zoom, ratio * state.panX, ratio * state.panY);
  ctx.imageSmoothingEnabled = state.zoom < 1;
  ctx.drawImage(state.picture, 0, 0);
  ctx.globalAlpha = state.opacity;
  ctx.drawImage(state.maskCanvas, 0, 0);
  ctx.globalAlpha = 1;
  const radius = 5 / state.zoom;
  for (const [key, color] of [["foreground", "#30ff60"], ["background", "#30a0ff"]]) {
    ctx.fillStyle = color;
    const pending = state.pending && state.pending.key === key ? [state.pending.point] : [];
    for (const [x, y] of [...state.clicks[key], ...pending]) {
      ctx.beginPath();
      ctx.arc(x + 0.5, y + 0.5, radius, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
}

function fit() {
  if (!state.picture) return;
  const width = view.clientWidth, height = view.clientHeight;
  state.zoom = Math.min(width / state.cols, height / state.rows) * 0.96;
  state.panX = (width - state.cols * state.zoom) / 2;
  state.panY = (height - state.rows * state.zoom) / 2;
  render();
}

function toImage(event) {
  const box = view.getBoundingClientRect();
  return [(event.clientX - box.left - state.panX) / state.zoom, (event.clientY - box.top - state.panY) / state.zoom];
}

function inside(x, y) {
  return x >= 0 && y >= 0 && x < state.cols && y < state.rows;
}

function pushUndo() {
  state.undo.push({ mask: state.mask.slice(), clicks: JSON.parse(JSON.stringify(state.clicks)) });
  if (state.undo.length > 50) state.undo.shift();
}

function undo() {
  const last = state.undo.pop();
  if (!last) { say("nothing to undo", "info"); return; }
  state.mask = last.mask;
  state.clicks = last.clicks;
  paintMask();
  keepDraft();
}

function stamp(x, y, erase) {
  const radius = Number($("brush-size").value) / 2;
  const r2 = radius * radius;
  for (let row = Math.max(0, Math.floor(y - radius)); row <= Math.min(state.rows - 1, Math.ceil(y + radius)); row++) {
    for (let col = Math.max(0, Math.floor(x - radius)); col <= Math.min(state.cols - 1, Math.ceil(x + radius)); col++) {
      if ((col + 0.5 - x) ** 2 + (row + 0.5 - y) ** 2 <= r2) state.mask[row * state.cols + col] = erase ? 0 : 1;
    }
  }
}

function strokeTo(x, y) {
  const [lx, ly] = state.drawing.last;
  const steps = Math.max(1, Math.ceil(Math.hypot(x - lx, y - ly)));
  for (let i = 1; i <= steps; i++) stamp(lx + ((x - lx) * i) / steps, ly + ((y - ly) * i) / steps, state.drawing.erase);
  state.drawing.last = [x, y];
  paintMask();
}

// ---- the model ----------------------------------------------------------------------------
async function infer(model, params) {
  const response = await api(`/infer/${model}?image=${encodeURIComponent(state.id)}&output=all`, {
    method: "POST",
    body: (() => { const form = new FormData(); form.append("params", JSON.stringify(params)); return form; })(),
  });
  const form = await response.formData();
  const rawParams = form.get("params");
  const result = JSON.parse(typeof rawParams === "string" ? rawParams : await rawParams.text());
  const label = await createImageBitmap(form.get("image"), { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  if (label.width !== state.cols || label.height !== state.rows) {
    throw new ServerError(`the model's mask is ${label.width} x ${label.height}, the image ${state.cols} x ${state.rows}`);
  }
  const canvas = new OffscreenCanvas(label.width, label.height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(label, 0, 0);
  const pixels = context.getImageData(0, 0, label.width, label.height).data;
  const mask = new Uint8Array(state.rows * state.cols);
  for (let i = 0; i < mask.length; i++) mask[i] = pixels[i * 4] > 0 ? 1 : 0;
  return { mask, result };
}

// apply(): what changes with the answer besides the mask (the clicks), after the undo step is kept
async function runModel(model, params, what, apply = () => {}) {
  if (!state.id || state.busy) return;
  const served = Object.keys((state.info && state.info.models) || {});
  if (!served.includes(model)) {
    const why = state.info && state.info.not_served && state.info.not_served[model];
    say(`${model} is not served by this server${why ? `: ${why}` : ""}`, "error");
    return;
  }
  busy(true);
  const started = performance.now();
  try {
    const { mask, result } = await infer(model, params);
    pushUndo();
    apply();
    state.mask = mask;
    paintMask();
    keepDraft();
    showResult(result);
    view.dataset.lastInferMs = String(Math.round(performance.now() - started));
    say(`${what}: ${result.lesion_pixels} lesion pixels (${Math.round(performance.now() - started)} ms)`, "info");
  } catch (err) {
    say(`${what} failed: ${err.message}`, "error");
  } finally {
    busy(false);
  }
}

function showResult(result) {
  const finding = result.finding || "";
  const rows = Object.entries(result.class_probabilities || {})
    .map(([name, p]) => `<tr><td>${name}</td><td>${(100 * p).toFixed(1)} %</td></tr>`).join("");
  const presence = result.lesion_probability !== undefined ? ` <span class="muted">(lesion probability ${(100 * result.lesion_probability).toFixed(1)} %)</span>` : "";
  const review = result.needs_review ? `<p class="review">needs review: ${(result.review_reasons || []).join("; ")}</p>` : "";
  const warnings = (result.warnings || []).map((w) => `<p class="review">${w}</p>`).join("");
  const given = finding === "lesion" || finding === "uncertain" ? "<p class=\"muted\">class probabilities given a lesion</p>" : "";
  $("result").innerHTML = `<div class="finding ${finding.replace(" ", "-")}" id="finding">${finding}</div>${presence}`
    + (rows ? `${given}<table class="probs" id="class-probabilities">${rows}</table>` : "")
    + (result.class_prediction ? `<p>predicted: <strong>${result.class_prediction}</strong></p>` : "") + review + warnings;
}

function clickAt(event) {
  const [x, y] = toImage(event);
  if (!inside(x, y)) {
    say(`that click is outside the image (${state.cols} x ${state.rows} px): click on the image`, "error");
    return;
  }
  const key = event.button === 2 || event.shiftKey ? "background" : "foreground";
  const point = [Math.floor(x), Math.floor(y)];
  const clicks = { foreground: state.clicks.foreground.slice(), background: state.clicks.background.slice() };
  clicks[key].push(point);
  state.pending = { key, point };
  render();
  // the click counts once the model has answered it; a failed request leaves the clicks as they were
  runModel("munet_interactive", clicks, `${key} click at (${point})`, () => { state.clicks = clicks; })
    .finally(() => { state.pending = null; render(); });
}

// ---- saving -------------------------------------------------------------------------------
async function save() {
  if (!state.id || state.busy) return;
  const lesion = state.mask.reduce((n, v) => n + v, 0);
  if (lesion === 0 && !window.confirm("The mask is empty. Save this image as \"no lesion\"?")) {
    say("not saved: draw the lesion, or confirm \"no lesion\"", "info");
    return;
  }
  busy(true);
  try {
    const form = new FormData();
    form.append("label", await encodeGrayPng(state.mask, state.cols, state.rows), `${state.id}.png`);
    const cls = lesion ? $("class").value : "";
    form.append("params", JSON.stringify(cls ? { class: cls } : {}));
    const response = await api(`/datastore/label?image=${encodeURIComponent(state.id)}&tag=final`, { method: "PUT", body: form });
    const body = await response.json();
    localStorage.removeItem(draftKey(state.id));
    $("draft-info").textContent = "";
    const where = body.dicom_seg ? ` (stored in the PACS as DICOM SEG ${body.dicom_seg.seg_sop_instance_uid} and read back)` : "";
    say(`saved: ${lesion ? `${lesion} lesion pixels` : "no lesion"}${where}` + (body.warnings ? `; ${body.warnings.join("; ")}` : ""), body.warnings ? "error" : "ok");
    await refreshList();
  } catch (err) {
    say(`not saved: ${err.message}. Your drawing is kept in this browser: save again once the server (or its PACS) is back.`, "error");
  } finally {
    busy(false);
  }
}

// ---- controls -----------------------------------------------------------------------------
function setMode(mode) {
  state.mode = mode;
  for (const button of document.querySelectorAll("[data-mode]")) button.classList.toggle("active", button.dataset.mode === mode);
  view.classList.toggle("pan", mode === "pan");
}

view.addEventListener("contextmenu", (event) => event.preventDefault());
view.addEventListener("mousedown", (event) => {
  if (!state.picture) return;
  if (state.mode === "pan" || state.spaceDown || event.button === 1) {
    state.panning = { x: event.clientX - state.panX, y: event.clientY - state.panY };
    return;
  }
  if (state.busy) { say("the model is still working: wait for its answer", "info"); return; }
  if (state.mode === "click") { clickAt(event); return; }
  const [x, y] = toImage(event);
  if (!inside(x, y)) { say(`outside the image (${state.cols} x ${state.rows} px)`, "error"); return; }
  pushUndo();
  state.drawing = { erase: state.mode === "eraser" || event.button === 2, last: [x, y] };
  strokeTo(x, y);
});
window.addEventListener("mousemove", (event) => {
  if (state.panning) {
    state.panX = event.clientX - state.panning.x;
    state.panY = event.clientY - state.panning.y;
    render();
  } else if (state.drawing) {
    strokeTo(...toImage(event));
  }
  if (state.picture && event.target === view) {
    const [x, y] = toImage(event);
    $("cursor-info").textContent = inside(x, y) ? `x ${Math.floor(x)}, y ${Math.floor(y)}` : "";
  }
});
window.addEventListener("mouseup", () => {
  if (state.drawing) keepDraft();
  state.drawing = null;
  state.panning = null;
});
view.addEventListener("wheel", (event) => {
  event.preventDefault();
  const box = view.getBoundingClientRect();
  const mx = event.clientX - box.left, my = event.clientY - box.top;
  const factor = Math.exp(-event.deltaY * 0.0015);
  const zoom = Math.min(40, Math.max(0.05, state.zoom * factor));
  state.panX = mx - ((mx - state.panX) * zoom) / state.zoom;
  state.panY = my - ((my - state.panY) * zoom) / state.zoom;
  state.zoom = zoom;
  render();
}, { passive: false });
// the message bar and the side panels change the viewport's size: draw again at the new size, or
// the browser would stretch the old bitmap and the mask would sit off its pixels
new ResizeObserver(() => render()).observe($("viewport"));

$("auto").onclick = () => runModel("munet", {}, "automatic segmentation", () => { state.clicks = { foreground: [], background: [] }; });
for (const button of document.querySelectorAll("[data-mode]")) button.onclick = () => setMode(button.dataset.mode);
$("undo").onclick = undo;
$("clear").onclick = () => { if (!state.mask) return; pushUndo(); state.mask.fill(0); state.clicks = { foreground: [], background: [] }; paintMask(); keepDraft(); };
$("fit").onclick = fit;
$("save").onclick = save;
$("next").onclick = openNext;
$("opacity").oninput = () => { state.opacity = Number($("opacity").value); render(); };
$("class").onchange = keepDraft;
$("help-button").onclick = () => $("help-dialog").showModal();

window.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement || document.querySelector("dialog[open]")) return;
  const key = event.key.toLowerCase();
  if (key === " ") { state.spaceDown = true; view.classList.add("pan"); event.preventDefault(); return; }
  if ((event.ctrlKey || event.metaKey) && key === "z") { undo(); event.preventDefault(); return; }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const classes = [...$("class").options].map((o) => o.value);
  const actions = {
    a: () => $("auto").click(), c: () => setMode("click"), b: () => setMode("brush"), e: () => setMode("eraser"), p: () => setMode("pan"),
    u: undo, x: () => $("clear").click(), f: fit, s: save, n: openNext, "?": () => $("help-dialog").showModal(),
    o: () => { const steps = [0, 0.45, 1]; state.opacity = steps[(steps.indexOf(state.opacity) + 1) % 3] ?? 0.45; $("opacity").value = state.opacity; render(); },
    "[": () => { $("brush-size").value = Math.max(1, Number($("brush-size").value) - 2); },
    "]": () => { $("brush-size").value = Math.min(60, Number($("brush-size").value) + 2); },
  };
  if (/^[0-9]$/.test(key) && Number(key) < classes.length) { $("class").value = classes[Number(key)]; keepDraft(); return; }
  if (actions[key]) { actions[key](); event.preventDefault(); }
});
window.addEventListener("keyup", (event) => {
  if (event.key === " ") { state.spaceDown = false; view.classList.toggle("pan", state.mode === "pan"); }
});

// ---- start --------------------------------------------------------------------------------
async function start() {
  setMode("click");
  try {
    state.info = await (await api("/info/")).json();
    $("server-name").textContent = state.info.name || "";
    const names = (state.info.models && state.info.models.munet && state.info.models.munet.class_names) || ["benign", "malignant"];
    for (const [i, name] of names.entries()) {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = `${name} (${i + 1})`;
      $("class").append(option);
    }
    if (!state.info.models || !state.info.models.munet_interactive) {
      const why = (state.info.not_served || {}).munet_interactive;
      say(`clicks are off: the interactive model is not served${why ? ` (${why})` : ""}; brush and eraser work`, "info");
    }
    await refreshList();
    const wanted = decodeURIComponent(location.hash.slice(1));
    if (wanted && state.images.some((i) => i.id === wanted)) await openImage(wanted);
    else if (state.next) await openImage(state.next);
    else if (state.images.length) await openImage(state.images[0].id);
    else say("the datastore has no images", "info");
  } catch (err) {
    say(`cannot start: ${err.message}`, "error");
  }
}

start();
