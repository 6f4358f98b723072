// check_hf_jinja.mjs: a second reference for the chat-template corpus: renders
// every (template, conversation) of tests/data/chat-templates/jinja-refs.json
// with Hugging Face's own JavaScript Jinja (npm @huggingface/jinja, used by
// transformers.js) and counts where it agrees with python3-jinja2 (the
// references tests/test-jinja.c holds our engine to). Offline, not in CI:
//   npm install @huggingface/jinja   (in a scratch folder), then
//   NODE_PATH=that/node_modules node tests/ref/check_hf_jinja.mjs
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(path.join(process.env.NODE_PATH ?? '.', 'x.js'));
const { Template } = require('@huggingface/jinja');
const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'data', 'chat-templates');
const corpus = JSON.parse(fs.readFileSync(path.join(dir, 'corpus.json'), 'utf8'));
const convs = JSON.parse(fs.readFileSync(path.join(dir, 'conversations.json'), 'utf8'));
const refs = JSON.parse(fs.readFileSync(path.join(dir, 'jinja-refs.json'), 'utf8'));
// strftime_now reads the clock: fix it at the references' time
const RealDate = Date;
globalThis.Date = class extends RealDate { constructor(...a) { super(...(a.length ? a : [refs.now * 1000])); } static now() { return refs.now * 1000; } };
let same = 0, bothErr = 0, differ = 0, hfOnlyErr = 0, pyOnlyErr = 0;
const perTemplate = {};
for (const c of refs.cases) {
  const t = corpus.find(x => x.name === c.template);
  if (!t) continue;   // (the GGUF template is not in corpus.json)
  const src = fs.readFileSync(path.join(dir, 'corpus', t.file), 'utf8');
  const conv = convs[c.conversation];
  let out = null, err = null;
  try {
    out = new Template(src).render({ messages: conv.messages, tools: conv.tools ?? null, documents: conv.documents ?? null,
      add_generation_prompt: conv.add_generation_prompt, bos_token: t.bos_token, eos_token: t.eos_token });
  } catch (e) { err = String(e); if (process.env.DEBUG && !("error" in c)) console.log(c.template, err); }
  const k = perTemplate[c.template] ??= { same: 0, total: 0 };
  k.total++;
  if ('output' in c && out !== null) { if (out === c.output) { same++; k.same++; } else differ++; }
  else if ('error' in c && err !== null) { bothErr++; k.same++; }
  else if (err !== null) hfOnlyErr++;
  else pyOnlyErr++;
}
const n = refs.cases.filter(c => corpus.some(x => x.name === c.template)).length;
console.log(`@huggingface/jinja vs python3-jinja2 on ${n} renders: ${same} identical, ${bothErr} raise in both, ` +
            `${differ} differ, ${hfOnlyErr} raise only in @huggingface/jinja, ${pyOnlyErr} raise only in jinja2`);
for (const [name, k] of Object.entries(perTemplate)) if (k.same < k.total) console.log(`  ${name}: ${k.same}/${k.total}`);
