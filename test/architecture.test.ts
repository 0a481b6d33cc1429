import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The folder layout is the architecture: a layer may import its own folder and the layers
 * listed before it, never one after it. Order (lowest first), as README.md explains.
 */
const LAYERS = [
  'util',
  'image',
  'kernels',
  'space',
  'symbols',
  'os',
  'rules',
  'analyses',
  'workers',
  'monitor',
  'report',
  'batch',
  'plugins',
  'cli',
];

const srcRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : [];
  });
}

function layerOf(path: string): number {
  const top = relative(srcRoot, path).split('/')[0]!;
  return LAYERS.indexOf(top);
}

describe('layering', () => {
  it('no layer imports a higher one', () => {
    const violations: string[] = [];
    for (const file of sourceFiles(srcRoot)) {
      const layer = layerOf(file);
      if (layer < 0) continue; // src/index.ts sits above everything
      for (const match of readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)) {
        const target = resolve(dirname(file), match[1]!);
        const targetLayer = layerOf(target);
        if (targetLayer > layer) violations.push(`${relative(srcRoot, file)} imports ${relative(srcRoot, target)}`);
      }
    }
    expect(violations).toEqual([]);
    expect(sourceFiles(srcRoot).length).toBeGreaterThan(10);
  });
});
