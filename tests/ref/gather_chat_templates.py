#!/usr/bin/env python3
"""Gathers the chat-template corpus (run once; its output is committed):
    python3 tests/ref/gather_chat_templates.py PATH_TO_A_LLAMA_CPP_CHECKOUT
copies real templates into tests/data/chat-templates/corpus and writes corpus.json.
"""
import codecs, json, os, re, sys, shutil
LL = sys.argv[1]   # a ggml-org/llama.cpp checkout
OUT = 'tests/data/chat-templates/corpus'
meta = []
def add(name, text, source, bos, eos, extra=None):
    fn = name + '.jinja'
    with open(os.path.join(OUT, fn), 'w', encoding='utf-8', newline='') as f:
        f.write(text)
    m = {"name": name, "file": fn, "source": source, "bos_token": bos, "eos_token": eos}
    if extra: m.update(extra)
    meta.append(m)

files = {  # file in llama.cpp models/templates -> (hf repo, bos, eos)
 'meta-llama-Llama-3.1-8B-Instruct': ('meta-llama/Llama-3.1-8B-Instruct', '<|begin_of_text|>', '<|eot_id|>'),
 'meta-llama-Llama-3.2-3B-Instruct': ('meta-llama/Llama-3.2-3B-Instruct', '<|begin_of_text|>', '<|eot_id|>'),
 'meta-llama-Llama-3.3-70B-Instruct': ('meta-llama/Llama-3.3-70B-Instruct', '<|begin_of_text|>', '<|eot_id|>'),
 'Qwen-Qwen2.5-7B-Instruct': ('Qwen/Qwen2.5-7B-Instruct', '', '<|im_end|>'),
 'Qwen-QwQ-32B': ('Qwen/QwQ-32B', '', '<|im_end|>'),
 'Qwen-Qwen3-0.6B': ('Qwen/Qwen3-0.6B', '', '<|im_end|>'),
 'NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use': ('NousResearch/Hermes-2-Pro-Llama-3-8B (tool_use)', '<|begin_of_text|>', '<|im_end|>'),
 'NousResearch-Hermes-3-Llama-3.1-8B-tool_use': ('NousResearch/Hermes-3-Llama-3.1-8B (tool_use)', '<|begin_of_text|>', '<|im_end|>'),
 'mistralai-Mistral-Nemo-Instruct-2407': ('mistralai/Mistral-Nemo-Instruct-2407', '<s>', '</s>'),
 'Mistral-Small-3.2-24B-Instruct-2506': ('mistralai/Mistral-Small-3.2-24B-Instruct-2506', '<s>', '</s>'),
 'unsloth-mistral-Devstral-Small-2507': ('unsloth/Devstral-Small-2507', '<s>', '</s>'),
 'microsoft-Phi-3.5-mini-instruct': ('microsoft/Phi-3.5-mini-instruct', '<s>', '<|endoftext|>'),
 'google-gemma-2-2b-it': ('google/gemma-2-2b-it', '<bos>', '<eos>'),
 'CohereForAI-c4ai-command-r-plus-tool_use': ('CohereForAI/c4ai-command-r-plus (tool_use)', '<BOS_TOKEN>', '<|END_OF_TURN_TOKEN|>'),
 'CohereForAI-c4ai-command-r7b-12-2024-tool_use': ('CohereForAI/c4ai-command-r7b-12-2024 (tool_use)', '<BOS_TOKEN>', '<|END_OF_TURN_TOKEN|>'),
 'deepseek-ai-DeepSeek-R1-Distill-Llama-8B': ('deepseek-ai/DeepSeek-R1-Distill-Llama-8B', '<｜begin▁of▁sentence｜>', '<｜end▁of▁sentence｜>'),
 'deepseek-ai-DeepSeek-R1-Distill-Qwen-32B': ('deepseek-ai/DeepSeek-R1-Distill-Qwen-32B', '<｜begin▁of▁sentence｜>', '<｜end▁of▁sentence｜>'),
 'deepseek-ai-DeepSeek-V3.1': ('deepseek-ai/DeepSeek-V3.1', '<｜begin▁of▁sentence｜>', '<｜end▁of▁sentence｜>'),
 'fireworks-ai-llama-3-firefunction-v2': ('fireworks-ai/llama-3-firefunction-v2', '<|begin_of_text|>', '<|eot_id|>'),
 'meetkai-functionary-medium-v3.1': ('meetkai/functionary-medium-v3.1', '<|begin_of_text|>', '<|eot_id|>'),
 'meetkai-functionary-medium-v3.2': ('meetkai/functionary-medium-v3.2', '<|begin_of_text|>', '<|eot_id|>'),
 'HuggingFaceTB-SmolLM3-3B': ('HuggingFaceTB/SmolLM3-3B', '', '<|im_end|>'),
 'ibm-granite-granite-3.3-2B-Instruct': ('ibm-granite/granite-3.3-2b-instruct', '<|end_of_text|>', '<|end_of_text|>'),
 'openai-gpt-oss-120b': ('openai/gpt-oss-120b', '<|startoftext|>', '<|return|>'),
 'moonshotai-Kimi-K2': ('moonshotai/Kimi-K2-Instruct', '[BOS]', '[EOS]'),
 'GLM-4.6': ('zai-org/GLM-4.6', '', '<|endoftext|>'),
 'MiniMax-M2': ('MiniMaxAI/MiniMax-M2', ']~!b[', '[e~['),
 'Apertus-8B-Instruct': ('swiss-ai/Apertus-8B-Instruct-2509', '<s>', '</s>'),
 'NVIDIA-Nemotron-Nano-v2': ('nvidia/NVIDIA-Nemotron-Nano-9B-v2', '<SPECIAL_10>', '<SPECIAL_12>'),
 'Bielik-11B-v3.0-Instruct': ('speakleash/Bielik-11B-v3.0-Instruct', '<s>', '</s>'),
 'ibm-granite-granite-4.0': ('ibm-granite/granite-4.0-h-small', '<|end_of_text|>', '<|end_of_text|>'),
}
for f, (src, bos, eos) in files.items():
    p = os.path.join(LL, 'models/templates', f + '.jinja')
    if not os.path.exists(p): print('missing', f); continue
    add(f, open(p, encoding='utf-8', newline='').read(), 'huggingface.co/' + src + ' tokenizer_config.json chat_template, as copied to ggml-org/llama.cpp models/templates/' + f + '.jinja', bos, eos)

# the families tests/ref/make_chat_refs.py has always rendered
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_chat_refs
for fam, model, bos, eos, tpl in make_chat_refs.TEMPLATES:
    name = re.sub(r'[^A-Za-z0-9.]+', '-', model.split(' ')[0]).strip('-') if '/' in model else 'unsloth-alpaca'
    if fam == 'alpaca': name = 'unsloth-alpaca-multiturn'
    add(name, tpl, ('huggingface.co/' + model + ' tokenizer_config.json chat_template') if fam != 'alpaca' else 'unslothai/unsloth unsloth/chat_templates.py, alpaca_template (multi-turn)', bos, eos)

# inline templates of llama.cpp tests/test-chat-template.cpp (name, template, bos, eos)
src = open(os.path.join(LL, 'tests/test-chat-template.cpp'), encoding='utf-8').read()
want = {
 'mlabonne/AlphaMonarch-7B': 'mlabonne-AlphaMonarch-7B',
 'OrionStarAI/Orion-14B-Chat': 'OrionStarAI-Orion-14B-Chat',
 'openchat/openchat-3.5-0106': 'openchat-openchat-3.5-0106',
 'deepseek-ai/deepseek-coder-33b-instruct': 'deepseek-ai-deepseek-coder-33b-instruct',
 'CohereForAI/c4ai-command-r-plus': 'CohereForAI-c4ai-command-r-plus',
 'bofenghuang/vigogne-2-70b-chat': 'bofenghuang-vigogne-2-70b-chat',
 'TheBloke/FusionNet_34Bx2_MoE-AWQ': 'TheBloke-FusionNet_34Bx2_MoE-AWQ',
 "mistralai/Mistral-7B-Instruct-v0.2 (mistralai 'v1' template with a system prompt)": 'mistralai-Mistral-7B-Instruct-v0.2-v1-system',
 "mistralai/Mistral-Large-Instruct-2411 (mistralai 'v7' template)": 'mistralai-Mistral-Large-Instruct-2411',
 'Infinigence/Megrez-3B-Instruct': 'Infinigence-Megrez-3B-Instruct',
 'phi-4': 'microsoft-phi-4',
 'ibm-granite/granite-3.0-8b-instruct': 'ibm-granite-granite-3.0-8b-instruct',
}
for m in re.finditer(r'/\* \.name= \*/ "((?:[^"\\]|\\.)*)",\s*/\* \.template_str= \*/ (U8C\()?"((?:[^"\\]|\\.)*)"\)?,\s*/\* \.expected_output= \*/ "((?:[^"\\]|\\.)*)",\s*/\* \.expected_output_jinja= \*/ "((?:[^"\\]|\\.)*)",\s*(?:/\* \.bos_token= \*/ "((?:[^"\\]|\\.)*)",\s*/\* \.eos_token= \*/ "((?:[^"\\]|\\.)*)")?', src):
    name = codecs.escape_decode(m.group(1).encode())[0].decode()
    if name not in want: continue
    dec = lambda s: codecs.escape_decode((s or '').encode('utf-8'))[0].decode('utf-8')
    add(want[name], dec(m.group(3)), 'huggingface.co/' + ('microsoft/phi-4' if name == 'phi-4' else name.split(' (')[0]) + ' tokenizer_config.json chat_template, as quoted in ggml-org/llama.cpp tests/test-chat-template.cpp', dec(m.group(6)) or '<s>', dec(m.group(7)) or '</s>')
    del want[name]
print('not found:', list(want))
json.dump(meta, open(os.path.join(OUT, '..', 'corpus.json'), 'w'), indent=1, ensure_ascii=False)
print(len(meta))
