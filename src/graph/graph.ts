/**
 * A small ONNX graph builder. Model files (src/models) describe the network with
 * these helpers; {@link Graph.toModelBytes} serialises it as an ONNX ModelProto in
 * memory for onnxruntime. Initializer names mirror the checkpoint keys.
 *
 * Op semantics: https://onnx.ai/onnx/operators/ (default domain, opset 17).
 */
import { closeSync, openSync, writeFileSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { Message } from "./protobuf.js";

/** Element types we use. Values are ONNX TensorProto.DataType codes. */
export const DataType = { float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float16: 10, float64: 11 } as const;
export type DTypeName = keyof typeof DataType;

export type Dim = number | string;
export type TensorData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | Int8Array;

/** An attribute value, tagged with its ONNX type. */
export type Attr =
  | { int: number }
  | { float: number }
  | { ints: number[] }
  | { floats: number[] }
  | { string: string };

/** One node, as returned by {@link Graph.view}. */
export interface NodeDef {
  op: string;
  inputs: string[];
  outputs: string[];
  name: string;
  attrs: Record<string, Attr>;
  domain: string;
}

/** A graph input or output, as returned by {@link Graph.view}. */
export interface ValueDef {
  name: string;
  dtype: DTypeName;
  dims: Dim[];
}

/** An initializer, as returned by {@link Graph.view}. */
export interface InitDef {
  name: string;
  dtype: DTypeName;
  dims: number[];
  data: TensorData;
}

function dtypeOf(data: TensorData): DTypeName {
  if (data instanceof Float32Array) return "float32";
  if (data instanceof Float64Array) return "float64";
  if (data instanceof BigInt64Array) return "int64";
  if (data instanceof Int32Array) return "int32";
  if (data instanceof Int8Array) return "int8";
  return "uint8";
}

/** Builder for one ONNX graph. */
export class Graph {
  private readonly nodes: NodeDef[] = [];
  private readonly inputs: ValueDef[] = [];
  private readonly outputs: ValueDef[] = [];
  private readonly inits = new Map<string, InitDef>();
  private counter = 0;
  /** Bytes of initializer data added so far. */
  initializerBytes = 0;

  constructor(readonly name: string) {}

  /** A fresh intermediate value name, readable in profiles (`prefix/N`). */
  fresh(prefix: string): string {
    return `${prefix}/${this.counter++}`;
  }

  input(name: string, dtype: DTypeName, dims: Dim[]): string {
    this.inputs.push({ name, dtype, dims });
    return name;
  }

  output(name: string, dtype: DTypeName, dims: Dim[]): string {
    this.outputs.push({ name, dtype, dims });
    return name;
  }

  /** Add an initializer (a constant tensor baked into the model). Returns its name. */
  init(name: string, data: TensorData, dims: number[]): string {
    const n = dims.reduce((a, b) => a * b, 1);
    if (n !== data.length) throw new Error(`initializer ${name}: ${data.length} values for shape [${dims.join(", ")}]`);
    if (this.inits.has(name)) throw new Error(`duplicate initializer ${name}`);
    this.inits.set(name, { name, dtype: dtypeOf(data), dims, data });
    this.initializerBytes += data.byteLength;
    return name;
  }

  /** A small int64 constant (shapes, axes, indices). */
  constI64(values: number[], dims: number[] = [values.length]): string {
    return this.init(this.fresh("const_i64"), BigInt64Array.from(values.map((v) => BigInt(v))), dims);
  }

  /** A float32 scalar constant. */
  constF(value: number): string {
    return this.init(this.fresh("const_f32"), Float32Array.of(value), []);
  }

  /** Add a node; returns its output names. */
  node(op: string, inputs: string[], opts: { outputs?: number | string[]; attrs?: Record<string, Attr>; domain?: string; name?: string } = {}): string[] {
    const name = opts.name ?? this.fresh(op);
    const outs = Array.isArray(opts.outputs)
      ? opts.outputs
      : Array.from({ length: opts.outputs ?? 1 }, (_, i) => `${name}:${i}`);
    this.nodes.push({ op, inputs, outputs: outs, name, attrs: opts.attrs ?? {}, domain: opts.domain ?? "" });
    return outs;
  }

  /** Single-output node. */
  op(op: string, inputs: string[], attrs?: Record<string, Attr>, name?: string): string {
    const o: { attrs?: Record<string, Attr>; name?: string } = {};
    if (attrs) o.attrs = attrs;
    if (name) o.name = name;
    return this.node(op, inputs, o)[0]!;
  }

  // ---- op helpers (thin wrappers that keep model files readable) ----
  add(a: string, b: string): string { return this.op("Add", [a, b]); }
  sub(a: string, b: string): string { return this.op("Sub", [a, b]); }
  mul(a: string, b: string): string { return this.op("Mul", [a, b]); }
  div(a: string, b: string): string { return this.op("Div", [a, b]); }
  matmul(a: string, b: string): string { return this.op("MatMul", [a, b]); }
  tanh(a: string): string { return this.op("Tanh", [a]); }
  erf(a: string): string { return this.op("Erf", [a]); }
  softmax(a: string, axis = -1): string { return this.op("Softmax", [a], { axis: { int: axis } }); }
  transpose(a: string, perm: number[]): string { return this.op("Transpose", [a], { perm: { ints: perm } }); }
  /** Reshape; 0 copies the input dim, -1 infers it. */
  reshape(a: string, shape: number[]): string { return this.op("Reshape", [a, this.constI64(shape)]); }
  gather(data: string, indices: string, axis: number): string { return this.op("Gather", [data, indices], { axis: { int: axis } }); }
  layerNorm(x: string, weight: string, bias: string, eps: number): string {
    return this.op("LayerNormalization", [x, weight, bias], { axis: { int: -1 }, epsilon: { float: eps } });
  }

  /**
   * Read-only view of the graph built so far: nodes in insertion (topological) order, inputs,
   * outputs and initializers (data arrays are shared, not copied). For graph analyses such as
   * reverse-mode autodiff (src/graph/autodiff.ts).
   */
  view(): { nodes: readonly Readonly<NodeDef>[]; inputs: readonly Readonly<ValueDef>[]; outputs: readonly Readonly<ValueDef>[]; initializers: ReadonlyMap<string, Readonly<InitDef>> } {
    return { nodes: this.nodes, inputs: this.inputs, outputs: this.outputs, initializers: this.inits };
  }

  /**
   * Serialise as an ONNX ModelProto (IR 8, opset 17 + com.microsoft 1). The graph gives
   * up its initializers while doing so (they move into the returned bytes), so call
   * this once.
   */
  toModelBytes(
    producer = "siglip2",
    external?: (t: InitDef) => { location: string; offset: number; length: number } | null,
    sink?: (bytes: Uint8Array) => void,
  ): Uint8Array {
    const graph = new Message();
    for (const n of this.nodes) {
      const m = new Message();
      for (const i of n.inputs) m.string(1, i);
      for (const o of n.outputs) m.string(2, o);
      m.string(3, n.name).string(4, n.op);
      for (const [k, a] of Object.entries(n.attrs)) m.message(5, encodeAttr(k, a));
      if (n.domain) m.string(7, n.domain);
      graph.message(1, m);
    }
    graph.string(2, this.name);
    for (const t of this.inits.values()) {
      const m = new Message();
      m.packedInts(1, t.dims).int(2, DataType[t.dtype]).string(8, t.name);
      const ext = external?.(t);
      if (ext) {
        for (const [k, v] of [["location", ext.location], ["offset", String(ext.offset)], ["length", String(ext.length)]] as const) {
          m.message(13, new Message().string(1, k).string(2, v));
        }
        m.int(14, 1); // data_location = EXTERNAL
      } else {
        m.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
      }
      graph.message(5, m);
    }
    for (const v of this.inputs) graph.message(11, encodeValueInfo(v));
    for (const v of this.outputs) graph.message(12, encodeValueInfo(v));

    const model = new Message();
    model.int(1, 8).string(2, producer).message(7, graph);
    model.message(8, new Message().string(1, "").int(2, 17));
    model.message(8, new Message().string(1, "com.microsoft").int(2, 1));
    this.inits.clear(); // the weight arrays now live only in the message chunks, released by finish()
    const bytes = model.finish();
    sink?.(bytes);
    return bytes;
  }
}

/** Alignment of external tensors in the weights file (lets onnxruntime memory-map them). */
const EXTERNAL_ALIGN = 65536;

/**
 * Write the graph as `<path>` (ONNX protobuf) plus `<path>.data` (or `dataFile`, a name in
 * the same folder: transformers.js wants `<name>.onnx_data`) holding every initializer
 * of at least `minExternalBytes` at 64 KiB-aligned offsets, so that onnxruntime can
 * memory-map the weights instead of copying them. Gives up the initializers like
 * {@link Graph.toModelBytes}.
 */
export function writeModelFiles(g: Graph, path: string, options: number | { minExternalBytes?: number; dataFile?: string } = 1024): void {
  const o = typeof options === "number" ? { minExternalBytes: options } : options;
  const minExternalBytes = o.minExternalBytes ?? 1024;
  const dataPath = join(dirname(path), o.dataFile ?? `${basename(path)}.data`);
  const fd = openSync(dataPath, "w");
  let offset = 0;
  try {
    g.toModelBytes("siglip2", (t) => {
      if (t.data.byteLength < minExternalBytes) return null;
      offset = Math.ceil(offset / EXTERNAL_ALIGN) * EXTERNAL_ALIGN;
      writeSync(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), 0, t.data.byteLength, offset);
      const entry = { location: basename(dataPath), offset, length: t.data.byteLength };
      offset += t.data.byteLength;
      return entry;
    }, (bytes) => writeFileSync(path, bytes));
  } finally {
    closeSync(fd);
  }
}

function encodeAttr(name: string, a: Attr): Message {
  const m = new Message().string(1, name);
  if ("int" in a) return m.int(3, a.int).int(20, 2);
  if ("float" in a) return m.float(2, a.float).int(20, 1);
  if ("ints" in a) return m.packedInts(8, a.ints).int(20, 7);
  if ("floats" in a) return m.packedFloats(7, a.floats).int(20, 6);
  return m.bytes(4, new TextEncoder().encode(a.string)).int(20, 3);
}

function encodeValueInfo(v: ValueDef): Message {
  const shape = new Message();
  for (const d of v.dims) shape.message(1, typeof d === "number" ? new Message().int(1, d) : new Message().string(2, d));
  const tensorType = new Message().int(1, DataType[v.dtype]).message(2, shape);
  const type = new Message().message(1, tensorType);
  return new Message().string(1, v.name).message(2, type);
}
