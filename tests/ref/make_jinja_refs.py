#!/usr/bin/env python3
"""Reference renders for tests/test-jinja.c, made with python3-jinja2.

Renders every chat template of tests/data/chat-templates/corpus.json (the
template files in corpus/, their sources in corpus/README.md), plus the
tokenizer.chat_template of ../shared/models/llama.cpp-vocab/ggml-vocab-phi-3.gguf,
on every conversation of conversations.json, in the environment transformers'
apply_chat_template uses (transformers/utils/chat_template_utils.py):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with the
loopcontrols extension and a {% generation %} tag, tojson overridden by
json.dumps(ensure_ascii=False, ...), raise_exception and strftime_now as
globals; variables messages, tools (None when absent), documents (None when
absent), add_generation_prompt, bos_token, eos_token. strftime_now sees a
fixed time (NOW, UTC) so the C side can reproduce it. Also renders the small
engine cases of CASES below. A render that raises is recorded as an error.

Offline, not in CI (transformers is not needed; Debian's python3-jinja2 is):
    TZ=UTC /usr/bin/python3 tests/ref/make_jinja_refs.py [SHARED_MODELS_DIR]
writes tests/data/chat-templates/jinja-refs.json.
"""
import json
import os
import struct
import sys
from datetime import datetime, timezone

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAGIC = "qtune-jinja-refs"   # checked by tests/test-jinja.c with VERSION
VERSION = 1
NOW = 1721995200             # 2024-07-26 12:00:00 UTC
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "chat-templates")


class GenerationTracker(Extension):
    """transformers' AssistantTracker without the index bookkeeping: {% generation %} renders its body."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.fromtimestamp(NOW, tz=timezone.utc).strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, source, variables):
    try:
        return {"output": env.from_string(source).render(**variables)}
    except Exception as e:   # noqa: BLE001 - any failure is an expected error case
        return {"error": f"{type(e).__name__}: {e}"}


def gguf_chat_template(path):
    """tokenizer.chat_template of a GGUF file (a minimal metadata reader)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"GGUF":
        raise ValueError(path + ": not a GGUF file")
    pos = 8
    _n_tensors, n_kv = struct.unpack_from("<QQ", data, pos)
    pos += 16

    def read_str(p):
        (n,) = struct.unpack_from("<Q", data, p)
        return data[p + 8:p + 8 + n].decode("utf-8"), p + 8 + n

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip(t, p):
        if t == 8:
            return read_str(p)[1]
        if t == 9:
            et, n = struct.unpack_from("<IQ", data, p)
            p += 12
            for _ in range(n):
                p = skip(et, p)
            return p
        return p + sizes[t]

    for _ in range(n_kv):
        key, pos = read_str(pos)
        (t,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if key == "tokenizer.chat_template" and t == 8:
            return read_str(pos)[0]
        pos = skip(t, pos)
    return None


# Engine cases: (template, variables). Each is rendered as is.
CASES = [
    ("{% for i in range(3) %}{% if i == 0 %}{% set x = 'a' %}{% endif %}[{{ x }}]{% endfor %}[{{ x }}]", {}),
    ("{% set x = 1 %}{% for i in range(2) %}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}", {}),
    ("{% macro m(a, b='d') %}<{{ a }}|{{ b }}>{% endmacro %}{{ m(1) }}{{ m(2, b=3) }}{{ m('x', 'y') + '<b>' }}", {}),
    ("{{ 1/2 }} {{ 4/2 }} {{ 7//2 }} {{ -7//2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2**10 }} {{ 2**-1 }} {{ 1e20 }} {{ 1e16 }} "
     "{{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ 1.5 * 2 }} {{ 0.1 + 0.2 }} {{ -0.0 }} {{ 3 - 5 }} {{ 2 * 'ab' }}", {}),
    ("{{ [1, 'a', none, true, {'k': 'v\"'}, 1.5] }} {{ ('a',) }} {{ (1, 2) }} {{ {'a': [1, 2]} }} {{ \"it's\" }}", {}),
    ("{{ x }}|{{ x is defined }}|{{ x is undefined }}|{{ (x or 'd') }}|{{ x | default('dd') }}|{{ x|length }}", {}),
    ("{{ 'abc'[1:] }} {{ 'héllo'[1] }} {{ 'héllo'|length }} {{ [1,2,3][::-1] }} {{ 'abcdef'[-2:] }} {{ 'abc'[:-1] }} "
     "{{ [1,2,3,4,5][1:4:2] }} {{ 'héllo'[::-1] }} {{ [1,2][5] is defined }}", {}),
    ("{{ true == 1 }} {{ 1 == 1.0 }} {{ 'a' ~ 1 ~ none ~ true }} {{ none }} {{ true }} {{ [1] == [1] }} {{ {'a': 1} == {'a': 1} }}", {}),
    ("{% set ns = namespace(a=1, s='') %}{% for i in range(3) %}{% set ns.a = ns.a + i %}{% set ns.s = ns.s ~ i %}{% endfor %}"
     "{{ ns.a }} {{ ns.s }}", {}),
    ("{{ {'b': 1, 'a': [1.5, 'x', none, true]}|tojson }}|{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}|"
     "{{ [1, {'x': 'é\\n\"'}]|tojson(indent=2) }}|{{ 'é'|tojson(ensure_ascii=true) }}|{{ []|tojson(indent=4) }}", {}),
    ("{% for m in ['a','b','c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.revindex }}"
     "{{ loop.revindex0 }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('x', 'y') }};{% endfor %}", {}),
    ("{{ 'a' + 1 }}", {}),
    ("{{ x + 'a' }}", {}),
    ("{{ x.y }}", {}),
    ("{{ raise_exception('custom failure') }}", {}),
    ("{{ 'A b  c'.split() }} {{ ' a '.strip() }} {{ 'a,b,,c'.split(',') }} {{ 'a,b,c'.split(',', 1) }} {{ 'a b c'.rsplit(' ', 1) }} "
     "{{ 'abc'.startswith(('x', 'a')) }} {{ 'abc'.endswith('bc') }} {{ 'xxhixx'.strip('x') }} {{ 'Hello World'.lower() }} "
     "{{ 'hello world'.title() }} {{ 'hELLO'.capitalize() }} {{ 'aaa'.replace('a', 'b', 2) }} {{ 'abcb'.find('b') }} "
     "{{ 'abcb'.rfind('b') }} {{ 'abcb'.count('b') }} {{ '-'.join(['a', 'b']) }} {{ 'a\\nb\\r\\nc'.splitlines() }} "
     "{{ '12'.isdigit() }} {{ 'ab'.isalpha() }} {{ '  '.isspace() }} {{ 'ab'.upper() }} {{ '{} and {x}'.format(1, x=2) }}", {}),
    ("{% if x %}a{% elif y %}b{% else %}c{% endif %}{% if 0 %}{% elif [] %}{% elif 'z' %}z{% endif %}", {}),
    ("  {% if true %}\n  x\n  {% endif %}\n  y\n{%- if true %} z {% endif -%}\n w", {}),
    ("a\n{# c #}\nb  {#- c -#}  \n c\n{#+ keep +#}\nd", {}),
    ("{{ [3,1,2]|sort }} {{ ['b','A','a']|sort }} {{ ['b','A','a']|sort(case_sensitive=true) }} {{ [3,1,2]|sort(reverse=true) }} "
     "{{ [{'a':2},{'a':1}]|sort(attribute='a') }} {{ [{'a':2},{'a':1}]|map(attribute='a')|list }} {{ [1,2]|join(',') }} "
     "{{ ['x','y']|map('upper')|join }} {{ [1,2,3,4]|select('odd')|list }} {{ [1,2,3,4]|reject('even')|list }} "
     "{{ [{'r':'u'},{'r':'a'}]|selectattr('r', 'equalto', 'u')|list }} {{ [{'r':'u'},{'r':'a'}]|rejectattr('r', 'eq', 'u')|list }} "
     "{{ ['a','A','b']|unique|list }} {{ [1,2,3]|sum }} {{ [1,5,3]|max }} {{ [4,2,3]|min }} {{ [1,2,3]|first }} {{ [1,2,3]|last }} "
     "{{ [1,2,3]|reverse|list }} {{ {'b':1,'a':2}|dictsort }} {{ {'a':1}|items|list }} {{ 'abc'|list }}", {}),
    ("{{ 'x'|default('d') }} {{ y|default('d') }} {{ ''|default('d', true) }} {{ none|default('d') }} {{ y|d('dd') }}", {}),
    ("{{ 1.0 }} {{ 100.0 }} {{ 1e100 }} {{ 123456789012345678.0 }} {{ 0.1 }} {{ 1/3 }} {{ 2.5e-7 }} {{ 12345.678 }}", {}),
    ("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% for k, v in {'x': 1, 'y': 2}.items() %}{{ k }}={{ v }};{% endfor %}"
     "{% for k, v in [['p', 'q']] %}{{ k }}{{ v }}{% endfor %}", {}),
    ("{{ 'a' in 'abc' }} {{ 1 in [1] }} {{ 'k' in {'k':1} }} {{ 'x' not in 'abc' }} {{ 2 in [1] }} {{ 'q' is in 'aqb' }}", {}),
    ("{{ 10 is divisibleby 3 }} {{ 9 is divisibleby(3) }} {{ 'a' is string }} {{ 1 is number }} {{ 1.5 is float }} {{ 1 is integer }} "
     "{{ none is none }} {{ [] is iterable }} {{ {} is mapping }} {{ true is boolean }} {{ 'ab' is lower }} {{ 'AB' is upper }} "
     "{{ 3 is odd }} {{ 3 is even }} {{ x is not defined }} {{ true is sameas true }} {{ 1 is eq 1 }} {{ 2 is gt 1 }} "
     "{{ [1] is sequence }} {{ range is callable }} {{ 2 is ne 1 }} {{ 1 is lt 2 }} {{ 1 is le 1 }} {{ 1 is ge 2 }}", {}),
    ("{{ 3 > 2 > 1 }} {{ 1 < 2 > 3 }} {{ 'b' > 'a' }} {{ [1, 2] < [1, 3] }} {{ not 1 == 2 }} {{ -2 ** 2 }} {{ -(x|default(3)) }}", {}),
    ("{{ '%s-%d'|format('a', 3) }} {{ '%05.1f' % 3.14159 }} {{ '%s and %s' % ('x', 'y') }} {{ '100%%' % () }}", {}),
    ("{{ messages[0].content }} {{ messages[0]['role'] }} {{ messages|length }} {{ messages[0].missing is defined }} "
     "{{ messages[-1].content|upper }} {{ messages[0].get('role') }} {{ messages[0].get('nope', 'dflt') }} "
     "{{ messages[0].keys()|list }} {{ messages[0]|length }}",
     {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}),
    ("{%- for m in messages if m.role != 'system' %}{{ loop.index }}:{{ m.content }} {% else %}none{% endfor %}"
     "{% for x in [] %}x{% else %}empty{% endfor %}",
     {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}),
    ("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("{% set x %}  block {{ 1 + 1 }}  {% endset %}[{{ x }}]{% set y | trim | upper %}  shout  {% endset %}[{{ y }}]"
     "{% filter upper %}up {{ 'here' }}{% endfilter %}", {}),
    ("{{ strftime_now('%Y-%m-%d %d %b %Y %H:%M') }}", {}),
    ("{% raw %}{{ not rendered }}{% endraw %} {{ 'x' }}", {}),
    ("{{ '\\u00e9\\x41\\t\\'q\\' \\\\ \\n' }}{{ \"a\" 'b' }}", {}),
    ("{{ text|indent(2) }}|{{ text|indent(2, true) }}|{{ text|indent(width=1, first=true, blank=true) }}|{{ text|trim }}|"
     "{{ text|replace('\\n', '/') }}|{{ text|wordcount }}|{{ text|center(30) }}|{{ 'abc'|e }}|{{ '<a href=\"x\">'|escape }}",
     {"text": "line one\n\nline  two\n"}),
    ("{{ 3.7|int }} {{ '42'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ '2.5'|float }} {{ 3|float }} {{ -3|abs }} {{ 2.567|round(2) }} "
     "{{ 2.5|round }} {{ 3.5|round }} {{ 2.1|round(0, 'ceil') }} {{ 7|string ~ 'x' }} {{ [1, 2]|string }} {{ 1|upper }}", {}),
    ("{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}{{ a is defined }}", {}),
    ("{{ x.y.z }}", {"x": {"y": None}}),
    ("{{ {'a': {'b': 1}}['a']['b'] }} {{ {'a': {'b': 1}}.a.b }} {{ [[1, 2], [3]][0][1] }} {{ none.x is defined }}", {}),
    ("{{ messages[0]['content'][0]['text'] }} {{ messages[0]['content'] is string }} {{ messages[0]['content'] is iterable }}",
     {"messages": [{"role": "user", "content": [{"type": "text", "text": "hey"}]}]}),
    ("{% if messages|selectattr('role', 'equalto', 'x') %}gen-true{% endif %} {{ messages|selectattr('role', 'equalto', 'x')|list|length }}",
     {"messages": [{"role": "user", "content": "hi"}]}),
    ("{{ tools }} {{ tools is none }} {{ tools is defined }} {{ documents is none }}", {"tools": None, "documents": None}),
    ("{{ range(5)|list }} {{ range(2, 8, 3)|list }} {{ range(5, 0, -2)|list }} {{ dict(a=1, b='x') }}", {}),
    ("{{ range(1000000)|length }}", {}),
    ("{% for x in 5 %}{% endfor %}", {}),
    ("{{ [1, 2] + [3] }} {{ (1,) + (2,) }} {{ 'ab' * 3 }} {{ [0] * 3 }} {{ 10 - 2.5 }} {{ 2 ** 62 }}", {}),
    ("{% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(5) }}", {}),
    ("{{ 'x' if false }}|{{ 'y' if true else 'n' }}|{{ 1 if 0 else 2 if 0 else 3 }}", {}),
    ("{%- set content = '\\n  hello \\t\\n' -%}[{{ content|trim }}][{{ content.strip() }}][{{ content.lstrip() }}][{{ content.rstrip() }}]", {}),
    ("{{ 'Hello'.upper()[1:3] ~ loop }}", {}),
    ("{{ undefined_function() }}", {}),
    ("{{ [1,2,3].append(4) }}", {}),
]


def main():
    shared = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("QT_SHARED_MODELS",
                                                                     os.path.join(HERE, "..", "..", "..", "shared", "models"))
    env = make_env()
    with open(os.path.join(DATA, "corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)
    with open(os.path.join(DATA, "conversations.json"), encoding="utf-8") as f:
        convs = json.load(f)
    phi3 = gguf_chat_template(os.path.join(shared, "llama.cpp-vocab", "ggml-vocab-phi-3.gguf"))
    templates = []
    for t in corpus:
        with open(os.path.join(DATA, "corpus", t["file"]), encoding="utf-8", newline="") as f:
            templates.append((t["name"], f.read(), t["bos_token"], t["eos_token"]))
    templates.append(("gguf:ggml-vocab-phi-3", phi3, "<s>", "<|endoftext|>"))
    cases = []
    n_err = 0
    for name, source, bos, eos in templates:
        for ci, conv in enumerate(convs):
            variables = {"messages": conv["messages"], "tools": conv.get("tools"), "documents": conv.get("documents"),
                         "add_generation_prompt": conv["add_generation_prompt"], "bos_token": bos, "eos_token": eos}
            r = render(env, source, variables)
            n_err += "error" in r
            cases.append({"template": name, "conversation": ci, **r})
    engine = []
    for source, variables in CASES:
        engine.append({"source": source, "variables": variables, **render(env, source, variables)})
    out = {"magic": MAGIC, "version": VERSION, "now": NOW, "jinja2": jinja2.__version__, "cases": cases, "engine": engine}
    with open(os.path.join(DATA, "jinja-refs.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{len(templates)} templates x {len(convs)} conversations: {len(cases)} renders ({n_err} raise), "
          f"{len(engine)} engine cases")


if __name__ == "__main__":
    main()
