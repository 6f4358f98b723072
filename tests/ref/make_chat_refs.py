#!/usr/bin/env python3
"""Reference renders for tests/test-chat-template.c.

Renders the real chat templates (tokenizer_config.json "chat_template" of the
models named below, copied verbatim) with jinja2 the way Hugging Face's
apply_chat_template does (ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, raise_exception), over a few conversations each, and writes
tests/data/chat-templates/refs.json. A conversation the template refuses
(raise_exception) is recorded with "error": true.

Offline, not in CI: needs python3-jinja2 (Debian). Run from the repo root:
    /usr/bin/python3 tests/ref/make_chat_refs.py   (Debian python3 with python3-jinja2)
"""
import json
import os

import jinja2

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAGIC = "qtune-chat-refs"   # checked by tests/test-chat-template.c, with VERSION
VERSION = 1

# (family, source model, bos_token, eos_token, template as in tokenizer_config.json after JSON decoding)
TEMPLATES = [
    ("llama2", "meta-llama/Llama-2-7b-chat-hf", "<s>", "</s>",
     r"{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"),
    ("mistral", "mistralai/Mixtral-8x7B-Instruct-v0.1", "<s>", "</s>",
     r"{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"),
    ("chatml", "Qwen/Qwen2-7B-Instruct", "", "<|im_end|>",
     r"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"),
    ("chatml", "HuggingFaceTB/SmolLM2-135M-Instruct", "<|im_start|>", "<|im_end|>",
     r"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"),
    ("chatml", "Felladrin/Llama-68M-Chat-v1", "<|im_start|>", "<|im_end|>",
     r"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"),
    ("llama3", "meta-llama/Meta-Llama-3-8B-Instruct", "<|begin_of_text|>", "<|eot_id|>",
     r"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"),
    ("zephyr", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "<s>", "</s>",
     "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"),
    ("phi3", "microsoft/Phi-3-mini-4k-instruct", "<s>", "<|endoftext|>",
     r"{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"),
    ("gemma", "google/gemma-7b-it", "<bos>", "<eos>",
     r"{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"),
    ("alpaca", "unslothai/unsloth chat_templates.py alpaca (multi-turn)", "<s>", "</s>",
     r"{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n\n' }}{% set loop_messages = messages[1:] %}{% else %}{{ 'Below are some instructions that describe some tasks. Write responses that appropriately complete each request.' + '\n\n' }}{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}{% if message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}{% elif message['role'] == 'assistant' %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"),
    # transformers' GPT2Tokenizer.default_chat_template (class default until v4.43; DialoGPT has no template of its own)
    ("dialogpt", "microsoft/DialoGPT-medium", "<|endoftext|>", "<|endoftext|>",
     r"{% for message in messages %}{{ message.content }}{{ eos_token }}{% endfor %}"),
]

def m(role, content):
    return {"role": role, "content": content}

CONVERSATIONS = [
    ([m("user", "Hello!")], True),
    ([m("system", "You are a terse assistant."), m("user", "What is 2+2?"), m("assistant", "4"),
      m("user", "And 3+3?")], True),
    ([m("user", "  Tell me a story.\n"), m("assistant", " Once upon a time, a robot named Bolt...\n\n"),
      m("user", "More, please")], False),
    ([m("system", "Sys"), m("user", "Hi"), m("assistant", "Hello there")], False),
    ([m("user", "Ünïcödé ✓ 你好\nsecond line"), m("assistant", "ok")], True),
    ([m("user", "one"), m("user", "two")], True),   # not alternating
]


def render(template, bos, eos, messages, gen):
    def raise_exception(msg):
        raise TemplateError(msg)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, bos_token=bos, eos_token=eos,
                                            add_generation_prompt=gen)


def main():
    cases = []
    for family, model, bos, eos, template in TEMPLATES:
        for ci, (msgs, gen) in enumerate(CONVERSATIONS):
            for g in sorted({gen, not gen}) if ci == 1 else [gen]:
                case = {"family": family, "model": model, "bos": bos, "eos": eos, "template": template,
                        "add_generation_prompt": g, "messages": msgs}
                try:
                    case["expected"] = render(template, bos, eos, msgs, g)
                except TemplateError as e:
                    case["error"] = True
                    case["message"] = str(e)
                cases.append(case)
    out = os.path.join("tests", "data", "chat-templates", "refs.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"magic": MAGIC, "version": VERSION, "jinja2": jinja2.__version__, "cases": cases}, f,
                  ensure_ascii=False, indent=1)
        f.write("\n")
    n_err = sum(1 for c in cases if c.get("error"))
    print(f"{out}: {len(cases)} cases ({n_err} refused by their template)")


if __name__ == "__main__":
    main()
