/**
 * The LocCa loss (training-recipe §2; oracle: tools/reference/locca_goldens.py `locca_loss`):
 *
 *   CE[s, l]   = logsumexp(logits[s, l, :]) − logits[s, l, target[s, l]]
 *   per_seq[s] = Σ_l w[s, l]·CE[s, l] / Σ_l w[s, l]     (w = 0 on the prefix and on padding)
 *   L          = mean_s per_seq[s]
 *
 * A row whose weights are all zero is an empty slot (a static graph has S rows; an example
 * without regions fills two of its three with nothing): it is left out of the mean — L is the
 * mean over the rows with Σw > 0 (the reference's definition when every row has weight).
 *
 * {@link loccaLoss} takes the full (S, L, V) logits and is differentiated by autodiff.
 * {@link chunkedLoccaLoss} never builds them: from the decoder's final hidden states h and the
 * lm_head (W, b) it walks the vocabulary in chunks of C rows — forward with a running
 * logsumexp, then, chunk by chunk again, the analytic gradient dlogits = c·(softmax − onehot)
 * (c = w / Σw / S) turned at once into its contributions to ∂L/∂h, ∂L/∂W and ∂L/∂b. Those are
 * fed to `backward` as seeds (the custom-gradient boundary of src/graph/autodiff.ts): nothing
 * larger than (S·L, C) is ever built.
 */
import type { Graph } from "../graph/graph.js";

/** What both versions return. */
export interface LoccaLoss {
  /** Scalar loss. */
  loss: string;
  /** (S) per-sequence losses. */
  perSequence: string;
}

const sumAxis = (g: Graph, v: string, axis: number, keep: boolean): string =>
  g.op("ReduceSum", [v, g.constI64([axis])], { keepdims: { int: keep ? 1 : 0 } });

/** The int64 row (1, …, n) of ids a0 … a0+n−1, for one-hot comparisons. */
function idRange(g: Graph, a0: number, n: number, rank: number): string {
  const ids = BigInt64Array.from({ length: n }, (_, i) => BigInt(a0 + i));
  return g.init(g.fresh("vocab_ids"), ids, [...new Array<number>(rank - 1).fill(1), n]);
}

/** float32 one-hot of `targets` (…) against ids a0 … a0+n−1 → (…, n). */
function oneHot(g: Graph, targets: string, a0: number, n: number, rank: number): string {
  const t = g.op("Unsqueeze", [targets, g.constI64([-1])]);
  return g.op("Cast", [g.op("Equal", [t, idRange(g, a0, n, rank + 1)])], { to: { int: 1 } });
}

/** Σ_l w (S, keep → (S, 1)) floored at a tiny value (an empty row: 0 / tiny = 0), and the number of non-empty rows (≥ 1). */
function rowWeights(g: Graph, weights: string, keep: boolean): { sum: string; rows: string } {
  const sum = sumAxis(g, weights, 1, keep);
  const present = g.op("Cast", [g.op("Greater", [sum, g.constF(0)])], { to: { int: 1 } });
  const rows = g.op("Max", [g.op("ReduceSum", [present], { keepdims: { int: 0 } }), g.constF(1)]);
  return { sum: g.op("Max", [sum, g.constF(1e-12)]), rows };
}

/** per_seq and the mean over non-empty rows from per-position CE (S, L) and weights (S, L). */
function reduceSequences(g: Graph, ce: string, weights: string): LoccaLoss {
  const w = rowWeights(g, weights, false);
  const perSequence = g.div(sumAxis(g, g.mul(ce, weights), 1, false), w.sum); // (S)
  const loss = g.div(g.op("ReduceSum", [perSequence], { keepdims: { int: 0 } }), w.rows);
  return { loss, perSequence };
}

/**
 * The loss from full logits (S, L, V), targets (S, L) int64 and weights (S, L) float32:
 * LogSoftmax and a one-hot pick, differentiated by autodiff.
 */
export function loccaLoss(g: Graph, logits: string, targets: string, weights: string, d: { vocab: number }): LoccaLoss {
  const logp = g.op("LogSoftmax", [logits], { axis: { int: -1 } }); // (S, L, V)
  const ce = g.op("Neg", [sumAxis(g, g.mul(oneHot(g, targets, 0, d.vocab, 2), logp), -1, false)]); // (S, L)
  return reduceSequences(g, ce, weights);
}

export interface ChunkedLoccaLoss extends LoccaLoss {
  /** ∂L/∂h (S, L, D), ∂L/∂W (V, D), ∂L/∂b (V): seeds for `backward`. */
  dHidden: string;
  dWeight: string;
  dBias: string;
}

/** Sizes of a chunked LocCa loss. */
export interface LoccaDims {
  sequences: number;
  length: number;
  hidden: number;
  vocab: number;
}

/**
 * The same loss and its gradients from the final hidden states `hidden` (S, L, D) and the
 * lm_head `weight` (V, D), `bias` (V), `chunk` vocabulary rows at a time (the last chunk may
 * be smaller). The gradient pass recomputes each chunk's logits transposed (C, S·L), which
 * is also the layout ∂L/∂W wants.
 */
export function chunkedLoccaLoss(
  g: Graph, hidden: string, weight: string, bias: string, targets: string, weights: string, d: LoccaDims, chunk: number,
): ChunkedLoccaLoss {
  if (!Number.isInteger(chunk) || chunk < 1) throw new Error(`internal: LocCa vocabulary chunk ${chunk}`);
  const { sequences: S, length: L, hidden: D, vocab: V } = d;
  const N = S * L;
  const h = g.reshape(hidden, [N, D]); // (N, D)
  const t = g.reshape(targets, [N]); // (N)
  const bounds: Array<[number, number]> = [];
  for (let a = 0; a < V; a += chunk) bounds.push([a, Math.min(V, a + chunk)]);
  const rows = (x: string, [a, b]: [number, number]): string => g.op("Slice", [x, g.constI64([a]), g.constI64([b]), g.constI64([0])]);
  const Wc = bounds.map((bd) => rows(weight, bd)); // (C, D)
  const bc = bounds.map((bd) => rows(bias, bd)); // (C)

  // forward: running logsumexp over the chunks, lse = max(a, b) + softplus(−|a − b|)
  let lse = "";
  bounds.forEach((_, i) => {
    const logits = g.add(g.matmul(h, g.transpose(Wc[i]!, [1, 0])), bc[i]!); // (N, C)
    const m = g.op("ReduceMax", [logits], { axes: { ints: [1] }, keepdims: { int: 1 } }); // (N, 1)
    const part = g.add(m, g.op("Log", [sumAxis(g, g.op("Exp", [g.sub(logits, m)]), 1, true)])); // (N, 1)
    lse = i === 0 ? part : g.add(g.op("Max", [lse, part]), g.op("Softplus", [g.op("Neg", [g.op("Abs", [g.sub(lse, part)])])]));
  });
  // the target's logit: h · W[t] + b[t]
  const target = g.add(sumAxis(g, g.mul(h, g.gather(weight, t, 0)), 1, true), g.reshape(g.gather(bias, t, 0), [N, 1])); // (N, 1)
  const ce = g.reshape(g.sub(lse, target), [S, L]);
  const out = reduceSequences(g, ce, weights);

  // backward, chunk by chunk: dlogitsᵀ = c·(softmax − onehot)ᵀ with c = w / Σ_l w / rows
  const rw = rowWeights(g, weights, true);
  const coef = g.reshape(g.div(g.div(weights, rw.sum), rw.rows), [1, N]); // (1, N)
  const lseRow = g.reshape(lse, [1, N]);
  const dH: string[] = [];
  const dW: string[] = [];
  const dB: string[] = [];
  bounds.forEach(([a, b], i) => {
    const logitsT = g.add(g.matmul(Wc[i]!, g.transpose(h, [1, 0])), g.reshape(bc[i]!, [b - a, 1])); // (C, N)
    const soft = g.op("Exp", [g.sub(logitsT, lseRow)]);
    const hot = g.transpose(oneHot(g, t, a, b - a, 1), [1, 0]); // (C, N)
    const dlT = g.mul(g.sub(soft, hot), coef); // (C, N)
    dW.push(g.matmul(dlT, h)); // (C, D)
    dB.push(sumAxis(g, dlT, 1, false)); // (C)
    dH.push(g.matmul(g.transpose(dlT, [1, 0]), Wc[i]!)); // (N, D)
  });
  const cat = (parts: string[]): string => (parts.length === 1 ? parts[0]! : g.op("Concat", parts, { axis: { int: 0 } }));
  return {
    ...out,
    dHidden: g.reshape(dH.reduce((acc, v) => g.add(acc, v)), [S, L, D]),
    dWeight: cat(dW),
    dBias: cat(dB),
  };
}
