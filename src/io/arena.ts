/**
 * Where preallocated typed arrays come from. `standalone` makes each its own buffer. An `Arena`
 * carves them from one fixed-length ArrayBuffer: a forwarding loop takes everything it binds to
 * the addon's I/O port from one arena, so the addon holds one buffer and checks one buffer per
 * call; if that buffer was ever detached (transferred away), every call of the port is refused
 * instead of reaching memory the loop no longer owns.
 */

type TypedArrayOf<T> = T extends Int32ArrayConstructor ? Int32Array
  : T extends Uint32ArrayConstructor ? Uint32Array
  : T extends Uint16ArrayConstructor ? Uint16Array
  : T extends Uint8ArrayConstructor ? Uint8Array
  : never;

type Ctor = Int32ArrayConstructor | Uint32ArrayConstructor | Uint16ArrayConstructor | Uint8ArrayConstructor;

export interface Carver {
  /** A zeroed array of `length` elements. */
  take<C extends Ctor>(ctor: C, length: number): TypedArrayOf<C>;
}

/** Every array in a buffer of its own. */
export const standalone: Carver = {
  take: <C extends Ctor>(ctor: C, length: number) => new ctor(length) as TypedArrayOf<C>,
};

/** Every view starts on this boundary. */
const ALIGN = 64;

const aligned = (ctor: Ctor, length: number): number => Math.ceil((length * ctor.BYTES_PER_ELEMENT) / ALIGN) * ALIGN;

export class Arena implements Carver {
  readonly buffer: ArrayBuffer;
  private used = 0;

  /**
   * Runs `build` once to learn how many bytes its takes need (handing it empty arrays), then
   * again on an arena of exactly that size, and returns the second result with its arena.
   */
  static fit<T>(build: (carver: Carver) => T): { value: T; arena: Arena } {
    let bytes = 0;
    build({
      take: <C extends Ctor>(ctor: C, length: number) => {
        bytes += aligned(ctor, length);
        return new ctor(0) as TypedArrayOf<C>;
      },
    });
    const arena = new Arena(bytes);
    return { value: build(arena), arena };
  }

  constructor(bytes: number) {
    this.buffer = new ArrayBuffer(bytes);
  }

  take<C extends Ctor>(ctor: C, length: number): TypedArrayOf<C> {
    const size = aligned(ctor, length);
    if (this.used + size > this.buffer.byteLength) {
      throw new RangeError(`arena of ${this.buffer.byteLength} bytes has no room for ${length} × ${ctor.BYTES_PER_ELEMENT} bytes (${this.used} used)`);
    }
    const view = new ctor(this.buffer, this.used, length) as TypedArrayOf<C>;
    this.used += size;
    return view;
  }
}
