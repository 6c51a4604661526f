// Ogg pages for Opus (RFC 3533, RFC 7845): the server reads and writes them with sphn, so the page
// wraps WebCodecs' bare Opus packets itself and takes the server's pages apart again.

const CRC_TABLE = (() => {
  // Ogg's CRC-32: polynomial 0x04c11db7, not reflected, initial value 0, no final xor.
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let r = i << 24;
    for (let j = 0; j < 8; j++) r = r & 0x80000000 ? (r << 1) ^ 0x04c11db7 : r << 1;
    table[i] = r >>> 0;
  }
  return table;
})();

export function crc32(bytes) {
  let crc = 0;
  for (let i = 0; i < bytes.length; i++) crc = ((crc << 8) ^ CRC_TABLE[((crc >>> 24) ^ bytes[i]) & 0xff]) >>> 0;
  return crc >>> 0;
}

const ascii = (s) => Uint8Array.from(s, (c) => c.charCodeAt(0));

/** The identification header: mono, `preSkip` samples at 48 kHz, input rate `rate`. */
export function opusHead(rate, preSkip = 312) {
  const head = new Uint8Array(19);
  const view = new DataView(head.buffer);
  head.set(ascii("OpusHead"), 0);
  head[8] = 1; // version
  head[9] = 1; // channels
  view.setUint16(10, preSkip, true);
  view.setUint32(12, rate, true);
  view.setInt16(16, 0, true); // output gain
  head[18] = 0; // channel mapping family 0: mono or stereo, no table
  return head;
}

export function opusTags(vendor = "kame") {
  const v = ascii(vendor);
  const tags = new Uint8Array(8 + 4 + v.length + 4);
  const view = new DataView(tags.buffer);
  tags.set(ascii("OpusTags"), 0);
  view.setUint32(8, v.length, true);
  tags.set(v, 12);
  view.setUint32(12 + v.length, 0, true); // no user comments
  return tags;
}

/** Writes one packet per page (the lowest latency Ogg allows): OpusHead and OpusTags first. */
export class OggWriter {
  constructor(rate, preSkip = 312) {
    this.serial = (Math.random() * 0xffffffff) >>> 0;
    this.sequence = 0;
    this.granule = 0; // 48 kHz samples, as RFC 7845 counts them
    this.headers = [this.page(opusHead(rate, preSkip), 0, 0x02), this.page(opusTags(), 0, 0)];
  }

  /** The header pages, then `packet`'s page; `samples48k`: the packet's duration at 48 kHz. */
  packet(packet, samples48k) {
    const out = this.headers.splice(0);
    this.granule += samples48k;
    out.push(this.page(packet, this.granule, 0));
    return concat(out);
  }

  page(data, granule, flags) {
    const segments = Math.floor(data.length / 255) + 1;
    if (segments > 255) throw new Error("an Opus packet too large for one Ogg page");
    const page = new Uint8Array(27 + segments + data.length);
    const view = new DataView(page.buffer);
    page.set(ascii("OggS"), 0);
    page[4] = 0;
    page[5] = flags;
    view.setUint32(6, granule % 0x100000000, true);
    view.setUint32(10, Math.floor(granule / 0x100000000), true);
    view.setUint32(14, this.serial, true);
    view.setUint32(18, this.sequence++, true);
    page[26] = segments;
    for (let i = 0; i < segments - 1; i++) page[27 + i] = 255;
    page[27 + segments - 1] = data.length % 255;
    page.set(data, 27 + segments);
    view.setUint32(22, crc32(page), true); // computed with the CRC field still zero
    return page;
  }
}

/** Takes Ogg bytes in any pieces; returns the Opus audio packets (headers skipped) as they complete. */
export class OggReader {
  constructor() {
    this.buffer = new Uint8Array(0);
    this.partial = [];
  }

  push(bytes) {
    this.buffer = concat([this.buffer, bytes]);
    const packets = [];
    for (;;) {
      const b = this.buffer;
      if (b.length < 27) break;
      if (b[0] !== 0x4f || b[1] !== 0x67 || b[2] !== 0x67 || b[3] !== 0x53) {
        throw new Error("audio from the server that is not Ogg");
      }
      const segments = b[26];
      if (b.length < 27 + segments) break;
      let size = 0;
      for (let i = 0; i < segments; i++) size += b[27 + i];
      const end = 27 + segments + size;
      if (b.length < end) break;
      let offset = 27 + segments;
      for (let i = 0; i < segments; i++) {
        const lace = b[27 + i];
        this.partial.push(b.subarray(offset, offset + lace));
        offset += lace;
        if (lace < 255) {
          const packet = concat(this.partial);
          this.partial = [];
          if (!isHeader(packet)) packets.push(packet);
        }
      }
      this.buffer = b.slice(end);
    }
    return packets;
  }
}

function isHeader(packet) {
  if (packet.length < 8) return false;
  const magic = String.fromCharCode(...packet.subarray(0, 8));
  return magic === "OpusHead" || magic === "OpusTags";
}

function concat(parts) {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
