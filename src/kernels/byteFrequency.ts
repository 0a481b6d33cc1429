/**
 * How often each byte value occurs in guest memory, in parts per million: measured over two
 * 512 MiB QEMU ELF cores of freshly booted Linux 6.1 and 6.12 guests. Zeros dominate (unused
 * pages), then 0xcc (int3 padding in kernel text) and 0xff; the rest sit within one order of
 * magnitude. Busier guests hold fewer zeros, but the ranking of the common values holds.
 */
// prettier-ignore
export const TYPICAL_BYTE_FREQUENCY: readonly number[] = [
  874175,  1299,   971,   480,   574,   838,   328,   325,   869,   320,   327,   291,   454,   331,   302,  1555, // 0x00
     703,   265,   248,   243,   300,   517,   228,   225,   491,   236,   234,   232,   271,   238,   262,   462, // 0x10
     810,   252,   260,   230,   830,   343,   234,   219,   463,   288,   214,   260,   262,   247,   293,   247, // 0x20
     427,   419,   425,   238,   268,   239,   241,   216,   369,   322,   245,   228,   258,   264,   226,   224, // 0x30
     960,   756,   273,   340,   693,   429,   264,   269,  2166,   538,   240,   232,   625,   318,   258,   270, // 0x40
     369,   217,   293,   389,   442,   343,   259,   251,   295,   220,   216,   313,   301,   333,   259,   958, // 0x50
     354,   581,   337,   549,   528,   867,   590,   363,   879,   555,   211,   377,   502,   404,   493,   549, // 0x60
     559,   477,   597,   615,   947,   546,   322,   287,   370,   295,   225,   236,   280,   233,   222,   247, // 0x70
     512,   462,   409,   718,   476,   594,   229,   237,   423,  1274,   212,   954,   410,   451,   709,   227, // 0x80
    1059,   211,   208,   214,   229,   208,   202,   205,   279,   215,   199,   199,   212,   202,   202,   249, // 0x90
     462,   466,   612,   223,   245,   210,   201,   199,   273,   208,   199,   207,   203,   220,   203,   219, // 0xa0
     257,   204,   203,   206,   210,   205,   258,   237,   327,   239,   259,   219,   230,   214,   251,   246, // 0xb0
     888,   695,   348,   376,   284,   280,   304,   524,   397,   246,   229,   212, 22045,   213,   209,   218, // 0xc0
     409,   221,   269,   235,   233,   216,   222,   226,   304,   210,   217,   232,   214,   212,   240,   308, // 0xd0
     376,   231,   246,   233,   251,   227,   237,   245,   779,   418,   251,   315,   260,   253,   257,   306, // 0xe0
     414,   237,   243,   517,   248,   471,   311,   263,   353,   258,   277,   255,   288,   303,  1230,  9963, // 0xf0
];

/** Offsets of the two bytes of a needle that the search kernel's filter compares. */
export interface RarePair {
  readonly offsetA: number;
  readonly offsetB: number;
}

/**
 * The two bytes of `needle` least likely to occur in memory, so the filter lets few false
 * candidates through even when the needle starts with zeros. A single-byte needle compares its
 * one byte twice.
 */
export function chooseRarePair(needle: Uint8Array, frequency: readonly number[] = TYPICAL_BYTE_FREQUENCY): RarePair {
  if (needle.length === 0) throw new RangeError('a needle needs at least one byte');
  const rarity = (offset: number) => frequency[needle[offset]!]!;
  const offsets = Array.from(needle.keys()).sort((a, b) => rarity(a) - rarity(b) || a - b);
  const offsetA = offsets[0]!;
  return { offsetA, offsetB: offsets[1] ?? offsetA };
}
