// An 8-bit grayscale PNG encoder for the mask (values 0 and the lesion value).
// Why not canvas.toBlob: it writes RGBA, and the server takes a label that is one gray channel of
// the image's rows x columns (the same file any MONAI Label client sends). The browser's own
// CompressionStream("deflate") makes the zlib stream PNG needs.
"use strict";

const PNG_CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function pngCrc(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = PNG_CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, pngCrc(out.subarray(4, 8 + data.length)));
  return out;
}

async function deflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// pixels: Uint8Array of rows * cols values; returns a Blob "image/png"
async function encodeGrayPng(pixels, cols, rows) {
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, cols);
  view.setUint32(4, rows);
  header.set([8, 0, 0, 0, 0], 8); // 8 bits, grayscale, deflate, adaptive filtering, no interlace
  const raw = new Uint8Array(rows * (cols + 1)); // each scanline: filter type 0, then its bytes
  for (let r = 0; r < rows; r++) raw.set(pixels.subarray(r * cols, (r + 1) * cols), r * (cols + 1) + 1);
  const signature = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
  const parts = [signature, pngChunk("IHDR", header), pngChunk("IDAT", await deflate(raw)), pngChunk("IEND", new Uint8Array(0))];
  return new Blob(parts, { type: "image/png" });
}
