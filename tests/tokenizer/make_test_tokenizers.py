#!/usr/bin/env python3
# Builds the tokenizer.json test fixtures and HF's expected ids for tests/tokenizer/.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Usage: /work/venv-tiny/bin/python tests/tokenizer/make_test_tokenizers.py [--bench-out DIR]

Trains small byte-level BPE tokenizers with HF `tokenizers` in the shape of Llama 3
(Split with the Llama 3 regex + ByteLevel, ignore_merges, TemplateProcessing adding
<|begin_of_text|>) and Qwen2 (NFC normalizer, Qwen2 regex, no BOS), and writes to
tests/tokenizer/data/:
  llama3_tokenizer.json, qwen2_tokenizer.json    the fixtures of bpe_tokenizer_test
  cases.json                                      test strings, HF's ids and decodes
  unseen_llama3_tokenizer.json, unseen_qwen2_tokenizer.json, unseen_cases.json
      a second pair trained on other text with other vocab sizes (merges in the "a b"
      string form), used only by bpe_unseen_test
With --bench-out DIR it also writes DIR/bench_tokenizer.json (Llama 3 style) and
DIR/bench_qwen2_tokenizer.json (Qwen2 style), both 32k vocab, and DIR/bench_text.txt
(~4.7 MB of mixed text, held out from their training) for bench/tokenizer_throughput.py.
Everything is deterministic (fixed seeds), so re-running reproduces the files.
"""
import argparse
import glob
import json
import os
import random

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|reserved_special_token_1|>", "<|start_header_id|>", "<|end_header_id|>",
                   "<|reserved_special_token_2|>", "<|eot_id|>", "<|python_tag|>"]
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

PHRASES = [
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say it's fine, but we've seen what you'd do. DON'T PANIC, it'S OK.",
    "Machine learning models tokenize text into subword units before embedding them.",
    "東京は日本の首都です。今日はとても良い天気ですね。",
    "我们今天去公园散步，然后吃了一顿美味的晚饭。人工智能正在改变世界。",
    "北京欢迎你！中文分词是一个有趣的问题。",
    "한국어 텍스트도 포함되어 있습니다. 안녕하세요, 반갑습니다!",
    "Привет, мир! Это пример текста на русском языке для обучения токенизатора.",
    "Γειά σου Κόσμε! Η γρήγορη καφέ αλεπού.",
    "مرحبا بالعالم! هذا نص عربي لاختبار المحلل.",
    "שלום עולם! זהו טקסט בעברית לבדיקה.",
    "नमस्ते दुनिया! यह हिंदी में एक वाक्य है।",
    "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "Café crème brûlée, naïve façade, jalapeño, Ångström, Zürich, Łódź, İstanbul.",
    "Emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇺🇸🇯🇵🇩🇪 ❤️ 🔥🔥🔥 🤖✨",
    "def tokenize(text: str) -> list[int]:\n    return [ord(c) for c in text]\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // dot product\n",
    "https://example.com/path/to/page?query=1&lang=en#section-2",
    "Numbers: 1234567890, 3.14159, 2024-06-01, 1,000,000 and 42%.",
    "\tIndented with tabs\r\nWindows line endings\r\n  and   multiple   spaces.",
    "Tiếng Việt có dấu: Xin chào thế giới, cảm ơn bạn rất nhiều.",
    "Español: ¿Dónde está la biblioteca? ¡Muy bien! El niño comió.",
    "Deutsch: Größe, Straße, Übermäßig, Fußgängerübergänge.",
]
WORDS = ("the of and to in is it that for you was with on as have but be they at one this "
         "from or had by word what all were we when your can said there use an each which "
         "she do how their if will up other about out many then them these so some her "
         "would make like him into time has look two more write go see number no way could "
         "people my than first water been call who oil its now find long down day did get "
         "come made may part model token layer attention kernel tensor batch vector matrix "
         "データ 学習 模型 数据 训练 언어 모델 язык модель نموذج לימוד").split()


def generated_text(seed, n_sentences):
    """Deterministic pseudo-sentences mixing the phrases and a word list."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_sentences):
        if rng.random() < 0.3:
            out.append(rng.choice(PHRASES))
            continue
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 10**rng.randint(1, 9))))
        s = " ".join(words)
        s = s[0].upper() + s[1:] + rng.choice([".", "!", "?", ",", ":", "...", "\n", "\n\n"])
        out.append(s)
    return out


def python_sources(limit_bytes, offset=0):
    """Code and English prose from the Python standard library (always installed)."""
    files = sorted(glob.glob("/usr/lib/python3*/**/*.py", recursive=True))
    out, total = [], 0
    for path in files[offset:]:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            continue
        out.append(text)
        total += len(text)
        if total >= limit_bytes:
            break
    return out


def build(kind, texts, vocab_size, extra_added=()):
    if kind == "llama3":
        specials, regex = LLAMA3_SPECIALS, LLAMA3_REGEX
    else:
        specials, regex = QWEN2_SPECIALS, QWEN2_REGEX
    tok = Tokenizer(models.BPE(ignore_merges=(kind == "llama3")))
    if kind == "qwen2":
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    if extra_added:
        tok.add_tokens(list(extra_added))
    if kind == "llama3":
        bos = "<|begin_of_text|>"
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1",
                                          special_tokens=[(bos, tok.token_to_id(bos))]),
        ])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def string_merges(path):
    """Rewrites merges from [a, b] pairs to the older "a b" string form."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                               for m in data["model"]["merges"]]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)


def test_strings(specials):
    long_paragraph = " ".join(PHRASES) * 3
    cases = [
        "", " ", "  ", "\n", "\r\n", "\t", "a", "A", "hello", " hello", "hello world",
        "Hello, World!", "  leading and trailing  ", "multiple     spaces   here",
        "tabs\tand\ttabs\t\t\tend", "line1\nline2\n\nline4\n\n\n", "crlf\r\nline\r\n\r\n",
        "mixed \t \n \r\n whitespace", "trailing newline\n", "   \n   \n",
        "1", "12", "123", "1234", "12345678901234567890", "3.14159265358979",
        "0xDEADBEEF 0b1010 1e-9", "٣٤٥ ١٢٣ arabic digits", "①②③ ⅫⅣ",
        "I'm", "I'M", "you're", "YOU'RE", "we've WE'VE", "she'll SHE'LL", "he'd HE'D",
        "it's IT'S It'S", "don't DON'T", "'s 's 'S", "rock'n'roll", "o'clock", "’s curly’s",
        "東京", "日本語のテキスト", "我爱北京天安门", "中文，标点。符号！", "한국어", "カタカナとひらがな",
        "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸🇯🇵", "❤️‍🔥", "🧑🏿‍💻 coding", "emoji😀in😀text",
        "مرحبا بالعالم", "שלום עולם", "العربية and English mixed", "עברית123",
        "e\u0301", "cafe\u0301", "Cafe\u0301 vs Caf\u00e9", "A\u030a", "n\u0303o", "\u1100\u1161",
        "ﬁ ligature", "Ａ full width", "x\u200by zero width", "a\u00a0b nbsp",
        "a\u3000b ideographic space", "a\u180eb mongolian", "a\u2028b\u2029c", "a\u0085b",
        "a\u000bb\u000cc", "\u200d", "\ufeffBOM", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𐍈 gothic",
        "def f(x):\n    return x * 2\n", "if (a && b) { return c; }",
        "#include <stdio.h>\nint main() { printf(\"hi\\n\"); }",
        "SELECT * FROM users WHERE id = 42;", "<html><body>Hi</body></html>",
        "https://www.example.org/a/b?c=d&e=f#g", "user@example.com", "C:\\Users\\name\\file.txt",
        "$ ls -la | grep foo > out.txt", "x = [1, 2, 3]; y = {'a': 1}", "a--b...c!!!d???",
        "!!!", "...", "---", "___", "~~~", "()[]{}<>", "@#$%^&*", "«quoted» „German“",
        "¿Qué?", "¡Hola!", "Ünïcödé", "İstanbul ıi", "ß ẞ", "Ω ω Σ σ ς",
        "The quick brown fox jumps over the lazy dog.",
        "THE QUICK BROWN FOX", "camelCaseIdentifier", "snake_case_identifier",
        "kebab-case-identifier", "ALLCAPS123lower", "a1b2c3d4", "10,000,000.00",
        "    indented code", "\t\tdouble tab", " \n", "\n ", " \n ", "word \n word",
        "end with spaces   ", "   ", "\n\n\n\n", "a  \n  b",
        long_paragraph,
        "Привет, как дела?", "Ελληνικά", "हिंदी भाषा", "ภาษาไทย", "Tiếng Việt",
        "日本語 English 混合 text 123", "🙂🙃", "1️⃣2️⃣", "©®™", "∑∫√∞≠≤",
        "\u0000null byte", "bell\u0007", "del\u007f",
    ]
    # Special tokens inside text, at the edges, adjacent, and half-written.
    for sp in specials:
        cases += [sp, f"a{sp}b", f" {sp} ", f"{sp}{sp}", f"text {sp}\nmore"]
    cases += [specials[0][:-1], specials[0][1:], "<|", "|>", "<||>"]
    return cases


def expected(tok, strings):
    rows = []
    for s in strings:
        ids = tok.encode(s).ids
        ids_no_special = tok.encode(s, add_special_tokens=False).ids
        rows.append({
            "text": s,
            "ids": ids,
            "ids_no_special": ids_no_special,
            "decode": tok.decode(ids, skip_special_tokens=False),
            "decode_skip_special": tok.decode(ids, skip_special_tokens=True),
        })
    return rows


def decode_cases(tok, seed):
    """Random id sequences (partial UTF-8 included) and HF's lossy decodes of them."""
    rng = random.Random(seed)
    n = tok.get_vocab_size()
    rows = []
    for _ in range(40):
        ids = [rng.randrange(n) for _ in range(rng.randint(1, 8))]
        rows.append({"ids": ids, "decode": tok.decode(ids, skip_special_tokens=False),
                     "decode_skip_special": tok.decode(ids, skip_special_tokens=True)})
    return rows


def write_pair(out_dir, prefix, seed, llama_vocab, qwen_vocab, text_offset, string_form):
    texts = generated_text(seed, 6000) + python_sources(400_000, text_offset)
    extra_llama = [AddedToken("<tool>", special=False, normalized=False, lstrip=True,
                              rstrip=True)]
    extra_qwen = [AddedToken("<tool_call>", special=False, normalized=False),
                  AddedToken("</tool_call>", special=False, normalized=False),
                  AddedToken(" mask", special=False, normalized=True, single_word=True)]
    result = {}
    for kind, vocab, extra, specials in (("llama3", llama_vocab, extra_llama, LLAMA3_SPECIALS),
                                         ("qwen2", qwen_vocab, extra_qwen, QWEN2_SPECIALS)):
        tok = build(kind, texts, vocab, extra)
        path = os.path.join(out_dir, f"{prefix}{kind}_tokenizer.json")
        tok.save(path, pretty=True)
        if string_form:
            string_merges(path)
        tok = Tokenizer.from_file(path)
        strings = test_strings(specials) + [a.content for a in extra] + [
            f"x {a.content} y" for a in extra] + ["use mask here", "unmask", "a mask"]
        result[kind] = {"cases": expected(tok, strings), "decode_cases": decode_cases(tok, seed)}
        print(f"{path}: {os.path.getsize(path)} bytes, vocab {tok.get_vocab_size()}, "
              f"{len(strings)} cases")
    with open(os.path.join(out_dir, f"{prefix}cases.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)


def write_bench(out_dir):
    texts = generated_text(7, 60000) + python_sources(4_000_000)
    build("llama3", texts, 32000).save(os.path.join(out_dir, "bench_tokenizer.json"))
    build("qwen2", texts, 32000).save(os.path.join(out_dir, "bench_qwen2_tokenizer.json"))
    # Bench text: held-out sources plus fresh generated sentences (~4 MB).
    bench = generated_text(99, 30000) + python_sources(3_000_000, 600)
    with open(os.path.join(out_dir, "bench_text.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(bench))
    print(f"bench tokenizers (32k vocab) and text in {out_dir}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench-out", help="also write the 32k bench tokenizer and text here")
    args = parser.parse_args()
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    os.makedirs(out_dir, exist_ok=True)
    write_pair(out_dir, "", seed=1, llama_vocab=3000, qwen_vocab=2500, text_offset=0,
               string_form=False)
    write_pair(out_dir, "unseen_", seed=2, llama_vocab=4000, qwen_vocab=3500,
               text_offset=800, string_form=True)
    if args.bench_out:
        os.makedirs(args.bench_out, exist_ok=True)
        write_bench(args.bench_out)


if __name__ == "__main__":
    main()
