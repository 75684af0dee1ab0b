/**
 * Minimal protobuf writer for the subset of `onnx.proto` that we emit
 * (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto).
 *
 * Messages are encoded as lists of byte chunks, so a 300 MB weight tensor is never
 * copied while nesting TensorProto → GraphProto → ModelProto; the chunks are joined
 * once at the end.
 */

/** An encoded message: its chunks and their total length. */
export interface Encoded {
  parts: Uint8Array[];
  length: number;
}

const EMPTY = new Uint8Array(0);
const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

function varint(value: number | bigint): Uint8Array {
  let v = typeof value === "bigint" ? value : BigInt(value);
  if (v < 0n) v = BigInt.asUintN(64, v); // int64 negatives: 10-byte two's complement
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Uint8Array.from(out);
}

/** Builder for one message. Field numbers follow onnx.proto. */
export class Message {
  private readonly parts: Uint8Array[] = [];
  private len = 0;

  private push(b: Uint8Array): void {
    this.parts.push(b);
    this.len += b.length;
  }

  private tag(field: number, wire: number): void {
    this.push(varint((field << 3) | wire));
  }

  int(field: number, value: number | bigint): this {
    this.tag(field, WIRE_VARINT);
    this.push(varint(value));
    return this;
  }

  float(field: number, value: number): this {
    this.tag(field, WIRE_I32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.push(b);
    return this;
  }

  double(field: number, value: number): this {
    this.tag(field, WIRE_I64);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, value, true);
    this.push(b);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  /** A bytes field; the array is referenced, not copied. */
  bytes(field: number, value: Uint8Array): this {
    this.tag(field, WIRE_LEN);
    this.push(varint(value.length));
    if (value.length > 0) this.push(value);
    return this;
  }

  /** A nested message. Its chunks move into this one (a Message argument is left empty). */
  message(field: number, m: Message | Encoded): this {
    const e = m instanceof Message ? m.encoded() : m;
    this.tag(field, WIRE_LEN);
    this.push(varint(e.length));
    for (const p of e.parts) this.push(p);
    if (m instanceof Message) {
      m.parts.length = 0;
      m.len = 0;
    }
    return this;
  }

  /** Packed repeated int64. */
  packedInts(field: number, values: readonly (number | bigint)[]): this {
    const chunks = values.map((v) => varint(v));
    const total = chunks.reduce((a, c) => a + c.length, 0);
    this.tag(field, WIRE_LEN);
    this.push(varint(total));
    for (const c of chunks) this.push(c);
    return this;
  }

  /** Packed repeated float. */
  packedFloats(field: number, values: readonly number[]): this {
    const b = new Uint8Array(values.length * 4);
    const dv = new DataView(b.buffer);
    values.forEach((v, i) => dv.setFloat32(i * 4, v, true));
    return this.bytes(field, b);
  }

  encoded(): Encoded {
    return { parts: this.parts, length: this.len };
  }

  /**
   * Join all chunks into one buffer. The message lets go of each chunk once it is
   * copied, so large weight arrays can be collected while the buffer fills (the
   * message is empty afterwards).
   */
  finish(): Uint8Array {
    const out = new Uint8Array(this.len);
    let off = 0;
    for (let i = 0; i < this.parts.length; i++) {
      const p = this.parts[i]!;
      out.set(p, off);
      off += p.length;
      this.parts[i] = EMPTY;
    }
    this.parts.length = 0;
    this.len = 0;
    return out;
  }
}
