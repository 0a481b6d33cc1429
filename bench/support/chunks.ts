import type { MemoryImage } from '../../src/image/types.js';

/**
 * The scan kernels' chunking (src/kernels/streaming.ts) for a plain-JS baseline: touching ranges
 * as one stream, read `chunk.length` bytes at a time with `overlap` bytes shared between
 * consecutive chunks. `visit` gets each chunk's bytes, its physical start and how many of its
 * first bytes it owns (hits starting there are its to report).
 */
export function forEachChunk<Chunk extends Uint8Array>(
  image: MemoryImage,
  chunk: Chunk,
  overlap: number,
  visit: (data: Chunk, start: number, ownedLength: number) => void,
): void {
  for (const stream of streamsOf(image)) {
    for (let chunkStart = 0; chunkStart < stream.length;) {
      const chunkLength = Math.min(chunk.length, stream.length - chunkStart);
      // A Buffer's subarray is a Buffer: the caller's Buffer methods stay usable.
      const data = chunk.subarray(0, chunkLength) as Chunk;
      image.read(stream.start + chunkStart, data);
      const ownedLength = chunkStart + chunkLength === stream.length ? chunkLength : chunkLength - overlap;
      visit(data, stream.start + chunkStart, ownedLength);
      chunkStart += ownedLength;
    }
  }
}

function streamsOf(image: MemoryImage): Array<{ start: number; length: number }> {
  const streams: Array<{ start: number; length: number }> = [];
  for (const range of image.ranges) {
    const last = streams[streams.length - 1];
    if (last && last.start + last.length === range.start)
      streams[streams.length - 1] = { start: last.start, length: range.end - last.start };
    else streams.push({ start: range.start, length: range.end - range.start });
  }
  return streams;
}
