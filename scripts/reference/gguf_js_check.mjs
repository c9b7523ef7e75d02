#!/usr/bin/env node
// Reads a GGUF file with the npm package @huggingface/gguf (an independent parser)
// and compares what it finds with the canonical JSON that gguf_ref.py printed for the
// same file: every key, type and value, every tensor's name, dims, type and offset.
//   node gguf_js_check.mjs FILE EXPECTED.json      exit 0 when they agree
// The package is installed by scripts/setup.sh into scripts/reference/node_modules.
import { readFileSync } from "node:fs";
import { gguf } from "@huggingface/gguf";

const [file, expectedPath] = process.argv.slice(2);
if (!file || !expectedPath) {
  console.error("usage: node gguf_js_check.mjs FILE EXPECTED.json");
  process.exit(2);
}
const expected = JSON.parse(readFileSync(expectedPath, "utf8"));
const TYPES = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"];

const f32bits = (x) => String(new Uint32Array(new Float32Array([x]).buffer)[0]);
const f64bits = (x) => String(new BigUint64Array(new Float64Array([x]).buffer)[0]);
const hex = (s) => Buffer.from(s, "utf8").toString("hex");

// One scalar in canonical form, given its type name.
function scalar(t, v) {
  if (t === "str") return hex(v);
  if (t === "bool") return v;
  if (t === "f32") return f32bits(v);
  if (t === "f64") return f64bits(v);
  return String(v);
}

// The package keeps the element type of a top-level array only; inside an array of
// arrays it returns plain JavaScript values, compared here against the expected
// element type.
function compareNested(exp, got, where) {
  if (!Array.isArray(got) || got.length !== exp.value.length) return `${where}: length differs`;
  for (let i = 0; i < got.length; i++) {
    const w = `${where}[${i}]`;
    if (exp.elem === "arr") {
      const err = compareNested(exp.value[i], got[i], w);
      if (err) return err;
    } else if (scalar(exp.elem, got[i]) !== exp.value[i]) {
      return `${w}: ${JSON.stringify(scalar(exp.elem, got[i]))} != ${JSON.stringify(exp.value[i])}`;
    }
  }
  return null;
}

const errors = [];
const out = await gguf(file, { allowLocalFile: true, typedMetadata: true });
const tm = out.typedMetadata;
if (Number(out.metadata.version) !== expected.version) errors.push(`version ${out.metadata.version}`);
// typedMetadata also holds the header fields (version, tensor_count, kv_count)
const keys = Object.keys(tm).filter((k) => !["version", "tensor_count", "kv_count"].includes(k));
if (keys.length !== expected.kv.length) errors.push(`${keys.length} keys, expected ${expected.kv.length}`);
if (Number(tm.kv_count.value) !== expected.kv.length) errors.push(`kv_count ${tm.kv_count.value}`);
for (const e of expected.kv) {
  const g = tm[e.key];
  if (!g) {
    errors.push(`key ${e.key} missing`);
    continue;
  }
  const type = TYPES[g.type];
  if (type !== e.type) {
    errors.push(`key ${e.key}: type ${type}, expected ${e.type}`);
    continue;
  }
  if (type !== "arr") {
    const v = scalar(type, g.value);
    if (v !== e.value) errors.push(`key ${e.key}: ${JSON.stringify(v)} != ${JSON.stringify(e.value)}`);
    continue;
  }
  const elem = TYPES[g.subType];
  if (elem !== e.elem) errors.push(`key ${e.key}: array of ${elem}, expected ${e.elem}`);
  else if (elem === "arr") {
    const err = compareNested({ elem: "arr", value: e.value }, g.value, `key ${e.key}`);
    if (err) errors.push(err);
  } else {
    const v = g.value.map((x) => scalar(elem, x));
    if (JSON.stringify(v) !== JSON.stringify(e.value)) errors.push(`key ${e.key}: array values differ`);
  }
}
if (out.tensorInfos.length !== expected.tensors.length) errors.push(`${out.tensorInfos.length} tensors`);
out.tensorInfos.forEach((t, i) => {
  const e = expected.tensors[i];
  if (!e) return;
  const ne = t.shape.map(String);
  if (t.name !== e.name || t.dtype !== e.type || String(t.offset) !== e.offset || JSON.stringify(ne) !== JSON.stringify(e.ne))
    errors.push(`tensor ${i}: ${t.name} type ${t.dtype} ne ${ne} offset ${t.offset}; expected ${JSON.stringify(e)}`.slice(0, 300));
});
if (errors.length) {
  console.error(`@huggingface/gguf disagrees on ${file}:\n  ` + errors.join("\n  "));
  process.exit(1);
}
console.log(`@huggingface/gguf agrees: ${expected.kv.length} keys, ${expected.tensors.length} tensors`);
