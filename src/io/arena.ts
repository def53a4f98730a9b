/**
 * One fixed-length ArrayBuffer carved into typed arrays. A forwarding loop allocates everything
 * it binds to the addon's I/O port from one arena, so the addon holds one buffer and checks one
 * buffer per call: if that buffer was ever detached (transferred away), every call of the port
 * is refused instead of reaching memory the loop no longer owns.
 */

type TypedArrayOf<T> = T extends Int32ArrayConstructor ? Int32Array
  : T extends Uint32ArrayConstructor ? Uint32Array
  : T extends Uint16ArrayConstructor ? Uint16Array
  : T extends Uint8ArrayConstructor ? Uint8Array
  : never;

type Ctor = Int32ArrayConstructor | Uint32ArrayConstructor | Uint16ArrayConstructor | Uint8ArrayConstructor;

/** Every view starts on this boundary. */
const ALIGN = 64;

export class Arena {
  readonly buffer: ArrayBuffer;
  private used = 0;

  /** Bytes one `take(ctor, length)` uses, alignment included: sum these to size an arena. */
  static bytes(ctor: Ctor, length: number): number {
    return Math.ceil((length * ctor.BYTES_PER_ELEMENT) / ALIGN) * ALIGN;
  }

  constructor(bytes: number) {
    this.buffer = new ArrayBuffer(bytes);
  }

  /** A zeroed view of `length` elements; throws if the arena was sized too small. */
  take<C extends Ctor>(ctor: C, length: number): TypedArrayOf<C> {
    const size = Arena.bytes(ctor, length);
    if (this.used + size > this.buffer.byteLength) {
      throw new RangeError(`arena of ${this.buffer.byteLength} bytes has no room for ${length} × ${ctor.BYTES_PER_ELEMENT} bytes (${this.used} used)`);
    }
    const view = new ctor(this.buffer, this.used, length) as TypedArrayOf<C>;
    this.used += size;
    return view;
  }
}
