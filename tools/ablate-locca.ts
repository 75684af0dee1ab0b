/**
 * The LocCa ablation (issue 11; SigLIP 2 paper §2.2, Table 5 style): arms A (sigmoid) and B
 * (sigmoid + LocCa) of the recipe ablation, tools/ablate-recipe.ts, with the frozen-encoder decoder
 * probe for both (`--arms A,B --probe-all`). Same model, data, seeds, held-out sets and metrics;
 * see that file.
 *
 *   npx tsx tools/ablate-locca.ts [--seeds 1,2,3] [--steps 700] [--probe-steps 500] [--threads 2] [--jobs 1]
 *
 * With the defaults it takes about 16 minutes on a quiet 2-core machine (one seed: 700 steps at about
 * 0.1 s (sigmoid) and 0.22 s (sigmoid + LocCa), two probes of 500 steps at 0.08 s, evaluation 30 s).
 * Any other flag of ablate-recipe.ts is passed on.
 */
process.argv.splice(2, 0, "--arms", "A,B", "--probe-all", "--title", "LocCa ablation", "--script", "tools/ablate-locca.ts");
await import("./ablate-recipe.js");
