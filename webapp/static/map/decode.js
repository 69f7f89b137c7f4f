// The wire format of /api/points (hl_debug/mapdata.py), decoded into typed arrays: no DOM,
// no Bokeh, so tests can run it on the golden payload (tests/fixtures/points_payload.json).
//
// numeric columns -> Float32Array / Int32Array / ... (a missing float is NaN; an integer
//   column holding its "null" marker becomes a Float64Array with NaN there)
// categorical columns -> { codes, cats } (code -1 = missing)
// text columns -> the plain JSON list

const ARRAYS = { int8: Int8Array, int16: Int16Array, int32: Int32Array, float16: Uint16Array, float32: Float32Array,
  float64: Float64Array };

// IEEE 754 binary16 -> number
export function half(h) {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

let halves = null; // every binary16 value as a float32 (exact), built on first use

function fromHalf(bits) {
  if (!halves) {
    halves = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halves[h] = half(h);
  }
  const out = new Float32Array(bits.length); // a lookup per value, not a call: 1M values in a few ms
  for (let i = 0; i < bits.length; i++) out[i] = halves[bits[i]];
  return out;
}

function bytesOf(base64) {
  if (Uint8Array.fromBase64) return Uint8Array.fromBase64(base64); // native (Chrome 140+, Firefox 133+)
  const bin = atob(base64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

// One encoded column -> its typed form (see the top of this file).
export function decodeColumn(col) {
  if (col.dtype === "str") return col.data;
  const Array_ = ARRAYS[col.dtype];
  if (!Array_) throw new Error(`unknown column dtype ${JSON.stringify(col.dtype)}`);
  const bytes = bytesOf(col.data);
  let arr = new Array_(bytes.buffer, bytes.byteOffset, bytes.byteLength / Array_.BYTES_PER_ELEMENT);
  if (col.dtype === "float16") arr = fromHalf(arr);
  if (col.categories) return { codes: arr, cats: col.categories };
  if (col.null !== undefined && arr.includes(col.null)) {
    const out = new Float64Array(arr.length);
    for (let i = 0; i < arr.length; i++) out[i] = arr[i] === col.null ? NaN : arr[i];
    arr = out;
  }
  return arr;
}

// The whole /api/points body -> { n, format, key, has_map, <column>: decoded }. `format` is
// checked against the one the page was built for (map-config), when given.
export function decodePayload(body, format) {
  if (format !== undefined && body.format !== format) {
    console.warn(`hl-debug: /api/points has format ${body.format}, the page expects ${format}; reload the page`);
  }
  const all = { n: body.n, format: body.format, key: body.key, has_map: body.has_map };
  for (const [name, col] of Object.entries(body.columns)) all[name] = decodeColumn(col);
  return all;
}

const isCategorical = (col) => col !== null && typeof col === "object" && "codes" in col;

// categorical column value at row i (null when missing)
export const cat = (col, i) => (col.codes[i] < 0 ? null : col.cats[col.codes[i]]);

// the code of `value` in a categorical column: -1 for missing ("__none__"), -2 when absent
export function codeOf(col, value) {
  if (value === "__none__") return -1;
  const k = col.cats.indexOf(value);
  return k < 0 ? -2 : k;
}

// Any decoded column's value at row i, null for missing (what the inspector and tests read).
export function valueAt(col, i) {
  if (col === undefined || col === null) return null;
  if (isCategorical(col)) return cat(col, i);
  const v = col[i];
  return v === undefined || v !== v ? null : v; // NaN: missing
}

// A decoded column as a plain list of values (null for missing), n rows.
export function toList(col, n) {
  return Array.from({ length: n }, (_, i) => valueAt(col, i));
}
