/**
 * The page's only way of making elements: guest strings (process names, argv, environment,
 * module names, log lines) become text nodes, never markup, so nothing a guest wrote can run.
 */

type Child = Node | string | number | null | undefined | false;

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  append(element, children);
  return element;
}

const SVG = 'http://www.w3.org/2000/svg';

export function svg(tag: string, attributes: Record<string, string | number> = {}, ...children: Child[]): SVGElement {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  append(element, children);
  return element;
}

function append(parent: Element, children: readonly Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
}

/** A titled section of the report, with the id tests and links find it by. */
export function section(id: string, title: string, ...children: Child[]): HTMLElement {
  return el('section', { id }, el('h2', {}, title), ...children);
}

/** What made the results partial (a walk cut short, an unreadable page), or that nothing did. */
export function warningsSection(warnings: readonly string[]): HTMLElement {
  return section(
    'warnings',
    'Warnings',
    warnings.length === 0 ? el('p', {}, 'none') : el('ul', {}, ...warnings.map((warning) => el('li', {}, warning))),
  );
}
