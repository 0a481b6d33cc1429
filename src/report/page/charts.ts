import type { MemoryMarkKind, ReportMemoryMap, ReportSocket } from '../model.js';
import { el, svg } from './dom.js';

const MARK_COLORS: Record<MemoryMarkKind, string> = {
  signature: '#d62728',
  carved_task: '#1f77b4',
  injected_code: '#ff7f0e',
};

const MAP_WIDTH = 1000;
const MAP_HEIGHT = 48;

const hexAddress = (address: number) => `0x${address.toString(16)}`;

/**
 * Where `address` falls on a bar of the present memory alone: the ranges laid end to end (a dump
 * of a 512 MiB guest may also hold a BIOS range near 4 GiB, which must not squeeze the rest into a
 * sliver). An address between ranges sits at the start of the next one.
 */
function presentScale(ranges: ReportMemoryMap['ranges']): { x: (address: number) => number; present: number } {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const before: number[] = [];
  let present = 0;
  for (const [start, end] of sorted) {
    before.push(present);
    present += end - start;
  }
  const scale = MAP_WIDTH / Math.max(1, present);
  const x = (address: number) => {
    const index = sorted.findIndex(([, end]) => address < end);
    if (index < 0) return MAP_WIDTH;
    const [start] = sorted[index]!;
    return (before[index]! + Math.max(0, address - start)) * scale;
  };
  return { x, present };
}

/** Physical memory as one bar of the ranges the dump holds, and a tick (with its label as a tooltip) per mark. */
export function memoryMap(map: ReportMemoryMap): HTMLElement {
  const { x, present } = presentScale(map.ranges);
  const chart = svg(
    'svg',
    { viewBox: `0 0 ${MAP_WIDTH} ${MAP_HEIGHT + 14}`, class: 'memory-map', role: 'img' },
    svg('rect', { x: 0, y: 0, width: MAP_WIDTH, height: MAP_HEIGHT, class: 'absent' }),
    ...map.ranges.map(([start, rangeEnd]) =>
      svg(
        'rect',
        { x: x(start), y: 0, width: Math.max(0.5, x(rangeEnd) - x(start)), height: MAP_HEIGHT, class: 'present' },
        svg('title', {}, `${hexAddress(start)}-${hexAddress(rangeEnd)} in the dump`),
      ),
    ),
    ...map.marks.map((mark) =>
      svg(
        'line',
        {
          x1: x(mark.physical),
          x2: x(mark.physical),
          y1: mark.kind === 'carved_task' ? MAP_HEIGHT / 2 : 0,
          y2: mark.kind === 'carved_task' ? MAP_HEIGHT : MAP_HEIGHT / 2,
          stroke: MARK_COLORS[mark.kind],
          'stroke-width': 1.5,
          'data-kind': mark.kind,
        },
        svg('title', {}, `${mark.kind} at ${hexAddress(mark.physical)}: ${mark.label}`),
      ),
    ),
    svg('text', { x: 0, y: MAP_HEIGHT + 12, class: 'axis' }, hexAddress(map.ranges[0]?.[0] ?? 0)),
    svg(
      'text',
      { x: MAP_WIDTH, y: MAP_HEIGHT + 12, class: 'axis', 'text-anchor': 'end' },
      `${map.ranges.length} ranges, ${(present / 2 ** 20).toFixed(0)} MiB present`,
    ),
  );
  const counts = (kind: MemoryMarkKind) => map.marks.filter((mark) => mark.kind === kind).length;
  const legend = el(
    'p',
    { class: 'legend' },
    ...(Object.keys(MARK_COLORS) as MemoryMarkKind[]).map((kind) => {
      const swatch = el('span', { class: 'swatch' });
      swatch.style.background = MARK_COLORS[kind];
      return el('span', {}, swatch, `${kind.replace('_', ' ')} (${counts(kind)})`);
    }),
  );
  return el('div', {}, chart, legend);
}

/** Edges drawn at most: beyond, the graph is no longer readable (the table lists them all). */
const MAX_EDGES = 300;
const NODE_HEIGHT = 18;

/** Process → endpoint, one line per connected socket (remote peer) or listener (local port). */
export function networkGraph(sockets: readonly ReportSocket[]): HTMLElement {
  const edges = sockets.slice(0, MAX_EDGES).map((socket) => ({
    process: socket.pid === null ? 'kernel (no process)' : `${socket.pid} ${socket.comm ?? '?'}`,
    endpoint: socket.remote ? `${socket.proto} ${socket.remote}` : `${socket.proto} ${socket.local} ${socket.state}`,
    state: socket.state,
  }));
  const processes = [...new Set(edges.map((edge) => edge.process))];
  const endpoints = [...new Set(edges.map((edge) => edge.endpoint))];
  const height = Math.max(processes.length, endpoints.length, 1) * NODE_HEIGHT + 10;
  const y = (index: number) => index * NODE_HEIGHT + 14;
  const chart = svg(
    'svg',
    { viewBox: `0 0 900 ${height}`, class: 'network-graph', role: 'img' },
    ...edges.map((edge) =>
      svg('line', {
        x1: 250,
        y1: y(processes.indexOf(edge.process)) - 4,
        x2: 560,
        y2: y(endpoints.indexOf(edge.endpoint)) - 4,
        class: edge.state === 'ESTABLISHED' ? 'edge established' : 'edge',
      }),
    ),
    ...processes.map((name, index) => svg('text', { x: 245, y: y(index), 'text-anchor': 'end' }, name)),
    ...endpoints.map((name, index) => svg('text', { x: 565, y: y(index) }, name)),
  );
  const note =
    sockets.length > MAX_EDGES ? el('p', { class: 'note' }, `first ${MAX_EDGES} of ${sockets.length} sockets`) : null;
  return el('div', {}, chart, note);
}
