#!/usr/bin/env python3
# Writes the test data of the SentencePiece, GGUF-vocabulary and chat-template tests.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#
#   /work/venv-tiny/bin/python tests/tokenizer/make_spm_test_data.py
#
# Needs sentencepiece, tokenizers, transformers and gguf. Writes, under tests/tokenizer/data:
#   spm_llama/tokenizer.model        a 512-piece Llama-2-style SentencePiece BPE model
#                                     (byte fallback, split digits; <unk>=0 <s>=1 </s>=2) —
#                                     small enough to drive tests/models/tiny/llama3 (512 ids)
#   spm_llama/tokenizer_config.json  add_bos_token true
#   spm_expected.json                HF LlamaTokenizer ids and decodes for the test strings
#   gguf_llama_vocab.gguf            the same vocabulary as a GGUF "llama" tokenizer
#   gguf_gpt2_vocab.gguf             a byte-level BPE vocabulary (GGUF "gpt2", pre "llama-bpe")
#   gguf_qwen2_vocab.gguf            the same, pre "qwen2", no BOS
#   gguf_expected.json               expected ids for each GGUF vocabulary
#   chat_llama3/, chat_llama31/, chat_qwen2/, chat_qwen25/  tokenizer_config.json files with
#                                     the published chat templates
#   chat_expected.json               HF apply_chat_template(..., tokenize=False) outputs
import io
import json
import os
import random
import shutil
import tempfile

import gguf
import sentencepiece as spm
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tokenizers import Regex
from transformers import AutoTokenizer, PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")

WORDS = ("the of and to in is was that for on with as by at from his her they this which "
         "model token text stream byte piece merge score vocabulary language runtime compiler "
         "hello world quick brown fox jumps over lazy dog café naïve résumé über straße "
         "año niño garçon 東京 日本語 中文 привет мир γειά σου 한국어 emoji 😀 🚀 ✓ → "
         "12 345 6789 2024 3.14 1e-5 x=y+z; {json: [1,2]} <tag> path/to/file.txt").split()

TEST_STRINGS = [
    "", " ", "  ", "a", "Hello", "Hello world", " Hello world", "Hello  world",
    "hello\nworld", "\n\nline\n", "\ttab\tseparated", "trailing space ", "  leading spaces",
    "The quick brown fox jumps over the lazy dog.", "numbers 1234567890 and 3.14159",
    "2024-11-24T01:12:00Z", "café naïve résumé", "über straße", "東京は日本の首都です",
    "中文测试", "привет мир", "γειά σου κόσμε", "한국어 텍스트", "emoji 😀🚀✓",
    "🤖 robots", "mixed 日本 and English", "x = y + z; // comment", "{\"key\": [1, 2, 3]}",
    "<tag attr=\"v\">text</tag>", "path/to/file.txt", "UPPER lower MiXeD", "a-b_c.d,e;f:g",
    "it's don't won't", "Mr. Smith's car", "tabs\tand\nnewlines\r\nmixed",
    "repeated repeated repeated repeated", "aaaaaaaaaaaaaaaaaaaa", "    indented code",
    "def f(x):\n    return x * 2\n", "#include <stdio.h>", "SELECT * FROM t WHERE a = 1;",
    "ǅ ﬁ ℃ ⅷ", "zero\u200bwidth", "combining e\u0301", "rare glyph 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "Ελληνικά και English", "שלום עולם", "مرحبا بالعالم", "हिन्दी पाठ", "ไทย ภาษา",
    "the model token text stream", "vocabulary language runtime compiler",
    "1e-5 x=y+z; {json: [1,2]}", "Hello</s>world", "<s>Hello", "done.",
]


def corpus(rng, lines):
    for _ in range(lines):
        yield " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20)))


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1)
        f.write("\n")


def make_spm():
    rng = random.Random(1234)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=corpus(rng, 20000), model_writer=model, vocab_size=512,
        model_type="bpe", byte_fallback=True, split_digits=True, character_coverage=0.98,
        normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, unk_id=0,
        bos_id=1, eos_id=2, pad_id=-1, num_threads=2, minloglevel=2)
    directory = os.path.join(DATA, "spm_llama")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "tokenizer.model"), "wb") as f:
        f.write(model.getvalue())
    write_json(os.path.join(directory, "tokenizer_config.json"), {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "legacy": False, "tokenizer_class": "LlamaTokenizer"})
    # A copy that asks for no BOS.
    nobos = os.path.join(DATA, "spm_llama_nobos")
    os.makedirs(nobos, exist_ok=True)
    shutil.copy(os.path.join(directory, "tokenizer.model"), nobos)
    write_json(os.path.join(nobos, "tokenizer_config.json"), {"add_bos_token": False})

    hf = AutoTokenizer.from_pretrained(directory)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(directory, "tokenizer.model"))
    cases = []
    mismatches = 0
    for text in TEST_STRINGS:
        ids = hf.encode(text, add_special_tokens=True)
        plain = hf.encode(text, add_special_tokens=False)
        if "<s>" not in text and "</s>" not in text and plain != sp.encode(text):
            mismatches += 1
            print(f"note: HF and sentencepiece differ on {text!r}: {plain} vs {sp.encode(text)}")
        cases.append({"text": text, "ids": ids, "ids_no_special": plain,
                      "decoded": hf.decode(ids),
                      "decoded_skip_special": hf.decode(ids, skip_special_tokens=True)})
    rng = random.Random(7)
    random_ids = []
    for _ in range(20):
        seq = [rng.randrange(hf.vocab_size) for _ in range(rng.randint(1, 12))]
        random_ids.append({"ids": seq, "decoded": hf.decode(seq),
                           "decoded_skip_special": hf.decode(seq, skip_special_tokens=True)})
    pieces = [{"id": i, "piece": sp.id_to_piece(i), "bytes": list(
        hf.convert_tokens_to_string([sp.id_to_piece(i)]).encode())} for i in range(4)]
    write_json(os.path.join(DATA, "spm_expected.json"), {
        "vocab_size": sp.get_piece_size(), "bos_id": sp.bos_id(), "eos_id": sp.eos_id(),
        "unk_id": sp.unk_id(), "cases": cases, "random_decodes": random_ids,
        "first_pieces": pieces})
    print(f"spm: {sp.get_piece_size()} pieces, {len(cases)} cases, "
          f"{mismatches} HF/sentencepiece differences")
    return sp


def make_gguf_llama(sp):
    path = os.path.join(DATA, "gguf_llama_vocab.gguf")
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tokenizer_model("llama")
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i).encode())
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(gguf.TokenType.UNKNOWN)
        elif sp.is_control(i):
            types.append(gguf.TokenType.CONTROL)
        elif sp.is_byte(i):
            types.append(gguf.TokenType.BYTE)
        elif sp.is_unused(i):
            types.append(gguf.TokenType.UNUSED)
        else:
            types.append(gguf.TokenType.NORMAL)
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(sp.bos_id())
    writer.add_eos_token_id(sp.eos_id())
    writer.add_unk_token_id(sp.unk_id())
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    cases = []
    for text in TEST_STRINGS:
        if "<s>" in text or "</s>" in text:
            continue  # llama.cpp parses special tokens only on request
        cases.append({"text": text, "ids": [sp.bos_id()] + sp.encode(text)})
    return cases


LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?"
                r"[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?"
               r"[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def train_byte_level(split, specials, bos):
    rng = random.Random(99)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus(rng, 5000), trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
            special_tokens=[(bos, tok.token_to_id(bos))])
    return tok


def make_gguf_bpe(name, pre, split, specials, bos, eos):
    tok = train_byte_level(split, specials, bos)
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    tokens = [None] * len(vocab)
    for token, index in vocab.items():
        tokens[index] = token
    path = os.path.join(DATA, f"gguf_{name}_vocab.gguf")
    writer = gguf.GGUFWriter(path, "llama" if name == "gpt2" else "qwen2")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list([t.encode() for t in tokens])
    writer.add_token_types([gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL
                            for t in tokens])
    writer.add_token_merges(merges)
    if bos:
        writer.add_bos_token_id(vocab[bos])
    writer.add_eos_token_id(vocab[eos])
    writer.add_add_bos_token(bool(bos))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    cases = []
    for text in TEST_STRINGS + [f"{specials[-1]}inside", "a" + eos + "b"]:
        ids = tok.encode(text).ids
        cases.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    return cases


LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim "
    "+ '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

LLAMA31_TEMPLATE = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

QWEN25_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "  Be kind.\n"}, {"role": "user", "content": " What is 2+2? \n"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}],
    [{"role": "user", "content": "première question — 日本語"},
     {"role": "assistant", "content": "réponse\n\nsur deux lignes"}],
    [{"role": "user", "content": ""}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
     {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}],
]


def make_chat():
    configs = {
        "chat_llama3": (LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>"),
        "chat_llama31": (LLAMA31_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>"),
        "chat_qwen2": (QWEN2_TEMPLATE, None, "<|im_end|>"),
        "chat_qwen25": (QWEN25_TEMPLATE, None, "<|im_end|>"),
    }
    expected = {}
    for name, (template, bos, eos) in configs.items():
        directory = os.path.join(DATA, name)
        os.makedirs(directory, exist_ok=True)
        config = {"bos_token": bos, "eos_token": eos, "chat_template": template,
                  "tokenizer_class": "PreTrainedTokenizerFast"}
        write_json(os.path.join(directory, "tokenizer_config.json"), config)
        vocab = {"<unk>": 0, eos: 1}
        if bos:
            vocab[bos] = 2
        tok = PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
            bos_token=bos, eos_token=eos, unk_token="<unk>")
        tok.chat_template = template
        outputs = []
        for messages in CONVERSATIONS:
            for generation_prompt in (False, True):
                outputs.append({"messages": messages, "add_generation_prompt": generation_prompt,
                                "text": tok.apply_chat_template(
                                    messages, tokenize=False,
                                    add_generation_prompt=generation_prompt)})
        expected[name] = outputs
    # A template this runtime does not know (Gemma's turn markers).
    other = os.path.join(DATA, "chat_unsupported")
    os.makedirs(other, exist_ok=True)
    write_json(os.path.join(other, "tokenizer_config.json"), {
        "chat_template": "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n"
                         "{{ m['content'] }}<end_of_turn>\n{% endfor %}"})
    write_json(os.path.join(DATA, "chat_expected.json"), expected)


def main():
    os.makedirs(DATA, exist_ok=True)
    sp = make_spm()
    expected = {"llama": make_gguf_llama(sp)}
    expected["gpt2"] = make_gguf_bpe(
        "gpt2", "llama-bpe", LLAMA3_SPLIT, ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"],
        "<|begin_of_text|>", "<|eot_id|>")
    expected["qwen2"] = make_gguf_bpe(
        "qwen2", "qwen2", QWEN2_SPLIT, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        None, "<|im_end|>")
    write_json(os.path.join(DATA, "gguf_expected.json"), expected)
    make_chat()


if __name__ == "__main__":
    main()
