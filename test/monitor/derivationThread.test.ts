import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImage } from '../../src/image/open.js';
import type { MemoryImage } from '../../src/image/types.js';
import { derivationThread } from '../../src/monitor/derivationThread.js';
import { discoverLinuxKernel, type LinuxKernel } from '../../src/os/linux/discovery.js';
import { linuxProfile, type LinuxProfile } from '../../src/os/linux/profile.js';
import { isVmscopeError, VmscopeError } from '../../src/util/errors.js';
import { fixturePath } from '../support/fixtures.js';

/**
 * The live monitor derives a kernel's profile on a thread of its own (bench/live.ts measures
 * what that saves in RSS): the thread must give the profile the monitor's own thread gives,
 * read memory only through its owner's image, and hand back its owner's typed errors.
 */
const THREAD_SCRIPT = resolve(dirname(fileURLToPath(import.meta.url)), '../../dist/profileThread.js');
const work = mkdtempSync(join(tmpdir(), 'vmscope-derivation-thread-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The dump's image, whose reads fail with TRUNCATED_FILE once `cut` is set (a RAM file cut short under the monitor). */
function cuttableImage(path: string): MemoryImage & { cut: boolean } {
  const image = openImage(path);
  const { path: imagePath, format, ranges, totalBytes, notes, cpus } = image;
  return {
    path: imagePath,
    format,
    ranges,
    totalBytes,
    notes,
    cpus,
    cut: false,
    readPresent(physical, into) {
      if (this.cut) throw new VmscopeError('TRUNCATED_FILE', 'cut under the reader', path, physical);
      return image.readPresent(physical, into);
    },
    read(physical, into) {
      if (this.cut) throw new VmscopeError('TRUNCATED_FILE', 'cut under the reader', path, physical);
      image.read(physical, into);
    },
    close: () => image.close(),
  };
}

/** Everything a profile answers with, in the form an ISF export writes (its time of writing aside). */
function exported({ profile }: LinuxProfile) {
  const { metadata, ...rest } = profile.toIsf('test');
  return { ...rest, linux: metadata.linux, origin: profile.origin, banner: profile.banner, slide: profile.slide };
}

/** The one cache file in `dir`. */
const cacheFile = (dir: string) => readFileSync(join(dir, readdirSync(dir)[0]!));

describe('profile derivation thread', () => {
  let image: ReturnType<typeof cuttableImage>;
  let kernel: LinuxKernel;
  let here: LinuxProfile;
  const hereCache = join(work, 'here');

  beforeAll(async () => {
    image = cuttableImage(fixturePath('linux61-clean', 'elf'));
    kernel = discoverLinuxKernel(image);
    here = await linuxProfile(kernel, { cacheDir: hereCache });
  }, 120_000);
  afterAll(() => image.close());

  it('exists once the project is built (npm run build)', () => {
    expect(derivationThread(THREAD_SCRIPT)).toBeDefined();
  });

  it('derives the profile this thread derives, and caches the same file', async () => {
    const threadCache = join(work, 'thread');
    const derived = await linuxProfile(kernel, {
      cacheDir: threadCache,
      deriveElsewhere: derivationThread(THREAD_SCRIPT)!,
    });
    expect(exported(derived)).toEqual(exported(here));
    expect(derived.provenance).toEqual(here.provenance);
    expect(derived.profile.origin).toBe('derived');
    expect(cacheFile(threadCache).equals(cacheFile(hereCache))).toBe(true);
  }, 120_000);

  it('derives in this thread when the thread runs out of its heap', async () => {
    const starved = derivationThread(THREAD_SCRIPT, { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 8 })!;
    const derived = await linuxProfile(kernel, { cacheDir: false, deriveElsewhere: starved });
    expect(exported(derived)).toEqual(exported(here));
  }, 120_000);

  it("reports its owner's read failures with their code, file and offset", async () => {
    image.cut = true;
    try {
      const failure = await linuxProfile(kernel, {
        cacheDir: false,
        deriveElsewhere: derivationThread(THREAD_SCRIPT)!,
      }).catch((error: unknown) => error);
      expect(isVmscopeError(failure)).toBe(true);
      expect((failure as VmscopeError).code).toBe('TRUNCATED_FILE');
      expect((failure as VmscopeError).file).toBe(image.path);
      expect(typeof (failure as VmscopeError).offset).toBe('number');
    } finally {
      image.cut = false;
    }
  }, 120_000);
});
