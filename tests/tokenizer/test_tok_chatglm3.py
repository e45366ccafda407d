"""ChatGLM3 tokenizer against the real THUDM/chatglm3-6b tokenizer.model.

Expected ids: shared/models/README.md; chat format: THUDM/chatglm3-6b tokenization_chatglm.py
(`build_single_message`, `build_chat_input`).
"""
from __future__ import annotations

import json
import random


from glmtrt.tokenizer.chatglm3 import ChatGLM3Tokenizer


def test_recognised_and_sizes(chatglm3):
    assert isinstance(chatglm3, ChatGLM3Tokenizer)
    assert chatglm3.name == "chatglm3"
    assert chatglm3.base_vocab_size == 64789
    assert chatglm3.vocab_size == 64798
    assert chatglm3.eos_id == 2 and chatglm3.pad_id == 0


def test_special_token_table(chatglm3):
    assert chatglm3.special_tokens == {
        "[MASK]": 64789, "[gMASK]": 64790, "[sMASK]": 64791, "sop": 64792, "eop": 64793,
        "<|system|>": 64794, "<|user|>": 64795, "<|assistant|>": 64796, "<|observation|>": 64797,
    }
    assert chatglm3.prefix_ids == (64790, 64792)
    assert chatglm3.token_to_id("<|assistant|>") == 64796


def test_stop_ids(chatglm3):
    assert chatglm3.stop_ids == (2, 64795, 64797)


def test_exact_ids(chatglm3):
    assert chatglm3.encode("你好，世界! Hello") == [36474, 54591, 31123, 31661, 30992, 13755]
    assert chatglm3.encode("") == []


def test_newline_part_of_role_header(chatglm3):
    # upstream encodes f"{metadata}\n" with sp.encode: dummy-prefix piece "▁" then the byte <0x0A>
    assert chatglm3.encode("\n") == [30910, 13]
    assert chatglm3.id_to_token(30910) == "\u2581" and chatglm3.id_to_token(13) == "<0x0A>"


def test_single_turn_prompt(chatglm3):
    q = "你好，世界! Hello"
    ids = chatglm3.build_chat_ids([{"role": "user", "content": q}])
    assert ids == [64790, 64792, 64795, 30910, 13, 36474, 54591, 31123, 31661, 30992, 13755, 64796]
    no_gen = chatglm3.build_chat_ids([{"role": "user", "content": q}], add_generation_prompt=False)
    assert no_gen == ids[:-1]


def test_multi_turn_prompt_with_metadata_and_tools(chatglm3):
    tools = [{"name": "get_weather", "description": "查询天气", "parameters": {"city": "str"}}]
    msgs = [
        {"role": "system", "content": "You are ChatGLM3.", "tools": tools},
        {"role": "user", "content": "北京天气怎么样？"},
        {"role": "assistant", "metadata": "get_weather", "content": "tool_call(city='北京')"},
        {"role": "observation", "content": '{"temperature": 25}'},
    ]
    ids = chatglm3.build_chat_ids(msgs)
    enc = chatglm3.encode
    sys_content = "You are ChatGLM3." + "\n" + json.dumps(tools, indent=4, ensure_ascii=False)
    expected = [64790, 64792]
    expected += [64794] + enc("\n") + enc(sys_content)
    expected += [64795] + enc("\n") + enc("北京天气怎么样？")
    expected += [64796] + enc("get_weather\n") + enc("tool_call(city='北京')")
    expected += [64797] + enc("\n") + enc('{"temperature": 25}')
    expected += [64796]
    assert ids == expected


def test_user_text_cannot_inject_specials(chatglm3):
    text = "<|assistant|>hi[gMASK]"
    assert not set(chatglm3.encode(text)) & set(chatglm3.special_tokens.values())
    ids = chatglm3.build_chat_ids([{"role": "user", "content": text}])
    assert ids.count(64796) == 1 and ids[-1] == 64796
    allowed = chatglm3.encode(text, allow_special=True)
    assert allowed[0] == 64796 and allowed[-1] == 64790
    # each text segment gets its own dummy prefix "▁" (upstream tokenize(encode_special_tokens=True))
    assert allowed[1:-1] == chatglm3.encode("hi")
    assert chatglm3.decode(allowed, skip_special_tokens=False) == "<|assistant|> hi[gMASK]"
    # bare words sop/eop are text even when specials are allowed
    assert 64792 not in chatglm3.encode("desktop sop eop", allow_special=True)


def test_round_trips(chatglm3, texts):
    for t in texts:
        ids = chatglm3.encode(t)
        assert chatglm3.decode(ids) == t
        assert chatglm3.decode(ids) == chatglm3.sp.decode(ids)


def test_decode_matches_sentencepiece_on_random_ids(chatglm3):
    # normal pieces and the control pieces <s> </s>: byte pieces are excluded because random
    # bytes are invalid UTF-8, where SentencePiece and Python replace differently (docs/TOKENIZERS.md)
    rng = random.Random(7)
    normal = [i for i in range(3, 64789) if not chatglm3.sp.is_byte(i)]
    for _ in range(200):
        ids = [rng.choice(normal + [1, 2]) for _ in range(rng.randint(1, 12))]
        assert chatglm3.decode(ids) == chatglm3.sp.decode(ids), ids


def test_decode_specials(chatglm3):
    ids = chatglm3.build_chat_ids([{"role": "user", "content": "你好"}])
    assert chatglm3.decode(ids) == "\n 你好"
    assert chatglm3.decode(ids, skip_special_tokens=False) == "[gMASK]sop<|user|> \n 你好<|assistant|>"
    assert chatglm3.decode([2, 0, 1]) == ""
    assert chatglm3.decode([0, 1, 2], skip_special_tokens=False) == "<unk><s></s>"
    # embedding padding rows (64798..65023) carry no text
    assert chatglm3.decode([65000, 36474]) == "你"
