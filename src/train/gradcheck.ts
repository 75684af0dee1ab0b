/**
 * Finite-difference gradient checks for the autodiff rules (src/graph/autodiff.ts).
 *
 * A check builds `loss = Σ op(inputs) ⊙ R` (R a fixed random tensor, so every output
 * element gets a distinct weight), appends the backward pass, and compares each analytic
 * gradient element with the central difference `(L(x+ε) − L(x−ε)) / 2ε`, all computed by
 * onnxruntime. float64 where onnxruntime's CPU kernels support it (ε = 1e-6); float32 for
 * Erf, Softplus and Conv, which have float32 kernels only, and for the NaFlex position resize,
 * whose interpolation weights are float32 as in PyTorch (ε = 1e-2).
 */
import { backward } from "../graph/autodiff.js";
import { inferShapes } from "../graph/shapes.js";
import { Graph } from "../graph/graph.js";
import { ort } from "../graph/runtime.js";
import { sessionOptions } from "../graph/session-options.js";
import { positionsInGraph } from "../models/position-resize.js";
import type { VisionConfig } from "../weights/config.js";
import { Rng } from "./rng.js";

export type FloatType = "float32" | "float64";

/** One input of a checked op. */
export interface CheckInput {
  name: string;
  shape: number[];
  /** Values (default: N(0, 1)); for an int64 input give `ints`. */
  data?: number[];
  /** Strictly positive random values (log, sqrt, divisors). */
  positive?: boolean;
  /** A non-differentiable int64 input (indices). */
  ints?: number[];
}

export interface GradCheckResult {
  label: string;
  dtype: FloatType;
  /** Max |analytic − finite difference| over the checked elements. */
  maxAbs: number;
  /** Largest |finite difference| seen (the scale of the gradient). */
  scale: number;
  /** Elements checked. */
  checked: number;
  tol: number;
  ok: boolean;
}

const size = (s: number[]): number => s.reduce((a, b) => a * b, 1);

/**
 * Check the gradient of `build(g, inputNames)` with respect to every float input.
 * At most `maxPerInput` elements per input are perturbed (spread over the tensor).
 */
export async function gradCheck(
  label: string,
  dtype: FloatType,
  inputs: CheckInput[],
  build: (g: Graph, names: string[]) => string,
  opts: { eps?: number; atol?: number; rtol?: number; seed?: number; maxPerInput?: number } = {},
): Promise<GradCheckResult> {
  const rng = new Rng(opts.seed ?? 1234);
  const eps = opts.eps ?? (dtype === "float64" ? 1e-6 : 1e-2);
  const g = new Graph(`gradcheck.${label}`);
  const names = inputs.map((i) => g.input(i.name, i.ints ? "int64" : dtype, i.shape));
  const y = build(g, names);
  const ym = inferShapes(g).get(y)!;
  const R = Float64Array.from({ length: size(ym.shape) }, () => rng.normal());
  const rName = g.init("R", dtype === "float64" ? R : Float32Array.from(R), ym.shape);
  const loss = g.op("ReduceSum", [g.mul(y, rName)], { keepdims: { int: 0 } });
  g.node("Identity", [loss], { outputs: ["loss"] });
  g.output("loss", dtype, []);
  const diff = inputs.filter((i) => !i.ints).map((i) => i.name);
  const grads = backward(g, [{ value: loss }], diff);
  for (const n of diff) {
    g.node("Identity", [grads[n]!], { outputs: [`grad.${n}`] });
    g.output(`grad.${n}`, dtype, inputs.find((i) => i.name === n)!.shape);
  }
  const session = await ort.InferenceSession.create(g.toModelBytes(), sessionOptions({ threads: 1, optimizationLevel: "disabled" }));

  const values = new Map<string, Float64Array>();
  const feeds: Record<string, ort.Tensor> = {};
  for (const i of inputs) {
    if (i.ints) {
      feeds[i.name] = new ort.Tensor("int64", BigInt64Array.from(i.ints.map(BigInt)), i.shape);
      continue;
    }
    const v = i.data ? Float64Array.from(i.data) : Float64Array.from({ length: size(i.shape) }, () => (i.positive ? rng.uniform(0.5, 2) : rng.normal()));
    values.set(i.name, v);
  }
  const tensor = (v: Float64Array, shape: number[]): ort.Tensor =>
    dtype === "float64" ? new ort.Tensor("float64", Float64Array.from(v), shape) : new ort.Tensor("float32", Float32Array.from(v), shape);
  const run = async (): Promise<Record<string, ort.Tensor>> => {
    for (const i of inputs) if (!i.ints) feeds[i.name] = tensor(values.get(i.name)!, i.shape);
    return session.run(feeds);
  };
  const base = await run();
  let maxAbs = 0;
  let scale = 0;
  let checked = 0;
  const maxPer = opts.maxPerInput ?? 40;
  for (const n of diff) {
    const v = values.get(n)!;
    const analytic = base[`grad.${n}`]!.data as Float32Array | Float64Array;
    const stride = Math.max(1, Math.floor(v.length / maxPer));
    for (let k = 0; k < v.length; k += stride) {
      const x0 = v[k]!;
      v[k] = x0 + eps;
      const lp = Number((await run())["loss"]!.data[0]);
      v[k] = x0 - eps;
      const lm = Number((await run())["loss"]!.data[0]);
      v[k] = x0;
      const fd = (lp - lm) / (2 * eps);
      maxAbs = Math.max(maxAbs, Math.abs(fd - analytic[k]!));
      scale = Math.max(scale, Math.abs(fd));
      checked++;
    }
  }
  await session.release();
  const tol = (opts.atol ?? (dtype === "float64" ? 1e-7 : 5e-4)) + (opts.rtol ?? (dtype === "float64" ? 1e-6 : 1e-3)) * scale;
  return { label, dtype, maxAbs, scale, checked, tol, ok: maxAbs <= tol };
}

/** One per-op check: a label, the dtype and how to build it. */
export interface OpCase {
  label: string;
  dtype: FloatType;
  inputs: CheckInput[];
  build: (g: Graph, n: string[]) => string;
}

const i64 = (g: Graph, v: number[]): string => g.constI64(v);
const f = (g: Graph, v: number, dt: FloatType): string => g.init(g.fresh("c"), dt === "float64" ? Float64Array.of(v) : Float32Array.of(v), []);

/** The per-op cases: every op the towers and the loss use, with the broadcasting patterns they use. */
export function opCases(): OpCase[] {
  const D: FloatType = "float64";
  const F: FloatType = "float32";
  const u = (op: string, dt: FloatType, shape: number[], extra: Partial<CheckInput> = {}): OpCase => ({
    label: op, dtype: dt, inputs: [{ name: "x", shape, ...extra }], build: (g, [x]) => g.op(op, [x!]),
  });
  return [
    { label: "Add (B,S,D)+(D)", dtype: D, inputs: [{ name: "a", shape: [2, 3, 4] }, { name: "b", shape: [4] }], build: (g, [a, b]) => g.add(a!, b!) },
    { label: "Add (2,1,4)+(3,1)", dtype: D, inputs: [{ name: "a", shape: [2, 1, 4] }, { name: "b", shape: [3, 1] }], build: (g, [a, b]) => g.add(a!, b!) },
    { label: "Sub (3,4)−(1,4)", dtype: D, inputs: [{ name: "a", shape: [3, 4] }, { name: "b", shape: [1, 4] }], build: (g, [a, b]) => g.sub(a!, b!) },
    { label: "Mul (2,3,4)·(3,1)", dtype: D, inputs: [{ name: "a", shape: [2, 3, 4] }, { name: "b", shape: [3, 1] }], build: (g, [a, b]) => g.mul(a!, b!) },
    { label: "Div (3,4)/(3,1)", dtype: D, inputs: [{ name: "a", shape: [3, 4] }, { name: "b", shape: [3, 1], positive: true }], build: (g, [a, b]) => g.div(a!, b!) },
    { label: "MatMul (3,4)×(4,5)", dtype: D, inputs: [{ name: "a", shape: [3, 4] }, { name: "b", shape: [4, 5] }], build: (g, [a, b]) => g.matmul(a!, b!) },
    { label: "MatMul (2,3,4)×(4,5)", dtype: D, inputs: [{ name: "a", shape: [2, 3, 4] }, { name: "b", shape: [4, 5] }], build: (g, [a, b]) => g.matmul(a!, b!) },
    { label: "MatMul (1,2,1,4)×(3,2,4,5)", dtype: D, inputs: [{ name: "a", shape: [1, 2, 1, 4] }, { name: "b", shape: [3, 2, 4, 5] }], build: (g, [a, b]) => g.matmul(a!, b!) },
    u("Neg", D, [3, 4]),
    u("Identity", D, [3, 4]),
    u("Tanh", D, [3, 4]),
    u("Exp", D, [3, 4]),
    u("Log", D, [3, 4], { positive: true }),
    u("Sigmoid", D, [3, 4]),
    u("Sqrt", D, [3, 4], { positive: true }),
    u("Reciprocal", D, [3, 4], { positive: true }),
    u("Erf", F, [3, 4]),
    u("Softplus", F, [3, 4]),
    { label: "Softmax axis −1", dtype: D, inputs: [{ name: "x", shape: [2, 3, 5] }], build: (g, [x]) => g.softmax(x!, -1) },
    { label: "Softmax axis 1", dtype: D, inputs: [{ name: "x", shape: [2, 3, 5] }], build: (g, [x]) => g.softmax(x!, 1) },
    { label: "LogSoftmax axis −1", dtype: D, inputs: [{ name: "x", shape: [2, 3, 5] }], build: (g, [x]) => g.op("LogSoftmax", [x!], { axis: { int: -1 } }) },
    { label: "Transpose [0,2,1,3]", dtype: D, inputs: [{ name: "x", shape: [2, 3, 4, 2] }], build: (g, [x]) => g.transpose(x!, [0, 2, 1, 3]) },
    { label: "Transpose [0,2,3,1]", dtype: D, inputs: [{ name: "x", shape: [2, 3, 4, 2] }], build: (g, [x]) => g.transpose(x!, [0, 2, 3, 1]) },
    { label: "Reshape [0,0,2,2]", dtype: D, inputs: [{ name: "x", shape: [2, 3, 4] }], build: (g, [x]) => g.reshape(x!, [0, 0, 2, 2]) },
    { label: "Gather axis 0, repeated ids", dtype: D, inputs: [{ name: "table", shape: [5, 3] }, { name: "ids", shape: [2, 3], ints: [1, 4, 1, 0, 1, 4] }], build: (g, [t, i]) => g.gather(t!, i!, 0) },
    { label: "Gather axis 1, scalar id", dtype: D, inputs: [{ name: "x", shape: [2, 4, 3] }], build: (g, [x]) => g.gather(x!, g.init(g.fresh("last"), BigInt64Array.of(3n), []), 1) },
    {
      label: "LayerNormalization", dtype: D,
      inputs: [{ name: "x", shape: [2, 3, 6] }, { name: "gamma", shape: [6] }, { name: "beta", shape: [6] }],
      build: (g, [x, w, b]) => g.layerNorm(x!, w!, b!, 1e-6),
    },
    {
      label: "Conv k=s=4, 10 px (2 dropped)", dtype: F,
      inputs: [{ name: "x", shape: [2, 3, 10, 10] }, { name: "w", shape: [4, 3, 4, 4] }, { name: "b", shape: [4] }],
      build: (g, [x, w, b]) => g.op("Conv", [x!, w!, b!], { kernel_shape: { ints: [4, 4] }, strides: { ints: [4, 4] } }),
    },
    { label: "ReduceSum axis 1 keepdims", dtype: D, inputs: [{ name: "x", shape: [2, 3, 4] }], build: (g, [x]) => g.op("ReduceSum", [x!, i64(g, [1])], { keepdims: { int: 1 } }) },
    { label: "ReduceSum all", dtype: D, inputs: [{ name: "x", shape: [2, 3, 4] }], build: (g, [x]) => g.op("ReduceSum", [x!], { keepdims: { int: 0 } }) },
    { label: "ReduceMean axis −1", dtype: D, inputs: [{ name: "x", shape: [2, 3, 4] }], build: (g, [x]) => g.op("ReduceMean", [x!], { axes: { ints: [-1] }, keepdims: { int: 1 } }) },
    { label: "Expand (1,3)→(2,3)", dtype: D, inputs: [{ name: "x", shape: [1, 3] }], build: (g, [x]) => g.op("Expand", [x!, i64(g, [2, 3])]) },
    { label: "Slice rows 1:3", dtype: D, inputs: [{ name: "x", shape: [4, 6] }], build: (g, [x]) => g.op("Slice", [x!, i64(g, [1]), i64(g, [3]), i64(g, [0])]) },
    { label: "Concat axis 1", dtype: D, inputs: [{ name: "a", shape: [2, 3] }, { name: "b", shape: [2, 2] }], build: (g, [a, b]) => g.op("Concat", [a!, b!], { axis: { int: 1 } }) },
    { label: "Unsqueeze/Squeeze", dtype: D, inputs: [{ name: "x", shape: [2, 3] }], build: (g, [x]) => g.op("Squeeze", [g.op("Unsqueeze", [x!, i64(g, [1])]), i64(g, [1])]) },
    {
      // the NaFlex in-graph position resize (src/models/position-resize.ts): a 4×4 table of width 3
      // to grids 3×5 (down/up), 1×6 (one row) and 5×5 (up), padded to 25 rows with cell (0, 0)
      label: "NaFlex position resize (in-graph, 4×4 → 3×5, 1×6, 5×5)", dtype: F,
      inputs: [{ name: "table", shape: [16, 3] }, { name: "spatial", shape: [3, 2], ints: [3, 5, 1, 6, 5, 5] }],
      build: (g, [t, sp]) => positionsInGraph(g, t!, { num_patches: 16 } as VisionConfig, sp!, g.init(g.fresh("rows"), BigInt64Array.of(25n), [])),
    },
    {
      label: "tanh-GELU (composite)", dtype: D, inputs: [{ name: "x", shape: [3, 4] }],
      build: (g, [x]) => {
        const u3 = g.mul(g.mul(x!, x!), x!);
        const inner = g.mul(g.add(x!, g.mul(u3, f(g, 0.044715, D))), f(g, Math.sqrt(2 / Math.PI), D));
        return g.mul(g.mul(x!, f(g, 0.5, D)), g.add(g.tanh(inner), f(g, 1, D)));
      },
    },
  ];
}
