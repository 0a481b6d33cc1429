/**
 * What the snappy kernel (snappy.ts) returns for a block it refuses, shared with its host
 * (src/image/snappyDecode.ts): plain integers, so both languages import this file.
 */
export const SNAPPY_ERROR_PREAMBLE = -1;
export const SNAPPY_ERROR_LENGTH = -2;
export const SNAPPY_ERROR_TRUNCATED = -3;
export const SNAPPY_ERROR_OFFSET = -4;
export const SNAPPY_ERROR_OVERFLOW = -5;
export const SNAPPY_ERROR_SHORT = -6;
