/** A BTF blob writer for tests (shared by the hostile-input and symbol-typing tests). */
/** BTF_KIND_* numbers (include/uapi/linux/btf.h). */
export const KIND = {
  int: 1,
  ptr: 2,
  array: 3,
  struct: 4,
  union: 5,
  enum: 6,
  fwd: 7,
  typedef: 8,
  volatile: 9,
  const: 10,
  restrict: 11,
  func: 12,
  func_proto: 13,
  var: 14,
  datasec: 15,
  float: 16,
  decl_tag: 17,
  type_tag: 18,
  enum64: 19,
} as const;

export type Member = readonly [name: string, type: number, bitOffset: number, bitfieldSize?: number];

/** Writes BTF blobs record by record, as pahole would, so tests can state exactly what they feed the parser. */
export class BtfBuilder {
  private readonly strings: number[] = [0];
  private readonly stringOffsets = new Map<string, number>([['', 0]]);
  private readonly words: number[] = [];
  private count = 0;

  str(text: string): number {
    let offset = this.stringOffsets.get(text);
    if (offset === undefined) {
      offset = this.strings.length;
      this.strings.push(...new TextEncoder().encode(text), 0);
      this.stringOffsets.set(text, offset);
    }
    return offset;
  }

  /** A record from raw fields: for forging what no compiler would emit. */
  raw(nameOffset: number, info: number, sizeOrType: number, trailer: readonly number[] = []): number {
    this.words.push(nameOffset, info >>> 0, sizeOrType >>> 0, ...trailer.map((word) => word >>> 0));
    return ++this.count;
  }

  private add(
    kind: number,
    name: string,
    vlen: number,
    kindFlag: boolean,
    sizeOrType: number,
    trailer: readonly number[] = [],
  ): number {
    return this.raw(this.str(name), ((kindFlag ? 1 : 0) << 31) | (kind << 24) | vlen, sizeOrType, trailer);
  }

  int(
    name: string,
    size: number,
    options: { signed?: boolean; char?: boolean; bool?: boolean; bits?: number; bitOffset?: number } = {},
  ): number {
    const encoding = (options.signed ? 1 : 0) | (options.char ? 2 : 0) | (options.bool ? 4 : 0);
    return this.add(KIND.int, name, 0, false, size, [
      (encoding << 24) | ((options.bitOffset ?? 0) << 16) | (options.bits ?? size * 8),
    ]);
  }
  ptr(type: number): number {
    return this.add(KIND.ptr, '', 0, false, type);
  }
  array(type: number, indexType: number, count: number): number {
    return this.add(KIND.array, '', 0, false, 0, [type, indexType, count]);
  }
  composite(kind: 'struct' | 'union', name: string, size: number, members: readonly Member[]): number {
    const kindFlag = members.some((member) => member[3] !== undefined);
    const trailer = members.flatMap(([memberName, type, bitOffset, bitfieldSize]) => [
      this.str(memberName),
      type,
      kindFlag ? ((bitfieldSize ?? 0) << 24) | bitOffset : bitOffset,
    ]);
    return this.add(KIND[kind], name, members.length, kindFlag, size, trailer);
  }
  enum(name: string, size: number, signed: boolean, values: ReadonlyArray<readonly [string, number]>): number {
    return this.add(
      KIND.enum,
      name,
      values.length,
      signed,
      size,
      values.flatMap(([valueName, value]) => [this.str(valueName), value]),
    );
  }
  enum64(name: string, size: number, signed: boolean, values: ReadonlyArray<readonly [string, bigint]>): number {
    const trailer = values.flatMap(([valueName, value]) => [
      this.str(valueName),
      Number(BigInt.asUintN(32, value)),
      Number(BigInt.asUintN(32, value >> 32n)),
    ]);
    return this.add(KIND.enum64, name, values.length, signed, size, trailer);
  }
  fwd(name: string, union: boolean): number {
    return this.add(KIND.fwd, name, 0, union, 0);
  }
  modifier(kind: 'typedef' | 'volatile' | 'const' | 'restrict' | 'type_tag', name: string, type: number): number {
    return this.add(KIND[kind], name, 0, false, type);
  }
  func(name: string, proto: number, linkage: number): number {
    return this.add(KIND.func, name, linkage, false, proto);
  }
  funcProto(returnType: number, params: ReadonlyArray<readonly [string, number]>): number {
    return this.add(
      KIND.func_proto,
      '',
      params.length,
      false,
      returnType,
      params.flatMap(([name, type]) => [this.str(name), type]),
    );
  }
  variable(name: string, type: number, linkage: number): number {
    return this.add(KIND.var, name, 0, false, type, [linkage]);
  }
  datasec(
    name: string,
    size: number,
    vars: ReadonlyArray<readonly [type: number, offset: number, size: number]>,
  ): number {
    return this.add(KIND.datasec, name, vars.length, false, size, vars.flat());
  }
  float(name: string, size: number): number {
    return this.add(KIND.float, name, 0, false, size);
  }
  declTag(name: string, type: number, componentIndex: number): number {
    return this.add(KIND.decl_tag, name, 0, false, type, [componentIndex]);
  }

  /** Header, type section, string section; `header` overrides fields to forge bad headers. */
  build(header: Partial<Record<'hdrLen' | 'typeOff' | 'typeLen' | 'strOff' | 'strLen', number>> = {}): Uint8Array {
    const typeBytes = this.words.length * 4;
    const bytes = new Uint8Array(24 + typeBytes + this.strings.length);
    const view = new DataView(bytes.buffer);
    view.setUint16(0, 0xeb9f, true);
    bytes[2] = 1;
    view.setUint32(4, header.hdrLen ?? 24, true);
    view.setUint32(8, header.typeOff ?? 0, true);
    view.setUint32(12, header.typeLen ?? typeBytes, true);
    view.setUint32(16, header.strOff ?? typeBytes, true);
    view.setUint32(20, header.strLen ?? this.strings.length, true);
    this.words.forEach((word, i) => view.setUint32(24 + i * 4, word, true));
    bytes.set(this.strings, 24 + typeBytes);
    return bytes;
  }
}
