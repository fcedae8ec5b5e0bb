// The mask editor's page: one photo at a time, its mask painted over it, saved as the user works.
//
// The mask is held at the photo's full resolution as one byte a pixel (1 = hole), the truth that is
// saved. It is shown in red: zoomed out, from a coarse copy at the first view's resolution (a coarse
// pixel is red where any photo pixel under it is hole); zoomed in, from full-resolution tiles painted
// from the mask when first shown and again after a change, so a 24-megapixel mask opens at once. A brush of size d paints the
// pixels whose centres lie within d/2 of the pointer's pixel centre; a stroke stamps that disc at
// every pixel of the straight lines between successive pointer positions, so the saved mask holds
// exactly the pixels painted, at any zoom. Saving sends a 1-bit PNG of the whole mask (deflated by
// the browser's own CompressionStream), debounced, and before another photo opens.
"use strict";

(function () {
  const SAVE_DELAY_MS = 700;
  const HISTORY_BYTES = 256 * 1024 * 1024;
  const MAX_TILES = 160;
  const OVERLAY_TILE = 1024;
  const MAX_OVERLAY_TILES = 48;
  const TILE_REQUESTS = 6;
  const MIN_SCALE = 1 / 64;
  const MAX_SCALE = 32;
  const SIZES = [1, 2, 3, 4, 5, 6, 7, 9, 11, 13, 16, 20, 24, 30, 40, 50, 64, 80, 100, 128, 160, 200, 256];
  const HOLE_RGBA = new Uint32Array(new Uint8Array([255, 40, 40, 255]).buffer)[0];

  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const state = {
    photos: [], index: -1, doc: null, tool: "brush", size: 9, opacity: 0.5, overlay: true,
    scale: 1, x: 0, y: 0, fitted: true, pointer: null, stroke: null, pan: null, space: false,
    drawing: false, opening: null,
    histories: new Map(), // photo name -> its undo and redo, kept while other photos are open
  };

  // --- server ----------------------------------------------------------------------------------

  const enc = encodeURIComponent;

  async function failure(response) {
    let text = response.statusText;
    try { text = (await response.json()).error || text; } catch (ignored) { /* not JSON */ }
    return new Error(text);
  }

  async function getJSON(url) {
    const response = await fetch(url);
    if (!response.ok) throw await failure(response);
    return response.json();
  }

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const image = new Image();
      image.onload = () => resolve(image);
      image.onerror = () => reject(new Error("could not load " + url));
      image.src = url;
    });
  }

  async function fetchMask(name) {
    const response = await fetch("/api/mask?name=" + enc(name));
    if (!response.ok) throw await failure(response);
    const words = new Uint32Array(await response.arrayBuffer());
    const [width, height, count] = words;
    const mask = new Uint8Array(width * height);
    let value = 0, at = 0;
    for (let i = 0; i < count; i++) {
      const flip = words[3 + i];
      if (value) mask.fill(1, at, flip);
      value ^= 1;
      at = flip;
    }
    if (value) mask.fill(1, at);
    return { mask, tag: response.headers.get("x-mask-tag") };
  }

  // --- PNG (1-bit grey) ------------------------------------------------------------------------

  const CRC_TABLE = (() => {
    const table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
    return table;
  })();

  function chunk(type, data) {
    const out = new Uint8Array(12 + data.length);
    const view = new DataView(out.buffer);
    view.setUint32(0, data.length);
    for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
    out.set(data, 8);
    let crc = 0xffffffff;
    for (let i = 4; i < 8 + data.length; i++) crc = CRC_TABLE[(crc ^ out[i]) & 0xff] ^ (crc >>> 8);
    view.setUint32(8 + data.length, (crc ^ 0xffffffff) >>> 0);
    return out;
  }

  async function encodePng(mask, width, height) {
    const stride = ((width + 7) >> 3) + 1;
    const raw = new Uint8Array(stride * height);
    for (let y = 0; y < height; y++) {
      const row = mask.subarray(y * width, (y + 1) * width);
      if (row.indexOf(1) < 0) continue;
      // Eight pixels a byte, most significant first; past the row's end `row[x]` is undefined (0).
      for (let x = 0, at = y * stride + 1; x < width; x += 8, at++) {
        raw[at] = (row[x] << 7) | (row[x + 1] << 6) | (row[x + 2] << 5) | (row[x + 3] << 4)
          | (row[x + 4] << 3) | (row[x + 5] << 2) | (row[x + 6] << 1) | row[x + 7];
      }
    }
    const stream = new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"));
    const deflated = new Uint8Array(await new Response(stream).arrayBuffer());
    const header = new Uint8Array(13);
    const view = new DataView(header.buffer);
    view.setUint32(0, width);
    view.setUint32(4, height);
    header[8] = 1; // bit depth; colour type 0 (grey), no interlace
    const signature = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
    const parts = [signature, chunk("IHDR", header), chunk("IDAT", deflated), chunk("IEND", new Uint8Array(0))];
    return new Blob(parts, { type: "image/png" });
  }

  // --- a photo and its mask --------------------------------------------------------------------

  function Doc(info, mask, tag, view) {
    this.name = info.name;
    this.width = info.width;
    this.height = info.height;
    this.levels = info.levels;
    this.viewLevel = info.view_level;
    this.tileSize = info.tile;
    this.status = info.status;
    this.mask = mask;
    this.tag = tag;
    this.view = view;
    this.tiles = new Map();
    this.loading = 0;
    this.shift = info.view_level; // a coarse pixel is 2^shift photo pixels a side
    this.coarse = document.createElement("canvas");
    this.coarse.width = info.levels[info.view_level].width;
    this.coarse.height = info.levels[info.view_level].height;
    this.overlayTiles = new Map();
    this.snapshot = null;
    this.rect = null;
    this.undo = [];
    this.redo = [];
    this.historyBytes = 0;
    this.revision = 0;
    this.savedRevision = 0;
    this.noDamage = false;
    this.queue = Promise.resolve();
    this.timer = null;
    this.stopped = false;
    this.last = null;
    this.preview = null;
    paintCoarse(this, { x0: 0, y0: 0, x1: this.width, y1: this.height });
  }

  function paintCoarse(doc, rect) {
    // The coarse pixels over `rect`, from the mask; `indexOf` jumps to the next hole pixel, then past
    // the coarse pixel it marks, so the cost follows the hole, not the photo.
    const s = doc.shift, cx0 = rect.x0 >> s, cy0 = rect.y0 >> s;
    const cw = ((rect.x1 - 1) >> s) + 1 - cx0, ch = ((rect.y1 - 1) >> s) + 1 - cy0;
    if (cw <= 0 || ch <= 0) return;
    const context = doc.coarse.getContext("2d");
    const image = context.createImageData(cw, ch);
    const pixels = new Uint32Array(image.data.buffer);
    const from = cx0 << s, to = Math.min(doc.width, (cx0 + cw) << s);
    for (let y = cy0 << s; y < Math.min(doc.height, (cy0 + ch) << s); y++) {
      const row = doc.mask.subarray(y * doc.width + from, y * doc.width + to), line = ((y >> s) - cy0) * cw;
      for (let x = row.indexOf(1); x >= 0; x = row.indexOf(1, (((x + from) >> s) + 1 << s) - from)) {
        pixels[line + ((x + from) >> s) - cx0] = HOLE_RGBA;
      }
    }
    context.putImageData(image, cx0, cy0);
  }

  function overlayTile(doc, column, row) {
    const key = column + "/" + row;
    let tile = doc.overlayTiles.get(key);
    if (!tile) {
      const canvas = document.createElement("canvas");
      canvas.width = Math.min(OVERLAY_TILE, doc.width - column * OVERLAY_TILE);
      canvas.height = Math.min(OVERLAY_TILE, doc.height - row * OVERLAY_TILE);
      tile = { canvas, dirty: true };
      doc.overlayTiles.set(key, tile);
      if (doc.overlayTiles.size > MAX_OVERLAY_TILES) doc.overlayTiles.delete(doc.overlayTiles.keys().next().value);
    }
    if (tile.dirty) {
      paintTile(doc, tile.canvas, column * OVERLAY_TILE, row * OVERLAY_TILE);
      tile.dirty = false;
    }
    return tile.canvas;
  }

  function paintTile(doc, canvas, x0, y0) {
    // Every run of hole pixels becomes one `fill` of red.
    const context = canvas.getContext("2d"), w = canvas.width;
    const image = context.createImageData(w, canvas.height);
    const pixels = new Uint32Array(image.data.buffer);
    for (let y = 0; y < canvas.height; y++) {
      const row = doc.mask.subarray((y0 + y) * doc.width + x0, (y0 + y) * doc.width + x0 + w);
      for (let start = row.indexOf(1); start >= 0; ) {
        let end = row.indexOf(0, start);
        if (end < 0) end = w;
        pixels.fill(HOLE_RGBA, y * w + start, y * w + end);
        start = row.indexOf(1, end);
      }
    }
    context.putImageData(image, 0, 0);
  }

  function invalidate(doc, rect) {
    paintCoarse(doc, rect);
    for (const [key, tile] of doc.overlayTiles) {
      const [column, row] = key.split("/").map(Number);
      const x0 = column * OVERLAY_TILE, y0 = row * OVERLAY_TILE;
      if (x0 < rect.x1 && rect.x0 < x0 + OVERLAY_TILE && y0 < rect.y1 && rect.y0 < y0 + OVERLAY_TILE) tile.dirty = true;
    }
  }

  function grow(doc, x0, y0, x1, y1) {
    const r = doc.rect;
    doc.rect = r ? { x0: Math.min(r.x0, x0), y0: Math.min(r.y0, y0), x1: Math.max(r.x1, x1), y1: Math.max(r.y1, y1) }
      : { x0, y0, x1, y1 };
  }

  function stamp(doc, cx, cy, value, touched) {
    const radius = state.size / 2, r2 = radius * radius, reach = Math.floor(radius);
    for (let dy = -reach; dy <= reach; dy++) {
      const y = cy + dy;
      if (y < 0 || y >= doc.height) continue;
      const span = Math.floor(Math.sqrt(r2 - dy * dy));
      const x0 = Math.max(0, cx - span), x1 = Math.min(doc.width - 1, cx + span);
      if (x0 > x1) continue;
      doc.mask.fill(value, y * doc.width + x0, y * doc.width + x1 + 1);
      touched.x0 = Math.min(touched.x0, x0); touched.x1 = Math.max(touched.x1, x1 + 1);
      touched.y0 = Math.min(touched.y0, y); touched.y1 = Math.max(touched.y1, y + 1);
    }
  }

  function line(doc, from, to, value) {
    // Bresenham's line, a disc at every pixel of it; only the region touched is repainted.
    const touched = { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity };
    let x = from.x, y = from.y;
    const dx = Math.abs(to.x - x), dy = -Math.abs(to.y - y);
    const sx = x < to.x ? 1 : -1, sy = y < to.y ? 1 : -1;
    let error = dx + dy;
    for (;;) {
      stamp(doc, x, y, value, touched);
      if (x === to.x && y === to.y) break;
      const twice = 2 * error;
      if (twice >= dy) { error += dy; x += sx; }
      if (twice <= dx) { error += dx; y += sy; }
    }
    if (touched.x0 < touched.x1) {
      grow(doc, touched.x0, touched.y0, touched.x1, touched.y1);
      invalidate(doc, touched);
    }
  }

  function floodFill(doc, start) {
    // The 4-connected region of the clicked value takes the other one: inside a closed outline it
    // becomes hole; on a marked area (a false detection) the whole area is cleared.
    const { width, height, mask } = doc;
    const target = mask[start.y * width + start.x], value = target ? 0 : 1;
    const touched = { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity };
    const seeds = [start.x, start.y];
    while (seeds.length) {
      const y = seeds.pop(), x = seeds.pop(), row = y * width;
      if (mask[row + x] !== target) continue;
      let left = x, right = x;
      while (left > 0 && mask[row + left - 1] === target) left--;
      while (right < width - 1 && mask[row + right + 1] === target) right++;
      mask.fill(value, row + left, row + right + 1);
      touched.x0 = Math.min(touched.x0, left); touched.x1 = Math.max(touched.x1, right + 1);
      touched.y0 = Math.min(touched.y0, y); touched.y1 = Math.max(touched.y1, y + 1);
      for (const next of [y - 1, y + 1]) {
        if (next < 0 || next >= height) continue;
        let inRun = false;
        for (let i = left, at = next * width + left; i <= right; i++, at++) {
          const same = mask[at] === target;
          if (same && !inRun) seeds.push(i, next);
          inRun = same;
        }
      }
    }
    grow(doc, touched.x0, touched.y0, touched.x1, touched.y1);
    invalidate(doc, touched);
  }

  // --- undo and redo: the rectangle a change touched, before and after -------------------------

  function begin(doc) {
    if (!doc.snapshot) doc.snapshot = new Uint8Array(doc.mask.length);
    doc.snapshot.set(doc.mask);
    doc.rect = null;
  }

  function region(buffer, doc, rect) {
    const w = rect.x1 - rect.x0, out = new Uint8Array(w * (rect.y1 - rect.y0));
    for (let y = rect.y0; y < rect.y1; y++) {
      const from = y * doc.width + rect.x0;
      out.set(buffer.subarray(from, from + w), (y - rect.y0) * w);
    }
    return out;
  }

  function finish(doc, options) {
    const rect = doc.rect;
    doc.rect = null;
    if (!rect) return false;
    const before = region(doc.snapshot, doc, rect), after = region(doc.mask, doc, rect);
    if (before.every((value, i) => value === after[i]) && !(options && options.noDamage)) return false;
    doc.undo.push({ rect, before, after, noDamage: Boolean(options && options.noDamage) });
    doc.redo = [];
    doc.historyBytes += before.length * 2;
    while (doc.historyBytes > HISTORY_BYTES && doc.undo.length > 1) {
      const dropped = doc.undo.shift();
      doc.historyBytes -= dropped.before.length * 2;
    }
    changed(doc, options && options.noDamage);
    return true;
  }

  function put(doc, rect, values) {
    const w = rect.x1 - rect.x0;
    for (let y = rect.y0; y < rect.y1; y++) {
      doc.mask.set(values.subarray((y - rect.y0) * w, (y - rect.y0 + 1) * w), y * doc.width + rect.x0);
    }
    invalidate(doc, rect);
  }

  function undo() {
    const doc = state.doc;
    if (!doc || !doc.undo.length) return;
    const change = doc.undo.pop();
    put(doc, change.rect, change.before);
    doc.redo.push(change);
    const earlier = doc.undo[doc.undo.length - 1];
    changed(doc, Boolean(earlier && earlier.noDamage));
  }

  function redo() {
    const doc = state.doc;
    if (!doc || !doc.redo.length) return;
    const change = doc.redo.pop();
    put(doc, change.rect, change.after);
    doc.undo.push(change);
    changed(doc, change.noDamage);
  }

  // Another photo opens: the one left keeps its undo and redo, for as long as its mask file is the
  // one this page saved (its tag); the photos left longest ago lose theirs first, all within
  // HISTORY_BYTES together.
  function keepHistory(doc) {
    state.histories.delete(doc.name);
    if (doc.stopped || doc.revision !== doc.savedRevision || !(doc.undo.length || doc.redo.length)) return;
    state.histories.set(doc.name, { tag: doc.tag, undo: doc.undo, redo: doc.redo, bytes: doc.historyBytes });
    let total = 0;
    for (const kept of state.histories.values()) total += kept.bytes;
    for (const [name, kept] of state.histories) {
      if (total <= HISTORY_BYTES) break;
      state.histories.delete(name);
      total -= kept.bytes;
    }
  }

  function restoreHistory(doc) {
    const kept = state.histories.get(doc.name);
    state.histories.delete(doc.name);
    if (!kept || kept.tag !== doc.tag) return; // rewritten on disk since: the history is of another mask
    doc.undo = kept.undo;
    doc.redo = kept.redo;
    doc.historyBytes = kept.bytes;
  }

  function wholeMask(doc, noDamage) {
    begin(doc);
    doc.mask.fill(0);
    grow(doc, 0, 0, doc.width, doc.height);
    invalidate(doc, doc.rect);
    finish(doc, { noDamage });
    if (noDamage) save(doc);
  }

  // --- saving ----------------------------------------------------------------------------------

  function changed(doc, noDamage) {
    hidePreview(doc);
    doc.noDamage = Boolean(noDamage);
    doc.revision++;
    clearTimeout(doc.timer);
    doc.timer = setTimeout(() => save(doc), SAVE_DELAY_MS);
    showSaveState(doc);
    render();
  }

  function save(doc) {
    clearTimeout(doc.timer);
    doc.timer = null;
    doc.queue = doc.queue.then(() => saveNow(doc));
    return doc.queue;
  }

  async function saveNow(doc) {
    if (doc.revision === doc.savedRevision || doc.stopped) return;
    const revision = doc.revision;
    doc.saving = true;
    showSaveState(doc);
    try {
      const body = await encodePng(doc.mask, doc.width, doc.height);
      const url = "/api/mask?name=" + enc(doc.name) + (doc.noDamage ? "&no_damage=1" : "");
      const response = await fetch(url, { method: "PUT", body, headers: { "If-Match": doc.tag, "Content-Type": "image/png" } });
      if (!response.ok) {
        if (response.status === 409) doc.stopped = true; // the file changed under us: never overwrite it
        throw await failure(response);
      }
      const reply = await response.json();
      doc.tag = reply.tag;
      doc.savedRevision = revision;
      setStatus(doc.name, reply.status);
      showMessage("");
    } catch (error) {
      doc.error = error.message || String(error);
      showMessage("not saved: " + doc.error);
    } finally {
      doc.saving = false;
      showSaveState(doc);
    }
  }

  function showSaveState(doc) {
    let text = "saved";
    if (doc.stopped) text = "not saved (reload the page)";
    else if (doc.saving) text = "saving…";
    else if (doc.revision !== doc.savedRevision) text = "unsaved changes";
    $("save-state").textContent = text;
    $("save-state").dataset.state = text === "saved" ? "saved" : "pending";
  }

  // --- the fill preview (`inpaint edit --model`) ---------------------------------------------------

  function hidePreview(doc) {
    doc.preview = null;
    canvas.dataset.preview = "0";
  }

  async function preview() {
    // The part of the photo on screen, filled by the server's model with the mask as it is now.
    const doc = state.doc;
    if (!doc) return;
    if (doc.preview) { hidePreview(doc); render(); return; }
    const [left, top, right, bottom] = visible(doc);
    const x = Math.floor(left), y = Math.floor(top), w = Math.ceil(right) - x, h = Math.ceil(bottom) - y;
    if (w < 1 || h < 1) return;
    const part = new Uint8Array(w * h);
    for (let row = 0; row < h; row++) {
      const from = (y + row) * doc.width + x;
      part.set(doc.mask.subarray(from, from + w), row * w);
    }
    const revision = doc.revision;
    showMessage("filling the part on screen…");
    try {
      const url = "/api/preview?name=" + enc(doc.name) + "&x=" + x + "&y=" + y + "&w=" + w + "&h=" + h;
      const response = await fetch(url, { method: "POST", body: await encodePng(part, w, h), headers: { "Content-Type": "image/png" } });
      if (!response.ok) throw await failure(response);
      const address = URL.createObjectURL(await response.blob());
      const image = await loadImage(address);
      URL.revokeObjectURL(address);
      if (state.doc !== doc || doc.revision !== revision) return; // changed meanwhile: not this mask's fill
      doc.preview = { image, x, y, w, h };
      canvas.dataset.preview = "1";
      showMessage("the fill, previewed (V or any change hides it)");
      render();
    } catch (error) {
      showMessage("no preview: " + (error.message || error));
    }
  }

  // --- the view ----------------------------------------------------------------------------------

  let frameRequested = false;

  function render() {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(draw);
  }

  function draw() {
    frameRequested = false;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.round(canvas.clientWidth * ratio), height = Math.round(canvas.clientHeight * ratio);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
      if (state.fitted) fit();
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#161718";
    ctx.fillRect(0, 0, width, height);
    const doc = state.doc;
    if (!doc) return;
    ctx.setTransform(state.scale, 0, 0, state.scale, state.x, state.y);
    ctx.imageSmoothingEnabled = state.scale < 1;
    ctx.drawImage(doc.view, 0, 0, doc.width, doc.height);
    drawTiles(doc);
    const preview = doc.preview;
    if (preview) {
      ctx.drawImage(preview.image, preview.x, preview.y, preview.w, preview.h);
    } else if (state.overlay) {
      ctx.globalAlpha = state.opacity;
      drawOverlay(doc);
      ctx.globalAlpha = 1;
    }
    drawCursor(doc);
  }

  function drawOverlay(doc) {
    if (state.scale * (1 << doc.shift) <= 1) { // a coarse pixel covers at most one screen pixel
      ctx.drawImage(doc.coarse, 0, 0, doc.coarse.width << doc.shift, doc.coarse.height << doc.shift);
      return;
    }
    const [left, top, right, bottom] = visible(doc);
    for (let row = Math.floor(top / OVERLAY_TILE); row * OVERLAY_TILE < bottom; row++) {
      for (let column = Math.floor(left / OVERLAY_TILE); column * OVERLAY_TILE < right; column++) {
        ctx.drawImage(overlayTile(doc, column, row), column * OVERLAY_TILE, row * OVERLAY_TILE);
      }
    }
  }

  function visible(doc) {
    // The part of the photo on screen, in photo pixels: [left, top, right, bottom].
    return [
      Math.max(0, -state.x / state.scale), Math.max(0, -state.y / state.scale),
      Math.min(doc.width, (canvas.width - state.x) / state.scale),
      Math.min(doc.height, (canvas.height - state.y) / state.scale),
    ];
  }

  function drawTiles(doc) {
    const level = Math.max(0, Math.floor(Math.log2(1 / state.scale) + 1e-9));
    if (level >= doc.viewLevel) return;
    const size = doc.levels[level], tile = doc.tileSize;
    const fx = doc.width / size.width, fy = doc.height / size.height;
    const [left, top, right, bottom] = visible(doc);
    for (let row = Math.floor(top / fy / tile); row * tile * fy < bottom; row++) {
      for (let column = Math.floor(left / fx / tile); column * tile * fx < right; column++) {
        const image = tileImage(doc, level, column, row);
        if (image) ctx.drawImage(image, column * tile * fx, row * tile * fy, image.width * fx, image.height * fy);
      }
    }
  }

  function tileImage(doc, level, column, row) {
    const key = level + "/" + column + "/" + row;
    const known = doc.tiles.get(key);
    if (known) return known.complete && known.naturalWidth ? known : null;
    if (doc.loading >= TILE_REQUESTS) return null;
    const image = new Image();
    doc.loading++;
    image.onload = image.onerror = () => { doc.loading--; if (state.doc === doc) render(); };
    image.src = "/api/tile?name=" + enc(doc.name) + "&level=" + level + "&x=" + column + "&y=" + row;
    doc.tiles.set(key, image);
    if (doc.tiles.size > MAX_TILES) doc.tiles.delete(doc.tiles.keys().next().value);
    return null;
  }

  function drawCursor(doc) {
    if (!state.pointer || state.tool === "fill" || state.pan) return;
    ctx.lineWidth = 1 / state.scale;
    ctx.strokeStyle = state.tool === "brush" ? "rgba(255,255,255,0.9)" : "rgba(120,200,255,0.9)";
    ctx.beginPath();
    ctx.arc(state.pointer.x + 0.5, state.pointer.y + 0.5, Math.max(state.size / 2, 0.5), 0, 2 * Math.PI);
    ctx.stroke();
  }

  function fit() {
    const doc = state.doc;
    if (!doc || !canvas.width) return;
    const scale = Math.min(canvas.width / doc.width, canvas.height / doc.height);
    state.scale = Math.max(MIN_SCALE, scale);
    state.x = Math.round((canvas.width - doc.width * state.scale) / 2);
    state.y = Math.round((canvas.height - doc.height * state.scale) / 2);
    state.fitted = true;
    showZoom();
  }

  function zoomTo(scale, cx, cy) {
    // The photo pixel under (cx, cy) stays there; offsets are whole device pixels, so that at 1:1
    // and at whole ratios every screen pixel maps to the same photo pixels every time.
    scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, scale));
    const ix = (cx - state.x) / state.scale, iy = (cy - state.y) / state.scale;
    state.scale = scale;
    state.x = Math.round(cx - ix * scale);
    state.y = Math.round(cy - iy * scale);
    state.fitted = false;
    showZoom();
    render();
  }

  function showZoom() {
    const s = state.scale;
    $("zoom-shown").textContent = s >= 1 ? (Math.round(s * 100) / 100) + ":1" : "1:" + (Math.round(100 / s) / 100);
    const option = [...$("zoom").options].find((o) => o.value !== "fit" && Math.abs(Number(o.value) - s) < 1e-9);
    $("zoom").value = state.fitted ? "fit" : option ? option.value : "";
  }

  function devicePoint(event) {
    const box = canvas.getBoundingClientRect(), ratio = window.devicePixelRatio || 1;
    return { x: (event.clientX - box.left) * ratio, y: (event.clientY - box.top) * ratio };
  }

  function photoPoint(event) {
    const p = devicePoint(event), doc = state.doc;
    const x = Math.floor((p.x - state.x) / state.scale), y = Math.floor((p.y - state.y) / state.scale);
    const margin = state.size + 1; // far outside the photo a stroke only needs to reach its edge
    return {
      x: Math.min(doc.width + margin, Math.max(-margin, x)),
      y: Math.min(doc.height + margin, Math.max(-margin, y)),
    };
  }

  // --- pointer and keys ---------------------------------------------------------------------------

  canvas.addEventListener("pointerdown", (event) => {
    const doc = state.doc;
    if (!doc || doc.stopped) return;
    canvas.setPointerCapture(event.pointerId);
    if (event.button === 1 || (event.button === 0 && state.space)) {
      state.pan = { start: devicePoint(event), x: state.x, y: state.y };
      canvas.classList.add("panning");
      return;
    }
    if (event.button !== 0) return;
    const p = photoPoint(event);
    if (state.tool === "fill") {
      if (p.x < 0 || p.y < 0 || p.x >= doc.width || p.y >= doc.height) return;
      begin(doc);
      floodFill(doc, p);
      finish(doc);
      doc.last = p;
      return;
    }
    const value = state.tool === "brush" ? 1 : 0;
    begin(doc);
    line(doc, event.shiftKey && doc.last ? doc.last : p, p, value);
    state.stroke = { value, last: p };
    render();
  });

  canvas.addEventListener("pointermove", (event) => {
    if (!state.doc) return;
    const p = photoPoint(event);
    state.pointer = p;
    $("where").textContent = "x " + p.x + ", y " + p.y;
    if (state.pan) {
      const now = devicePoint(event);
      state.x = Math.round(state.pan.x + now.x - state.pan.start.x);
      state.y = Math.round(state.pan.y + now.y - state.pan.start.y);
      state.fitted = false;
    } else if (state.stroke) {
      line(state.doc, state.stroke.last, p, state.stroke.value);
      state.stroke.last = p;
    }
    render();
  });

  function endPointer() {
    if (state.stroke) {
      state.doc.last = state.stroke.last;
      state.stroke = null;
      finish(state.doc);
    }
    if (state.pan) {
      state.pan = null;
      canvas.classList.remove("panning");
      showZoom();
    }
  }

  canvas.addEventListener("pointerup", endPointer);
  canvas.addEventListener("pointercancel", endPointer);
  canvas.addEventListener("pointerleave", () => { state.pointer = null; render(); });
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const p = devicePoint(event);
    zoomTo(state.scale * Math.pow(2, -event.deltaY / 400), p.x, p.y);
  }, { passive: false });

  function zoomCentred(scale) {
    zoomTo(scale, canvas.width / 2, canvas.height / 2);
  }

  function stepSize(direction) {
    const index = SIZES.findIndex((size) => size >= state.size);
    const at = index < 0 ? SIZES.length - 1 : index;
    state.size = SIZES[Math.min(SIZES.length - 1, Math.max(0, SIZES[at] === state.size ? at + direction : direction > 0 ? at : at - 1))];
    $("size").textContent = String(state.size);
    render();
  }

  function chooseTool(tool) {
    state.tool = tool;
    for (const button of document.querySelectorAll("[data-tool]")) {
      button.classList.toggle("active", button.dataset.tool === tool);
    }
    render();
  }

  function toggleOverlay() {
    state.overlay = !state.overlay;
    $("toggle-overlay").classList.toggle("active", state.overlay);
    render();
  }

  const KEYS = {
    "[": () => stepSize(-1), "]": () => stepSize(1),
    b: () => chooseTool("brush"), e: () => chooseTool("eraser"), f: () => chooseTool("fill"),
    m: toggleOverlay, v: preview, n: () => go(1), ArrowRight: () => go(1), PageDown: () => go(1),
    p: () => go(-1), ArrowLeft: () => go(-1), PageUp: () => go(-1),
    "1": () => zoomCentred(1), "0": () => { fit(); render(); },
    "+": () => zoomCentred(state.scale * 2), "=": () => zoomCentred(state.scale * 2),
    "-": () => zoomCentred(state.scale / 2),
  };

  document.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement && event.target.type !== "range") return;
    const key = event.key;
    if ((event.ctrlKey || event.metaKey) && (key === "z" || key === "Z" || key === "y")) {
      event.preventDefault();
      if (key === "y" || event.shiftKey) redo(); else undo();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (key === " ") { state.space = true; event.preventDefault(); return; }
    const action = KEYS[key.length === 1 ? key.toLowerCase() : key] || KEYS[key];
    if (action) { event.preventDefault(); action(); }
  });
  document.addEventListener("keyup", (event) => { if (event.key === " ") state.space = false; });

  // --- the batch ---------------------------------------------------------------------------------

  function showMessage(text) {
    $("message").textContent = text;
  }

  function setStatus(name, status) {
    const entry = state.photos.find((photo) => photo.name === name);
    if (!entry) return;
    entry.status = status;
    const badge = entry.item.querySelector(".badge");
    badge.textContent = status;
    badge.className = "badge " + status.replace(" ", "-");
  }

  function listPhotos(photos) {
    const list = $("photos");
    list.textContent = "";
    photos.forEach((photo, index) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = photo.name;
      const badge = document.createElement("span");
      badge.className = "badge";
      button.append(name, badge);
      if (photo.problem) { button.disabled = true; button.title = photo.problem; }
      button.addEventListener("click", () => open(index));
      item.append(button);
      list.append(item);
      photo.item = button;
    });
    state.photos = photos;
    for (const photo of photos) setStatus(photo.name, photo.status);
  }

  function go(direction) {
    for (let i = state.index + direction; i >= 0 && i < state.photos.length; i += direction) {
      if (!state.photos[i].problem) { open(i); return; }
    }
  }

  async function open(index) {
    if (state.opening) return;
    state.opening = index;
    try {
      const leaving = state.doc;
      if (leaving) {
        await save(leaving);
        keepHistory(leaving);
      }
      canvas.dataset.ready = "0";
      canvas.dataset.preview = "0";
      const name = state.photos[index].name;
      const info = await getJSON("/api/photo?name=" + enc(name));
      const [view, mask] = await Promise.all([loadImage("/api/view?name=" + enc(name)), fetchMask(name)]);
      state.doc = new Doc(info, mask.mask, mask.tag, view);
      restoreHistory(state.doc);
      state.index = index;
      for (const photo of state.photos) photo.item.classList.toggle("current", photo.name === name);
      state.photos[index].item.scrollIntoView({ block: "nearest" });
      $("position").textContent = (index + 1) + " of " + state.photos.length;
      history.replaceState(null, "", "#" + enc(name));
      showMessage("");
      showSaveState(state.doc);
      fit();
      render();
      canvas.dataset.photo = name;
      canvas.dataset.ready = "1";
    } catch (error) {
      showMessage(String(error.message || error));
    } finally {
      state.opening = null;
    }
  }

  function bind() {
    for (const button of document.querySelectorAll("[data-tool]")) {
      button.addEventListener("click", () => chooseTool(button.dataset.tool));
    }
    $("smaller").addEventListener("click", () => stepSize(-1));
    $("larger").addEventListener("click", () => stepSize(1));
    $("toggle-overlay").addEventListener("click", toggleOverlay);
    $("opacity").addEventListener("input", (event) => { state.opacity = event.target.value / 100; render(); });
    $("zoom").addEventListener("change", (event) => {
      if (event.target.value === "fit") { fit(); render(); } else zoomCentred(Number(event.target.value));
      event.target.blur();
    });
    $("undo").addEventListener("click", undo);
    $("redo").addEventListener("click", redo);
    $("clear").addEventListener("click", () => state.doc && wholeMask(state.doc, false));
    $("no-damage").addEventListener("click", () => state.doc && wholeMask(state.doc, true));
    $("previous").addEventListener("click", () => go(-1));
    if ($("preview")) $("preview").addEventListener("click", preview);
    $("next").addEventListener("click", () => go(1));
    window.addEventListener("resize", render);
    window.addEventListener("beforeunload", (event) => {
      const doc = state.doc;
      if (doc && doc.revision !== doc.savedRevision && !doc.stopped) {
        save(doc);
        event.preventDefault();
      }
    });
  }

  async function start() {
    bind();
    chooseTool("brush");
    $("toggle-overlay").classList.add("active");
    try {
      const listing = await getJSON("/api/photos");
      listPhotos(listing.photos);
      const wanted = decodeURIComponent(location.hash.slice(1));
      let index = state.photos.findIndex((photo) => photo.name === wanted && !photo.problem);
      if (index < 0) index = state.photos.findIndex((photo) => !photo.problem);
      if (index >= 0) await open(index);
      else showMessage("no photo of this batch can be edited (see the list)");
    } catch (error) {
      showMessage(String(error.message || error));
    }
  }

  start();
}());
