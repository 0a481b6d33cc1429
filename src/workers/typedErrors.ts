import * as Comlink from 'comlink';
import { VmscopeError, type ErrorCode } from '../util/errors.js';

/** A thrown value as it crosses a thread: a VmscopeError keeps its code, file and offset. */
type SerializedThrow =
  | {
      readonly typed: true;
      readonly code: ErrorCode;
      readonly message: string;
      readonly file?: string;
      readonly offset?: string;
    }
  | { readonly typed: false; readonly message: string; readonly stack?: string };

/**
 * Comlink's own `throw` handler sends an Error's message and stack only, so a worker's typed
 * error (a truncated dump, a corrupt rule) arrived as an "internal error". Installed on both
 * sides of the pool, errors keep their type across the thread boundary.
 */
export function installTypedErrorTransfer(): void {
  const builtIn = Comlink.transferHandlers.get('throw')!;
  if ((builtIn as { typed?: boolean }).typed) return;
  Comlink.transferHandlers.set('throw', {
    typed: true,
    // Comlink marks a thrown value with a symbol it does not export: its own handler knows it.
    canHandle: (value: unknown): value is { value: unknown } => builtIn.canHandle(value),
    serialize({ value }: { value: unknown }): [SerializedThrow, Transferable[]] {
      if (value instanceof VmscopeError) {
        const offset = value.offset === undefined ? {} : { offset: value.offset.toString() };
        return [
          {
            typed: true,
            code: value.code,
            message: value.message,
            ...(value.file ? { file: value.file } : {}),
            ...offset,
          },
          [],
        ];
      }
      const error = value instanceof Error ? value : new Error(String(value));
      return [{ typed: false, message: error.message, ...(error.stack ? { stack: error.stack } : {}) }, []];
    },
    deserialize(serialized: SerializedThrow): never {
      if (serialized.typed) {
        const offset = serialized.offset === undefined ? undefined : BigInt(serialized.offset);
        throw new VmscopeError(
          serialized.code,
          serialized.message,
          serialized.file,
          offset !== undefined && offset <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(offset) : offset,
        );
      }
      throw Object.assign(new Error(serialized.message), serialized.stack ? { stack: serialized.stack } : {});
    },
  } as Comlink.TransferHandler<{ value: unknown }, SerializedThrow> & { typed: true });
}
