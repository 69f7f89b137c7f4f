// A small software rasteriser for the map's points (an ES module: SHAPES, pack, stamp, rasterize).
//
// Why: Bokeh draws each marker itself — a canvas path per point, or a WebGL instance per
// point. With a GPU that is fast; without one (software WebGL: VMs, remote desktops, GPU
// block-listed laptops, headless browsers) 100k markers cost 2-4 s per repaint, and every
// selection, colour change or zoom repaints them all. Stamping precomputed marker masks into
// one RGBA buffer costs a fraction of a microsecond per point on any machine, and Bokeh then
// paints a single image. The scatter glyph stays in the plot for hit testing (lasso, box,
// tap) and hover; map/bokeh.js stops it from painting.
//
// Images are rows of packed RGBA (little-endian Uint32: 0xAABBGGRR), row 0 at the bottom,
// as Bokeh's image_rgba expects.

export const SHAPES = { circle: 0, diamond: 1 };
const SUB = 4; // sub-samples per pixel side for antialiased coverage

// "#rrggbb" -> packed opaque RGBA
export function pack(hex) {
  const v = parseInt(hex.slice(1, 7), 16);
  return ((255 << 24) | ((v & 255) << 16) | (v & 0xff00) | ((v >> 16) & 255)) >>> 0;
}

// Inside-test of a shape of outer half-size r (pixels) at offset (x, y) from its centre.
function inside(shape, x, y, r) {
  if (shape === SHAPES.diamond) return Math.abs(x) / (0.8 * r) + Math.abs(y) / (1.1 * r) <= 1;
  return x * x + y * y <= r * r;
}

const stamps = new Map();

// The mask of one marker: pixel offsets with their coverage (0..256) and the share of
// that coverage that is outline (0..256). size is the marker's diameter in CSS pixels,
// scale the image pixels per CSS pixel; the outline is one CSS pixel wide.
export function stamp(shape, size, scale) {
  const key = `${shape}:${size}:${scale}`;
  if (stamps.has(key)) return stamps.get(key);
  const r = (size / 2 + 0.5) * scale, lw = scale, R = Math.ceil(r + 1);
  const dx = [], dy = [], cov = [], line = [];
  for (let y = -R; y <= R; y++) {
    for (let x = -R; x <= R; x++) {
      let hit = 0, edge = 0;
      for (let sy = 0; sy < SUB; sy++) {
        for (let sx = 0; sx < SUB; sx++) {
          const px = x - 0.5 + (sx + 0.5) / SUB, py = y - 0.5 + (sy + 0.5) / SUB;
          if (!inside(shape, px, py, r)) continue;
          hit++;
          if (!inside(shape, px, py, r - lw)) edge++;
        }
      }
      if (!hit) continue;
      dx.push(x);
      dy.push(y);
      cov.push(Math.round((256 * hit) / (SUB * SUB)));
      line.push(Math.round((256 * edge) / hit));
    }
  }
  const s = { dx: Int16Array.from(dx), dy: Int16Array.from(dy), cov: Uint16Array.from(cov), line: Uint16Array.from(line), radius: R };
  stamps.set(key, s);
  return s;
}

// Stamp points into an opaque image.
//
// opts: width, height (image pixels); x0, x1, y0, y1 (the data window the image covers);
// x, y (Float32Array, data coordinates; NaN = not drawn); fill, line (Uint32Array packed
// colours per point); shape (Uint8Array, SHAPES codes); order (Int32Array: the points to
// draw, in drawing order, later on top); alpha (Uint16Array or a number, 0..256 per point
// in `order`); size (CSS pixels); scale (image pixels per CSS pixel); background (packed).
// Returns the Uint32Array image.
export function rasterize(opts) {
  const { width: W, height: H, x0, x1, y0, y1, x, y, fill, line, shape, order, size, scale } = opts;
  const img = new Uint32Array(W * H);
  img.fill(opts.background === undefined ? 0xffffffff : opts.background);
  if (!(x1 > x0) || !(y1 > y0) || !W || !H) return img;
  const px8 = new Uint8ClampedArray(img.buffer);
  const fx = W / (x1 - x0), fy = H / (y1 - y0);
  const alphas = typeof opts.alpha === "number" ? null : opts.alpha;
  const alpha0 = typeof opts.alpha === "number" ? opts.alpha : 0;
  // per shape: the stamp, its pixel offsets in this image, and its weights per alpha
  const masks = [stamp(0, size, scale), stamp(1, size, scale)].map((m) => ({
    ...m, off: Int32Array.from(m.dx, (dx, j) => (m.dy[j] * W + dx) * 4), weights: new Map(),
  }));
  const weightsOf = (m, a) => {
    let w = m.weights.get(a);
    if (!w) { w = Int32Array.from(m.cov, (c) => (a * c) >> 8); m.weights.set(a, w); }
    return w;
  };
  for (let k = 0; k < order.length; k++) {
    const i = order[k];
    const cx = Math.floor((x[i] - x0) * fx), cy = Math.floor((y[i] - y0) * fy);
    const m = masks[shape[i]];
    const R = m.radius;
    if (!(cx > -R && cx < W + R && cy > -R && cy < H + R)) continue; // also NaN
    const wt = weightsOf(m, alphas ? alphas[k] : alpha0);
    const f = fill[i], l = line[i];
    const fr = f & 255, fg = (f >> 8) & 255, fb = (f >> 16) & 255;
    const { dx, dy, off, line: ls } = m;
    const n = off.length;
    if (f === l && cx >= R && cx < W - R && cy >= R && cy < H - R) { // the common case: one colour, no clipping
      const base = (cy * W + cx) * 4;
      for (let j = 0; j < n; j++) {
        const p = base + off[j], w = wt[j];
        px8[p] += ((fr - px8[p]) * w) >> 8;
        px8[p + 1] += ((fg - px8[p + 1]) * w) >> 8;
        px8[p + 2] += ((fb - px8[p + 2]) * w) >> 8;
      }
      continue;
    }
    const lr = l & 255, lg = (l >> 8) & 255, lb = (l >> 16) & 255;
    for (let j = 0; j < n; j++) {
      const px = cx + dx[j], py = cy + dy[j];
      if (px < 0 || px >= W || py < 0 || py >= H) continue;
      const t = ls[j], w = wt[j];
      const r = fr + (((lr - fr) * t) >> 8), g = fg + (((lg - fg) * t) >> 8), b = fb + (((lb - fb) * t) >> 8);
      const p = (py * W + px) * 4;
      px8[p] += ((r - px8[p]) * w) >> 8;
      px8[p + 1] += ((g - px8[p + 1]) * w) >> 8;
      px8[p + 2] += ((b - px8[p + 2]) * w) >> 8;
    }
  }
  return img;
}

