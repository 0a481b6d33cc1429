// What every AssemblyScript plugin needs from the vmscope interface (docs/plugins.md): its
// input document from stdin, rows to stdout as NDJSON, and the host's memory reads.
import { JSON } from "assemblyscript-json/assembly";

/** read_virtual(pid, address, length, out): bytes read, or < 0 (no such process, read too large). */
@external("vmscope", "read_virtual")
declare function readVirtualImport(pid: i32, address: u64, length: i32, out: usize): i32;

/** The most bytes one read may ask for. */
export const MAX_READ_BYTES: i32 = 64 * 1024;

const readBuffer = new Uint8Array(MAX_READ_BYTES);

/** Up to `length` (<= MAX_READ_BYTES) bytes of a process's memory: fewer when a page is not readable. */
export function readVirtual(pid: i32, address: u64, length: i32): Uint8Array {
  const read = readVirtualImport(pid, address, length, readBuffer.dataStart);
  return read <= 0 ? new Uint8Array(0) : readBuffer.slice(0, read);
}

/** The whole of stdin, parsed. */
export function readInput(): JSON.Obj {
  const chunks = new Array<ArrayBuffer>();
  let total = 0;
  while (true) {
    const chunk = new ArrayBuffer(65536);
    const count = process.stdin.read(chunk);
    if (count <= 0) break;
    chunks.push(chunk.slice(0, count));
    total += count;
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (let index = 0; index < chunks.length; index++) {
    all.set(Uint8Array.wrap(chunks[index]), at);
    at += chunks[index].byteLength;
  }
  return <JSON.Obj>JSON.parse(String.UTF8.decode(all.buffer));
}

/** The objects of an array member (empty when the input lacks it). */
export function objects(input: JSON.Obj, key: string): JSON.Obj[] {
  const found = new Array<JSON.Obj>();
  const array = input.getArr(key);
  if (array == null) return found;
  const values = (<JSON.Arr>array).valueOf();
  for (let index = 0; index < values.length; index++) {
    if (values[index].isObj) found.push(<JSON.Obj>values[index]);
  }
  return found;
}

export function text(object: JSON.Obj, key: string): string {
  const value = object.getString(key);
  return value == null ? "" : (<JSON.Str>value).valueOf();
}

export function integer(object: JSON.Obj, key: string): i64 {
  const value = object.getInteger(key);
  return value == null ? -1 : (<JSON.Integer>value).valueOf();
}

export function flag(object: JSON.Obj, key: string): bool {
  const value = object.getBool(key);
  return value != null && (<JSON.Bool>value).valueOf();
}

export function strings(object: JSON.Obj, key: string): string[] {
  const found = new Array<string>();
  const array = object.getArr(key);
  if (array == null) return found;
  const values = (<JSON.Arr>array).valueOf();
  for (let index = 0; index < values.length; index++) {
    if (values[index].isString) found.push((<JSON.Str>values[index]).valueOf());
  }
  return found;
}

/** A JSON string literal. */
export function quote(value: string): string {
  return new JSON.Str(value).stringify();
}

/** `0x…` as the host prints addresses. */
export function hexAddress(value: u64): string {
  return "0x" + value.toString(16);
}

export function parseAddress(value: string): u64 {
  return U64.parseInt(value.startsWith("0x") ? value.substring(2) : value, 16);
}

/** The last path component. */
export function baseName(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? path : path.substring(slash + 1);
}

/** One finding row (kind, severity, subject, detail, pid; no owner: a process finding has none) on stdout. */
export function emitFinding(kind: string, severity: string, subject: string, detail: string, pid: i64): void {
  process.stdout.write(
    '{"kind":' +
      quote(kind) +
      ',"severity":' +
      quote(severity) +
      ',"subject":' +
      quote(subject) +
      ',"detail":' +
      quote(detail) +
      ',"pid":' +
      pid.toString() +
      "}\n",
  );
}
