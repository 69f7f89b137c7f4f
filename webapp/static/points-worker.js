// A module worker started by prefetch.js: downloads /api/points, parses and decodes it
// (map/decode.js) off the page's main thread — which meanwhile loads BokehJS and lays out the
// figure — and hands the typed arrays over without a copy (transferred). At 1M rows the body
// is 21.5 MB gzipped, 42.7 MB of JSON: read on the main thread it waited for BokehJS's start-up.

import { decodePayload } from "./map/decode.js";

const URL_ = "/api/points";
// the format the page was built for (map-config, an integer), checked by decodePayload
const FORMAT = Number(new URL(self.location.href).searchParams.get("format")) || undefined;

async function load() {
  const response = await fetch(URL_, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(body.error || response.statusText);
  const all = decodePayload(body, FORMAT);
  const buffers = new Set();
  for (const value of Object.values(all)) {
    const arr = value && value.codes ? value.codes : value;
    if (ArrayBuffer.isView(arr)) buffers.add(arr.buffer);
  }
  const entry = performance.getEntriesByType("resource").find((e) => e.name.endsWith(URL_));
  const sizes = entry ? [entry.encodedBodySize, entry.decodedBodySize] : null; // for benchmarks/webapp_browser.py
  self.postMessage({ all, sizes }, [...buffers]);
}

load().catch((err) => self.postMessage({ error: err.message || String(err) }));
