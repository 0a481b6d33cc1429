import { el } from './dom.js';

export interface TableColumn<T> {
  readonly title: string;
  readonly value: (row: T) => string | number | null;
  /** A CSS grid track: `6em`, `1fr`, `minmax(10em, 3fr)`. */
  readonly width: string;
}

export interface TableOptions<T> {
  /** Stable name, as `data-table` (tests find tables by it). */
  readonly name: string;
  /** Rows shown at once before the table scrolls. */
  readonly visibleRows?: number;
  /** A class for the row (marks hidden tasks, critical findings). */
  readonly rowClass?: (row: T) => string | undefined;
  /** Indentation of the first cell, in levels (the process tree). */
  readonly depth?: (row: T) => number;
}

const ROW_HEIGHT = 22;
/** Rows drawn beyond the viewport on each side, so a fast scroll shows no gap. */
const OVERSCAN = 10;

/**
 * A sortable, filterable table that keeps only the rows in view in the DOM (the others exist as
 * data and a spacer's height): 100k sockets or log lines scroll like 100.
 */
export function virtualTable<T>(rows: readonly T[], columns: ReadonlyArray<TableColumn<T>>, options: TableOptions<T>) {
  const template = columns.map((column) => column.width).join(' ');
  let order: number[] = rows.map((_, index) => index);
  let shown = order;
  let sortColumn = -1;
  let ascending = true;
  let searchText: string[] | undefined;

  const filter = el('input', { type: 'search', placeholder: 'filter', 'aria-label': `filter ${options.name}` });
  const count = el('span', { class: 'count' });
  const header = el('div', { class: 'row head', role: 'row' });
  header.style.gridTemplateColumns = template;
  const spacer = el('div', { class: 'spacer' });
  const body = el('div', { class: 'body', role: 'rowgroup' });
  const viewport = el('div', { class: 'viewport' }, spacer, body);
  // A clicked row in full: cells are cut to their column's width.
  const details = el('dl', { class: 'details' });
  viewport.style.height = `${Math.min(Math.max(rows.length, 1), options.visibleRows ?? 15) * ROW_HEIGHT + 2}px`;

  columns.forEach((column, index) => {
    const cell = el('button', { class: 'cell', type: 'button', title: `sort by ${column.title}` }, column.title);
    cell.addEventListener('click', () => {
      ascending = sortColumn === index ? !ascending : true;
      sortColumn = index;
      sortBy(column);
      applyFilter();
    });
    header.append(cell);
  });

  function sortBy(column: TableColumn<T>): void {
    const values = rows.map(column.value);
    const direction = ascending ? 1 : -1;
    order = rows
      .map((_, index) => index)
      .sort((a, b) => direction * compare(values[a] ?? null, values[b] ?? null) || a - b);
  }

  function applyFilter(): void {
    const needle = filter.value.trim().toLowerCase();
    if (needle === '') shown = order;
    else {
      searchText ??= rows.map((row) =>
        columns
          .map((column) => String(column.value(row) ?? ''))
          .join('\u0000')
          .toLowerCase(),
      );
      const text = searchText;
      shown = order.filter((index) => text[index]!.includes(needle));
    }
    count.textContent = `${shown.length} of ${rows.length}`;
    spacer.style.height = `${shown.length * ROW_HEIGHT}px`;
    draw();
  }

  function draw(): void {
    const first = Math.max(0, Math.floor(viewport.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(
      shown.length,
      Math.ceil((viewport.scrollTop + viewport.clientHeight) / ROW_HEIGHT) + OVERSCAN,
    );
    body.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    body.replaceChildren(...shown.slice(first, last).map((index) => drawRow(rows[index]!, index)));
  }

  function drawRow(row: T, index: number): HTMLElement {
    // data-index: which row this is, whatever the order (tests gather rows across scrolls by it).
    const line = el('div', { class: `row ${options.rowClass?.(row) ?? ''}`, role: 'row', 'data-index': String(index) });
    line.style.gridTemplateColumns = template;
    columns.forEach((column, index) => {
      const text = String(column.value(row) ?? '');
      const cell = el('div', { class: 'cell', title: text }, text);
      if (index === 0 && options.depth) cell.style.paddingLeft = `${0.3 + options.depth(row) * 1.1}em`;
      line.append(cell);
    });
    line.addEventListener('click', () =>
      details.replaceChildren(
        ...columns.flatMap((column) => [el('dt', {}, column.title), el('dd', {}, String(column.value(row) ?? ''))]),
      ),
    );
    return line;
  }

  filter.addEventListener('input', applyFilter);
  viewport.addEventListener('scroll', draw, { passive: true });
  const table = el(
    'div',
    { class: 'table', 'data-table': options.name },
    el('div', { class: 'tools' }, filter, count),
    header,
    viewport,
    details,
  );
  // The viewport's height is known once the table is in the page.
  requestAnimationFrame(applyFilter);
  applyFilter();
  return table;
}

/** Numbers as numbers, everything else as text; empty cells last. */
function compare(a: string | number | null, b: string | number | null): number {
  if (a === b) return 0;
  if (a === null || a === '') return 1;
  if (b === null || b === '') return -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a) < String(b) ? -1 : 1;
}
