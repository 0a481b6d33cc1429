import type { Row, RowSet } from './types.js';

/**
 * Rows made on the fly, part after part: each part says how many rows it has and makes them
 * when iterated, from whatever compact data it closes over (a scan's hit columns). Renderers
 * read them once or twice (a table's widths, then its lines), and no row outlives its line.
 */
export class GeneratedRows implements RowSet {
  private readonly parts: Array<() => Iterable<Row>> = [];
  private count = 0;

  get length(): number {
    return this.count;
  }

  /** A part of `count` rows, which `rows` makes again on every iteration. */
  add(count: number, rows: () => Iterable<Row>): void {
    if (count === 0) return;
    this.parts.push(rows);
    this.count += count;
  }

  *[Symbol.iterator](): Iterator<Row> {
    for (const part of this.parts) yield* part();
  }
}
