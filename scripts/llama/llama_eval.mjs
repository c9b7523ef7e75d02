// Runs llama.cpp on a GGUF file for lowbit's export check: the build of llama.cpp that
// node-llama-cpp 3.21.1 ships for Linux x64 (CPU only, never built from source here).
//
//   node scripts/llama/llama_eval.mjs REQUEST.json MODEL.gguf [MODEL.gguf ...] > RESULTS.json
//
// REQUEST (JSON):
//   texts     strings to tokenize with the model's own tokenizer (no BOS, no special tokens)
//   windows   token id sequences to evaluate, each from an empty context (positions 0..n-1)
//   full      true: every position's whole next-token distribution (small vocabularies)
//   context   context size (default and least: the longest window + 1)
//   threads   default 2
// RESULTS (JSON): one result per model, in order, each
//   llama_cpp  {release, repo}: the llama.cpp build that ran
//   arch, type, vocabulary (llama.cpp's description of the model and of its tokenizer)
//   n_vocab    the size of the distributions (when windows were evaluated)
//   tokens     one id array per text
//   windows    per window: argmax (greedy next token at each position), logp_next (log p of
//              the window's next id, for positions 0..n-2), logp (with `full`: n × n_vocab,
//              null where llama.cpp's probability underflowed to 0)
//
// Log-probabilities come from node-llama-cpp's greedy sampler, which returns the softmax of
// llama.cpp's raw logits over the whole vocabulary (no temperature, top-k or penalty is
// applied when sampling greedily). The KV cache is F32 so that attention is not rounded to
// f16 (llama.cpp's default) and the f32 export can be compared closely.
import fs from "node:fs";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const [requestPath, ...modelPaths] = process.argv.slice(2);
if (!requestPath || modelPaths.length === 0) {
    console.error("usage: node llama_eval.mjs REQUEST.json MODEL.gguf [MODEL.gguf ...]");
    process.exit(2);
}
const req = JSON.parse(fs.readFileSync(requestPath, "utf8"));
const windows = req.windows ?? [];
const longest = windows.reduce((m, w) => Math.max(m, w.length), 1);

const llama = await getLlama({ build: "never", gpu: false, logLevel: LlamaLogLevel.error, progressLogs: false });
const results = [];
for (const modelPath of modelPaths) results.push(await run(modelPath));
await llama.dispose();
process.stdout.write(JSON.stringify(results));

async function run(modelPath) {
    const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
    const result = {
        llama_cpp: llama.llamaCppRelease,
        arch: model.fileInfo.metadata.general.architecture,
        type: model.typeDescription,
        vocabulary: model.vocabularyType,
        n_vocab: null,
        tokens: (req.texts ?? []).map((t) => Array.from(model.tokenize(t, false))),
        windows: [],
    };

    if (windows.length > 0) {
        const context = await model.createContext({
            // one position more than the longest window: with the context exactly full,
            // the distribution after the last token came out different
            contextSize: Math.max(req.context ?? 0, longest + 1),
            batchSize: Math.max(req.context ?? 0, longest + 1),
            threads: req.threads ?? 2,
            sequences: 1,
            flashAttention: false,
            experimentalKvCacheKeyType: "F32",
            experimentalKvCacheValueType: "F32",
        });
        const seq = context.getSequence();
        for (const w of windows) {
            await seq.clearHistory();
            const input = w.map((id) => [id, { generateNext: { probabilities: true } }]);
            const out = await seq.controlledEvaluate(input);
            const res = { argmax: [], logp_next: [] };
            if (req.full) res.logp = [];
            for (let i = 0; i < w.length; i++) {
                const probs = out[i]?.next?.probabilities;
                if (!probs) throw new Error(`no distribution at position ${i}`);
                res.argmax.push(probs.keys().next().value); // sorted, most probable first
                if (i + 1 < w.length) {
                    const p = probs.get(w[i + 1]) ?? 0;
                    res.logp_next.push(p > 0 ? Math.log(p) : null);
                }
                result.n_vocab = probs.size;
                if (req.full) {
                    const row = new Array(probs.size).fill(null);
                    for (const [id, p] of probs) if (p > 0) row[id] = Math.log(p);
                    res.logp.push(row);
                }
            }
            result.windows.push(res);
        }
        await context.dispose();
    }
    await model.dispose();
    return result;
}
