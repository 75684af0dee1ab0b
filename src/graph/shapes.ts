/**
 * Static shape inference on {@link Graph}: dtype and shape of every value, from the graph
 * inputs (numeric dims only) and initializers through each node. Used by the gradient rules
 * of ./autodiff.ts (to undo broadcasting) and by the gradient checks.
 *
 * One small rule per op in {@link SHAPE_RULES}; the semantics are ONNX's (opset 17):
 * https://onnx.ai/onnx/operators/
 */
import type { DTypeName, Graph, NodeDef } from "./graph.js";

/** Static type of one value. */
export interface TensorMeta {
  dtype: DTypeName;
  shape: number[];
}

export const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/** Numpy-style broadcast of two shapes; `where` names the node in the error. */
export function broadcast(a: number[], b: number[], where: string): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`${where}: cannot broadcast [${a}] with [${b}]`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

export const normAxis = (axis: number, rank: number): number => (axis < 0 ? axis + rank : axis);

export function attrInt(n: NodeDef, name: string, dflt: number): number {
  const a = n.attrs[name];
  return a && "int" in a ? a.int : dflt;
}

export function attrInts(n: NodeDef, name: string): number[] | undefined {
  const a = n.attrs[name];
  return a && "ints" in a ? a.ints : undefined;
}

/** Values of a constant int64 initializer, or undefined. */
export function constInts(g: Graph, name: string | undefined): number[] | undefined {
  if (!name) return undefined;
  const t = g.view().initializers.get(name);
  if (!t || !(t.data instanceof BigInt64Array)) return undefined;
  return Array.from(t.data, (v) => Number(v));
}

function needConst(g: Graph, n: NodeDef, i: number): number[] {
  const v = constInts(g, n.inputs[i]);
  if (!v) throw new Error(`${n.name} (${n.op}): input ${i} must be a constant int64 initializer`);
  return v;
}

/** Output shape of Reshape(x, shape) with ONNX's 0 (copy) and -1 (infer) rules. */
export function reshapeTarget(x: number[], spec: number[]): number[] {
  const out = spec.map((d, i) => (d === 0 ? x[i]! : d));
  const known = out.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  return out.map((d) => (d === -1 ? numel(x) / known : d));
}

/** What a shape rule sees of one node. */
interface NodeShapes {
  g: Graph;
  n: NodeDef;
  /** Shape of the first input ([] when it has none). */
  x: number[];
  /** Type of input i. */
  m(i: number): TensorMeta;
  /** Record output `out` (default 0) with the first input's dtype unless given. */
  set(shape: number[], dtype?: DTypeName, out?: number): void;
}

type ShapeRule = (s: NodeShapes) => void;

const compare: ShapeRule = ({ n, x, m, set }) => set(broadcast(x, m(1).shape, n.name), "bool");
const same: ShapeRule = ({ x, set }) => set([...x]);
const elementwise: ShapeRule = ({ n, x, m, set }) => set(broadcast(x, m(1).shape, n.name));
/** Where(cond, a, b): the broadcast of all three, a's dtype. */
const where: ShapeRule = ({ n, x, m, set }) => set(broadcast(broadcast(x, m(1).shape, n.name), m(2).shape, n.name), m(1).dtype);

/** Range(start, limit, delta) of constant int64 scalars (the NaFlex patch rows of a static length). */
function range({ g, n, set }: NodeShapes): void {
  const [start, limit, delta] = [0, 1, 2].map((i) => needConst(g, n, i)[0]!) as [number, number, number];
  set([Math.max(Math.ceil((limit - start) / delta), 0)], "int64");
}

function matmul({ n, x: a, m, set }: NodeShapes): void {
  const b = m(1).shape;
  if (a.length < 2 || b.length < 2) throw new Error(`${n.name}: MatMul of rank < 2 is not supported by autodiff`);
  if (a[a.length - 1] !== b[b.length - 2]) throw new Error(`${n.name}: MatMul [${a}] × [${b}]`);
  set([...broadcast(a.slice(0, -2), b.slice(0, -2), n.name), a[a.length - 2]!, b[b.length - 1]!]);
}

function transpose({ n, x, set }: NodeShapes): void {
  const perm = attrInts(n, "perm") ?? x.map((_, i) => x.length - 1 - i);
  set(perm.map((p) => x[p]!));
}

function gather({ n, x, m, set }: NodeShapes): void {
  const axis = normAxis(attrInt(n, "axis", 0), x.length);
  set([...x.slice(0, axis), ...m(1).shape, ...x.slice(axis + 1)]);
}

/** Y, and the optional mean and inverse std-dev outputs (1 on the normalised axes). */
function layerNorm({ n, x, set }: NodeShapes): void {
  set([...x]);
  const axis = normAxis(attrInt(n, "axis", -1), x.length);
  const stat = x.map((d, i) => (i < axis ? d : 1));
  if (n.outputs[1]) set(stat, "float32", 1);
  if (n.outputs[2]) set(stat, "float32", 2);
}

/** No padding, dilation or groups (the patch embedding): out = ⌊(in − k) / s⌋ + 1. */
function conv({ n, x, m, set }: NodeShapes): void {
  const w = m(1).shape;
  const k = attrInts(n, "kernel_shape") ?? w.slice(2);
  const s = attrInts(n, "strides") ?? k.map(() => 1);
  const pads = attrInts(n, "pads");
  if (pads?.some((p) => p !== 0) || attrInts(n, "dilations")?.some((d) => d !== 1) || attrInt(n, "group", 1) !== 1) {
    throw new Error(`${n.name}: Conv with padding, dilation or groups is not supported by autodiff`);
  }
  set([x[0]!, w[0]!, ...k.map((kk, i) => Math.floor((x[2 + i]! - kk) / s[i]!) + 1)]);
}

/** ReduceSum takes its axes as an input (opset 13+), the others as an attribute; none = all. */
function reduce({ g, n, x, set }: NodeShapes): void {
  const axesIn = n.op === "ReduceSum" ? constInts(g, n.inputs[1]) : attrInts(n, "axes");
  const axes = (axesIn && axesIn.length > 0 ? axesIn : x.map((_, i) => i)).map((a) => normAxis(a, x.length));
  const keep = attrInt(n, "keepdims", 1) === 1;
  set(keep ? x.map((d, i) => (axes.includes(i) ? 1 : d)) : x.filter((_, i) => !axes.includes(i)));
}

function slice({ g, n, x, set }: NodeShapes): void {
  const starts = needConst(g, n, 1);
  const ends = needConst(g, n, 2);
  const axes = (n.inputs[3] ? needConst(g, n, 3) : starts.map((_, i) => i)).map((a) => normAxis(a, x.length));
  const steps = n.inputs[4] ? needConst(g, n, 4) : starts.map(() => 1);
  if (steps.some((s) => s !== 1)) throw new Error(`${n.name}: Slice with steps ≠ 1 is not supported by autodiff`);
  const out = [...x];
  axes.forEach((a, i) => {
    const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + x[a]! : v, 0), x[a]!);
    out[a] = Math.max(0, clamp(ends[i]!) - clamp(starts[i]!));
  });
  set(out);
}

function concat({ n, x, m, set }: NodeShapes): void {
  const axis = normAxis(attrInt(n, "axis", 0), x.length);
  const out = [...x];
  out[axis] = n.inputs.reduce((acc, _, i) => acc + m(i).shape[axis]!, 0);
  set(out);
}

function unsqueeze({ g, n, x, set }: NodeShapes): void {
  const axes = needConst(g, n, 1);
  const rank = x.length + axes.length;
  const ax = axes.map((a) => normAxis(a, rank));
  const out: number[] = [];
  let j = 0;
  for (let i = 0; i < rank; i++) out.push(ax.includes(i) ? 1 : x[j++]!);
  set(out);
}

function squeeze({ g, n, x, set }: NodeShapes): void {
  const axes = n.inputs[1] ? needConst(g, n, 1).map((a) => normAxis(a, x.length)) : x.map((d, i) => (d === 1 ? i : -1));
  set(x.filter((_, i) => !axes.includes(i)));
}

function cast({ n, x, set }: NodeShapes): void {
  const to = attrInt(n, "to", 1);
  const name = (Object.entries({ float32: 1, float64: 11, int64: 7, int32: 6 }).find(([, v]) => v === to)?.[0] ?? "float32") as DTypeName;
  set([...x], name);
}

/** Pad: pads = [begin_0, …, begin_r, end_0, …, end_r]. */
function pad({ g, n, x, set }: NodeShapes): void {
  const p = needConst(g, n, 1);
  set(x.map((d, i) => d + p[i]! + p[i + x.length]!));
}

/** Shape rule of every op the training graphs (and their gradients) use. */
export const SHAPE_RULES: Record<string, ShapeRule> = {
  Add: elementwise, Sub: elementwise, Mul: elementwise, Div: elementwise, Pow: elementwise,
  Neg: same, Identity: same, Tanh: same, Erf: same, Exp: same, Log: same, Sigmoid: same, Softplus: same,
  Sqrt: same, Reciprocal: same, Softmax: same, LogSoftmax: same, Relu: same, Abs: same, ScatterND: same,
  Max: elementwise,
  Equal: compare, Greater: compare, Less: compare, GreaterOrEqual: compare,
  Where: where, Mod: elementwise, Range: range,
  MatMul: matmul,
  Transpose: transpose,
  Reshape: ({ g, n, x, set }) => set(reshapeTarget(x, needConst(g, n, 1))),
  Gather: gather,
  LayerNormalization: layerNorm,
  Conv: conv,
  ReduceSum: reduce, ReduceMean: reduce, ReduceMax: reduce,
  Expand: ({ g, n, x, set }) => set(broadcast(x, needConst(g, n, 1), n.name)),
  Slice: slice,
  Concat: concat,
  Unsqueeze: unsqueeze,
  Squeeze: squeeze,
  Cast: cast,
  Pad: pad,
  Shape: ({ x, set }) => set([x.length], "int64"),
};

/** Infer dtype and shape of every value in `g` (inputs and initializers must have numeric dims). */
export function inferShapes(g: Graph, nodes: readonly NodeDef[] = g.view().nodes): Map<string, TensorMeta> {
  const meta = new Map<string, TensorMeta>();
  const view = g.view();
  for (const v of view.inputs) {
    if (!v.dims.every((d) => typeof d === "number")) throw new Error(`autodiff: input ${v.name} has symbolic dims [${v.dims}]; training graphs need static shapes`);
    meta.set(v.name, { dtype: v.dtype, shape: v.dims as number[] });
  }
  for (const t of view.initializers.values()) meta.set(t.name, { dtype: t.dtype, shape: [...t.dims] });
  for (const n of nodes) {
    const rule = SHAPE_RULES[n.op];
    if (!rule) throw new Error(`autodiff: no shape rule for ${n.op} (${n.name})`);
    const m = (i: number): TensorMeta => {
      const r = meta.get(n.inputs[i]!);
      if (!r) throw new Error(`autodiff: ${n.name} (${n.op}): unknown input ${n.inputs[i]}`);
      return r;
    };
    const set = (shape: number[], dtype: DTypeName = m(0).dtype, out = 0): void => {
      meta.set(n.outputs[out]!, { dtype, shape });
    };
    const x = n.inputs.length > 0 && n.inputs[0] !== "" ? m(0).shape : [];
    rule({ g, n, x, m, set });
  }
  return meta;
}
