/**
 * Reverse-mode automatic differentiation on {@link Graph}: gradient rules written as
 * standard ONNX ops and appended to the same graph, so onnxruntime runs the forward and
 * the backward pass in one session.
 *
 * Shapes are static: every graph input must have numeric dims (a training graph is built
 * for one micro-batch size). `inferShapes` (./shapes.ts) propagates dtype and shape through the
 * ops listed in {@link DIFFERENTIABLE_OPS} (and a few shape helpers), so each rule knows how to
 * undo broadcasting.
 *
 * Usage:
 * ```ts
 * const loss = ...;                               // a scalar built with g's helpers
 * const grads = backward(g, [{ value: loss }], ["w1", "b1"]);  // { w1: "grad/w1", ... }
 * g.output(grads.w1, "float32", [..]);
 * ```
 * A seed can also carry an upstream gradient (`{ value: emb, grad: "d_emb" }`), which gives a
 * vector–Jacobian product; several seeds add up.
 *
 * Custom gradient boundary: a part of the graph may be differentiated by hand instead (the
 * chunked losses of src/train/loss.ts and src/train/locca-loss.ts, which never build the whole
 * logit matrix). Its forward ops are built as usual, and its analytic gradient enters as
 * seeds: `{ value: x, grad: dx }` for every value x the part reads — intermediate values
 * (embeddings, hidden states) and parameters alike (a seed on a `wrt` input is that input's
 * gradient contribution). The part's own outputs must not be seeds, so no gradient flows
 * through its forward ops (they are skipped: nothing reaches them).
 */
import type { DTypeName, Graph, NodeDef } from "./graph.js";
import { attrInt, attrInts, broadcast, constInts, inferShapes, normAxis, numel, type TensorMeta } from "./shapes.js";

/** Ops with a gradient rule. */
export const DIFFERENTIABLE_OPS = [
  "Add", "Sub", "Mul", "Div", "MatMul", "Neg", "Identity", "Tanh", "Erf", "Exp", "Log", "Sigmoid", "Softplus",
  "Sqrt", "Reciprocal", "Softmax", "LogSoftmax", "Transpose", "Reshape", "Gather", "LayerNormalization", "Conv", "ReduceSum",
  "ReduceMean", "Expand", "Slice", "Concat", "Unsqueeze", "Squeeze",
] as const;

// ---------------------------------------------------------------------------------------------
// Backward pass

/** A value to differentiate from: `grad` is its upstream gradient (default: ones, for a scalar loss). */
export interface Seed {
  value: string;
  grad?: string;
}

/** Emits gradient ops into a graph; every helper takes care of the dtype of its constants. */
class Emitter {
  constructor(readonly g: Graph, readonly meta: Map<string, TensorMeta>) {}

  m(v: string): TensorMeta {
    const r = this.meta.get(v);
    if (!r) throw new Error(`autodiff: no shape for ${v}`);
    return r;
  }

  /** Record the type of a new value. */
  typed(v: string, shape: number[], dtype: DTypeName): string {
    this.meta.set(v, { dtype, shape });
    return v;
  }

  scalar(value: number, dtype: DTypeName): string {
    const data = dtype === "float64" ? Float64Array.of(value) : Float32Array.of(value);
    return this.typed(this.g.init(this.g.fresh("grad_const"), data, []), [], dtype);
  }

  i64(values: number[]): string {
    return this.typed(this.g.constI64(values), [values.length], "int64");
  }

  op(op: string, inputs: string[], shape: number[], dtype: DTypeName, attrs?: NodeDef["attrs"]): string {
    return this.typed(this.g.op(op, inputs, attrs, this.g.fresh(`grad/${op}`)), shape, dtype);
  }

  /** Elementwise binary op with broadcasting. */
  bin(op: "Add" | "Sub" | "Mul" | "Div", a: string, b: string): string {
    const ma = this.m(a);
    return this.op(op, [a, b], broadcast(ma.shape, this.m(b).shape, op), ma.dtype);
  }

  un(op: string, a: string): string {
    const ma = this.m(a);
    return this.op(op, [a], [...ma.shape], ma.dtype);
  }

  reshape(a: string, shape: number[]): string {
    const ma = this.m(a);
    if (ma.shape.length === shape.length && ma.shape.every((d, i) => d === shape[i])) return a;
    return this.op("Reshape", [a, this.i64(shape)], [...shape], ma.dtype);
  }

  transpose(a: string, perm: number[]): string {
    const ma = this.m(a);
    return this.op("Transpose", [a], perm.map((p) => ma.shape[p]!), ma.dtype, { perm: { ints: perm } });
  }

  /** Swap the last two axes. */
  swapLast(a: string): string {
    const r = this.m(a).shape.length;
    const perm = Array.from({ length: r }, (_, i) => i);
    perm[r - 2] = r - 1;
    perm[r - 1] = r - 2;
    return this.transpose(a, perm);
  }

  matmul(a: string, b: string): string {
    const sa = this.m(a).shape;
    const sb = this.m(b).shape;
    return this.op("MatMul", [a, b], [...broadcast(sa.slice(0, -2), sb.slice(0, -2), "MatMul"), sa[sa.length - 2]!, sb[sb.length - 1]!], this.m(a).dtype);
  }

  reduceSum(a: string, axes: number[], keep: boolean): string {
    const ma = this.m(a);
    const ax = axes.map((x) => normAxis(x, ma.shape.length));
    const shape = keep ? ma.shape.map((d, i) => (ax.includes(i) ? 1 : d)) : ma.shape.filter((_, i) => !ax.includes(i));
    return this.op("ReduceSum", [a, this.i64(ax)], shape, ma.dtype, { keepdims: { int: keep ? 1 : 0 } });
  }

  reduceMeanLast(a: string): string {
    const ma = this.m(a);
    const r = ma.shape.length;
    return this.op("ReduceMean", [a], ma.shape.map((d, i) => (i === r - 1 ? 1 : d)), ma.dtype, { axes: { ints: [r - 1] }, keepdims: { int: 1 } });
  }

  expand(a: string, shape: number[]): string {
    const ma = this.m(a);
    if (ma.shape.length === shape.length && ma.shape.every((d, i) => d === shape[i])) return a;
    return this.op("Expand", [a, this.i64(shape)], [...shape], ma.dtype);
  }

  zeros(shape: number[], dtype: DTypeName): string {
    return this.op("Expand", [this.scalar(0, dtype), this.i64(shape)], [...shape], dtype);
  }

  /** Sum a broadcast gradient back to `target`'s shape. */
  unbroadcast(grad: string, target: number[]): string {
    const s = this.m(grad).shape;
    if (s.length === target.length && s.every((d, i) => d === target[i])) return grad;
    const lead = s.length - target.length;
    const axes: number[] = [];
    for (let i = 0; i < s.length; i++) {
      if (i < lead || (target[i - lead] === 1 && s[i] !== 1)) axes.push(i);
    }
    const summed = axes.length > 0 ? this.reduceSum(grad, axes, true) : grad;
    return this.reshape(summed, target);
  }
}

/** What a rule receives: the node, the gradient of its (first) output, and which inputs need one. */
type Rule = (e: Emitter, n: NodeDef, dy: string, need: (i: number) => boolean) => Array<string | undefined>;

const SQRT_2_OVER_PI_TIMES_2 = 2 / Math.sqrt(Math.PI);

const RULES: Record<string, Rule> = {
  Identity: (_e, _n, dy) => [dy],
  Add: (e, n, dy, need) => [need(0) ? e.unbroadcast(dy, e.m(n.inputs[0]!).shape) : undefined, need(1) ? e.unbroadcast(dy, e.m(n.inputs[1]!).shape) : undefined],
  Sub: (e, n, dy, need) => [
    need(0) ? e.unbroadcast(dy, e.m(n.inputs[0]!).shape) : undefined,
    need(1) ? e.unbroadcast(e.un("Neg", dy), e.m(n.inputs[1]!).shape) : undefined,
  ],
  Mul: (e, n, dy, need) => {
    const [a, b] = n.inputs as [string, string];
    return [need(0) ? e.unbroadcast(e.bin("Mul", dy, b), e.m(a).shape) : undefined, need(1) ? e.unbroadcast(e.bin("Mul", dy, a), e.m(b).shape) : undefined];
  },
  Div: (e, n, dy, need) => {
    const [a, b] = n.inputs as [string, string];
    const y = n.outputs[0]!;
    return [
      need(0) ? e.unbroadcast(e.bin("Div", dy, b), e.m(a).shape) : undefined,
      need(1) ? e.unbroadcast(e.un("Neg", e.bin("Div", e.bin("Mul", dy, y), b)), e.m(b).shape) : undefined,
    ];
  },
  Neg: (e, _n, dy) => [e.un("Neg", dy)],
  MatMul: (e, n, dy, need) => {
    const [a, b] = n.inputs as [string, string];
    const sa = e.m(a).shape;
    const sb = e.m(b).shape;
    const out: Array<string | undefined> = [undefined, undefined];
    if (need(0)) out[0] = e.unbroadcast(e.matmul(dy, e.swapLast(b)), sa);
    if (need(1)) {
      if (sb.length === 2 && sa.length > 2) {
        // (…, M, K) × (K, N): fold the batch dims into M instead of summing batched products.
        const K = sa[sa.length - 1]!;
        const N = sb[1]!;
        const a2 = e.reshape(a, [numel(sa) / K, K]);
        const dy2 = e.reshape(dy, [numel(e.m(dy).shape) / N, N]);
        out[1] = e.matmul(e.swapLast(a2), dy2);
      } else {
        out[1] = e.unbroadcast(e.matmul(e.swapLast(a), dy), sb);
      }
    }
    return out;
  },
  Tanh: (e, n, dy) => {
    const y = n.outputs[0]!;
    const dt = e.m(y).dtype;
    return [e.bin("Mul", dy, e.bin("Sub", e.scalar(1, dt), e.bin("Mul", y, y)))];
  },
  Erf: (e, n, dy) => {
    const x = n.inputs[0]!;
    const dt = e.m(x).dtype;
    const g = e.bin("Mul", e.un("Exp", e.un("Neg", e.bin("Mul", x, x))), e.scalar(SQRT_2_OVER_PI_TIMES_2, dt));
    return [e.bin("Mul", dy, g)];
  },
  Exp: (e, n, dy) => [e.bin("Mul", dy, n.outputs[0]!)],
  Log: (e, n, dy) => [e.bin("Div", dy, n.inputs[0]!)],
  Sigmoid: (e, n, dy) => {
    const y = n.outputs[0]!;
    return [e.bin("Mul", dy, e.bin("Mul", y, e.bin("Sub", e.scalar(1, e.m(y).dtype), y)))];
  },
  Softplus: (e, n, dy) => [e.bin("Mul", dy, e.un("Sigmoid", n.inputs[0]!))],
  Sqrt: (e, n, dy) => {
    const y = n.outputs[0]!;
    return [e.bin("Div", e.bin("Mul", dy, e.scalar(0.5, e.m(y).dtype)), y)];
  },
  Reciprocal: (e, n, dy) => {
    const y = n.outputs[0]!;
    return [e.un("Neg", e.bin("Mul", dy, e.bin("Mul", y, y)))];
  },
  Softmax: (e, n, dy) => {
    const y = n.outputs[0]!;
    const axis = normAxis(attrInt(n, "axis", -1), e.m(y).shape.length);
    const s = e.reduceSum(e.bin("Mul", dy, y), [axis], true);
    return [e.bin("Mul", y, e.bin("Sub", dy, s))];
  },
  LogSoftmax: (e, n, dy) => {
    // y = x − logsumexp(x): dx = dy − softmax(x)·Σ dy
    const y = n.outputs[0]!;
    const axis = normAxis(attrInt(n, "axis", -1), e.m(y).shape.length);
    return [e.bin("Sub", dy, e.bin("Mul", e.un("Exp", y), e.reduceSum(dy, [axis], true)))];
  },
  Transpose: (e, n, dy) => {
    const r = e.m(n.inputs[0]!).shape.length;
    const perm = attrInts(n, "perm") ?? Array.from({ length: r }, (_, i) => r - 1 - i);
    const inv = new Array<number>(r);
    perm.forEach((p, i) => (inv[p] = i));
    return [e.transpose(dy, inv)];
  },
  Reshape: (e, n, dy) => [e.reshape(dy, e.m(n.inputs[0]!).shape)],
  Unsqueeze: (e, n, dy) => [e.reshape(dy, e.m(n.inputs[0]!).shape)],
  Squeeze: (e, n, dy) => [e.reshape(dy, e.m(n.inputs[0]!).shape)],
  Expand: (e, n, dy) => [e.unbroadcast(dy, e.m(n.inputs[0]!).shape)],
  Gather: (e, n, dy, need) => {
    if (!need(0)) return [];
    // Scatter-add dy back into zeros shaped like the data. The gathered axis is moved to the
    // front so that ScatterND (reduction "add": repeated indices accumulate) can address it.
    const data = e.m(n.inputs[0]!);
    const idx = e.m(n.inputs[1]!);
    const r = data.shape.length;
    const axis = normAxis(attrInt(n, "axis", 0), r);
    const q = idx.shape.length;
    // dy is (data[:axis], idx…, data[axis+1:]) → (idx…, data[:axis], data[axis+1:])
    const permDy = [...Array.from({ length: q }, (_, i) => axis + i), ...Array.from({ length: axis }, (_, i) => i), ...Array.from({ length: r - axis - 1 }, (_, i) => axis + q + i)];
    let upd = permDy.length > 1 && permDy.some((p, i) => p !== i) ? e.transpose(dy, permDy) : dy;
    const moved = [data.shape[axis]!, ...data.shape.slice(0, axis), ...data.shape.slice(axis + 1)];
    let indices = e.op("Unsqueeze", [n.inputs[1]!, e.i64([-1])], [...idx.shape, 1], "int64");
    if (q === 0) {
      indices = e.reshape(indices, [1]);
      upd = e.reshape(upd, moved.slice(1));
    }
    const zeros = e.zeros(moved, data.dtype);
    const scattered = e.op("ScatterND", [zeros, indices, upd], moved, data.dtype, { reduction: { string: "add" } });
    // back from (N, data[:axis], data[axis+1:]) to data's layout
    const permBack = [...Array.from({ length: axis }, (_, i) => i + 1), 0, ...Array.from({ length: r - axis - 1 }, (_, i) => axis + 1 + i)];
    return [axis === 0 ? scattered : e.transpose(scattered, permBack)];
  },
  LayerNormalization: (e, n, dy, need) => {
    const [x, gamma] = n.inputs as [string, string, string];
    const mx = e.m(x);
    const r = mx.shape.length;
    if (normAxis(attrInt(n, "axis", -1), r) !== r - 1) throw new Error(`${n.name}: autodiff supports LayerNormalization over the last axis only`);
    const epsAttr = n.attrs["epsilon"];
    const eps = epsAttr && "float" in epsAttr ? epsAttr.float : 1e-5;
    // Recompute the statistics (in the input precision, as onnxruntime does).
    const mu = e.reduceMeanLast(x);
    const xc = e.bin("Sub", x, mu);
    const variance = e.reduceMeanLast(e.bin("Mul", xc, xc));
    const rstd = e.un("Reciprocal", e.un("Sqrt", e.bin("Add", variance, e.scalar(Math.fround(eps), mx.dtype))));
    const xhat = e.bin("Mul", xc, rstd);
    const lead = Array.from({ length: r - 1 }, (_, i) => i);
    const out: Array<string | undefined> = [];
    if (need(0)) {
      const gy = e.bin("Mul", dy, gamma);
      const t = e.bin("Sub", e.bin("Sub", gy, e.reduceMeanLast(gy)), e.bin("Mul", xhat, e.reduceMeanLast(e.bin("Mul", gy, xhat))));
      out[0] = e.bin("Mul", t, rstd);
    }
    if (need(1)) out[1] = e.reduceSum(e.bin("Mul", dy, xhat), lead, false);
    if (need(2)) out[2] = e.reduceSum(dy, lead, false);
    return out;
  },
  Conv: (e, n, dy, need) => {
    // Patch embedding: kernel = stride = P, no padding, one group. Expressed as reshapes and a
    // matmul over the (B·G·G', C·P·P') patch matrix; trailing pixels that fill no patch get 0.
    const [x, w] = n.inputs as [string, string, string | undefined];
    const sx = e.m(x).shape;
    const sw = e.m(w).shape;
    const k = attrInts(n, "kernel_shape") ?? sw.slice(2);
    const s = attrInts(n, "strides") ?? k.map(() => 1);
    if (sx.length !== 4 || k[0] !== s[0] || k[1] !== s[1]) throw new Error(`${n.name}: autodiff supports 2-D Conv with kernel = stride only`);
    const [B, C, H, W] = sx as [number, number, number, number];
    const [M] = sw as [number];
    const [P, Q] = k as [number, number];
    const Gh = Math.floor(H / P);
    const Gw = Math.floor(W / Q);
    const dyRows = e.reshape(e.transpose(dy, [0, 2, 3, 1]), [B * Gh * Gw, M]); // (B·Gh·Gw, M)
    const out: Array<string | undefined> = [];
    if (need(0)) {
      const wMat = e.reshape(w, [M, C * P * Q]);
      const dp = e.reshape(e.matmul(dyRows, wMat), [B, Gh, Gw, C, P, Q]);
      let dx = e.reshape(e.transpose(dp, [0, 3, 1, 4, 2, 5]), [B, C, Gh * P, Gw * Q]);
      if (Gh * P !== H || Gw * Q !== W) dx = e.op("Pad", [dx, e.i64([0, 0, 0, 0, 0, 0, H - Gh * P, W - Gw * Q])], [...sx], e.m(dx).dtype);
      out[0] = dx;
    }
    if (need(1)) {
      let xc = x;
      if (Gh * P !== H || Gw * Q !== W) xc = e.op("Slice", [x, e.i64([0, 0]), e.i64([Gh * P, Gw * Q]), e.i64([2, 3])], [B, C, Gh * P, Gw * Q], e.m(x).dtype);
      const patches = e.reshape(e.transpose(e.reshape(xc, [B, C, Gh, P, Gw, Q]), [0, 2, 4, 1, 3, 5]), [B * Gh * Gw, C * P * Q]);
      out[1] = e.reshape(e.matmul(e.swapLast(dyRows), patches), sw);
    }
    if (n.inputs[2] && need(2)) out[2] = e.reduceSum(dy, [0, 2, 3], false);
    return out;
  },
  ReduceSum: (e, n, dy) => {
    const sx = e.m(n.inputs[0]!).shape;
    const axesIn = constInts(e.g, n.inputs[1]);
    const axes = (axesIn && axesIn.length > 0 ? axesIn : sx.map((_, i) => i)).map((a) => normAxis(a, sx.length));
    return [e.expand(e.reshape(dy, sx.map((d, i) => (axes.includes(i) ? 1 : d))), sx)];
  },
  ReduceMean: (e, n, dy) => {
    const mx = e.m(n.inputs[0]!);
    const sx = mx.shape;
    const axesIn = attrInts(n, "axes");
    const axes = (axesIn && axesIn.length > 0 ? axesIn : sx.map((_, i) => i)).map((a) => normAxis(a, sx.length));
    const count = axes.reduce((a, ax) => a * sx[ax]!, 1);
    const scaled = e.bin("Mul", dy, e.scalar(1 / count, mx.dtype));
    return [e.expand(e.reshape(scaled, sx.map((d, i) => (axes.includes(i) ? 1 : d))), sx)];
  },
  Slice: (e, n, dy) => {
    const mx = e.m(n.inputs[0]!);
    const sx = mx.shape;
    const starts = constInts(e.g, n.inputs[1])!;
    const axes = (n.inputs[3] ? constInts(e.g, n.inputs[3])! : starts.map((_, i) => i)).map((a) => normAxis(a, sx.length));
    const sy = e.m(n.outputs[0]!).shape;
    const pads = new Array<number>(2 * sx.length).fill(0);
    axes.forEach((a, i) => {
      const st = Math.min(Math.max(starts[i]! < 0 ? starts[i]! + sx[a]! : starts[i]!, 0), sx[a]!);
      pads[a] = st;
      pads[a + sx.length] = sx[a]! - st - sy[a]!;
    });
    return [e.op("Pad", [dy, e.i64(pads)], [...sx], mx.dtype)];
  },
  Concat: (e, n, dy, need) => {
    const r = e.m(n.inputs[0]!).shape.length;
    const axis = normAxis(attrInt(n, "axis", 0), r);
    let off = 0;
    return n.inputs.map((inp, i) => {
      const sh = e.m(inp).shape;
      const lo = off;
      off += sh[axis]!;
      if (!need(i)) return undefined;
      return e.op("Slice", [dy, e.i64([lo]), e.i64([off]), e.i64([axis])], [...sh], e.m(inp).dtype);
    });
  },
};

/** Inputs of a node that never carry a gradient (shapes, indices, axes). */
const NON_DIFF_INPUTS: Record<string, number[]> = {
  Reshape: [1], Gather: [1], ReduceSum: [1], Expand: [1], Slice: [1, 2, 3, 4], Unsqueeze: [1], Squeeze: [1],
};

/**
 * Append the backward pass of `seeds` to `g` and return the gradient value name of every
 * name in `wrt` (graph inputs, initializers or intermediate values). A `wrt` value that the
 * seeds do not depend on gets an explicit zero tensor.
 */
export function backward(g: Graph, seeds: readonly Seed[], wrt: readonly string[]): Record<string, string> {
  const nodes = [...g.view().nodes]; // snapshot: gradient nodes are appended to the same list
  const meta = inferShapes(g, nodes);
  const e = new Emitter(g, meta);

  // Values that depend on a wrt value (forward reachability).
  const active = new Set<string>(wrt);
  for (const n of nodes) {
    if (n.inputs.some((i, k) => active.has(i) && !(NON_DIFF_INPUTS[n.op] ?? []).includes(k))) for (const o of n.outputs) active.add(o);
  }

  const contrib = new Map<string, string[]>();
  const addGrad = (v: string, gv: string): void => {
    const list = contrib.get(v);
    if (list) list.push(gv);
    else contrib.set(v, [gv]);
  };
  for (const s of seeds) {
    if (!active.has(s.value)) continue;
    const ms = e.m(s.value);
    let gv = s.grad;
    if (gv === undefined) {
      if (numel(ms.shape) !== 1) throw new Error(`autodiff: seed ${s.value} has shape [${ms.shape}]; give its upstream gradient`);
      gv = e.expand(e.scalar(1, ms.dtype), ms.shape);
    } else if (!meta.has(gv)) {
      e.typed(gv, [...ms.shape], ms.dtype); // an input added after the forward graph
    }
    addGrad(s.value, gv);
  }
  const total = (v: string): string | undefined => {
    const list = contrib.get(v);
    if (!list || list.length === 0) return undefined;
    let acc = list[0]!;
    for (let i = 1; i < list.length; i++) acc = e.bin("Add", acc, list[i]!);
    contrib.set(v, [acc]);
    return acc;
  };

  for (let ni = nodes.length - 1; ni >= 0; ni--) {
    const n = nodes[ni]!;
    if (!n.outputs.some((o) => active.has(o))) continue;
    // Only the first output of a node carries a gradient (LayerNormalization's statistics
    // outputs are not differentiated).
    const dy = total(n.outputs[0]!);
    if (dy === undefined) continue;
    const rule = RULES[n.op];
    if (!rule) throw new Error(`autodiff: no gradient rule for ${n.op} (${n.name})`);
    const skip = NON_DIFF_INPUTS[n.op] ?? [];
    const need = (i: number): boolean => n.inputs[i] !== undefined && n.inputs[i] !== "" && active.has(n.inputs[i]!) && !skip.includes(i);
    const grads = rule(e, n, dy, need);
    grads.forEach((gi, i) => {
      if (gi !== undefined && need(i)) addGrad(n.inputs[i]!, gi);
    });
  }

  const out: Record<string, string> = {};
  for (const w of wrt) {
    const gv = total(w);
    const mw = e.m(w);
    out[w] = gv ?? e.zeros(mw.shape, mw.dtype);
  }
  return out;
}
