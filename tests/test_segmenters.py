"""Segmenters: exact partition of any completion, MRT rules against the MRT analysis code, tags,
token spans with a character tokenizer and a byte-level BPE whose tokens straddle characters."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metarl.registry import ConfigError
from metarl.segmenters import (
    MRT_KEYWORDS,
    MRTSegmenter,
    ParagraphSegmenter,
    RegexSegmenter,
    TagSegmenter,
    TokenChunkSegmenter,
    build_segmenter,
    char_to_token_boundaries,
    normalize_pieces,
    segment,
)
from metarl.types import Episode, check_partition

FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

FRAGMENTS = ["\n\n", "\n", "\r\n\r\n", "\r\n", " ", "  ", "x", "2+2=4.", "é", "😀", "\t", "Waiting", "wait",
             "<attempt>", "</attempt>", "<verify>", "</verify>", "<revise>", "</revise>", "<foo>", "</foo>", "<",
             ">", "</", *MRT_KEYWORDS]
texts = st.one_of(st.text(max_size=40), st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join))

TEXT_SEGMENTERS = [
    TagSegmenter(),
    TagSegmenter({"attempt": "a", "verify": "v"}),
    MRTSegmenter(),
    MRTSegmenter(min_gap=0, max_episodes=3, group_size=2, keyword_kinds={"Wait": "verify"}),
    ParagraphSegmenter(),
    ParagraphSegmenter(sep="\r\n\r\n"),
    RegexSegmenter(r"Wait|<verify>", kind="verify"),
    RegexSegmenter(r"\n+", split="after"),
    RegexSegmenter(r"(?m)^"),
]
ALL_SEGMENTERS = [*TEXT_SEGMENTERS, TokenChunkSegmenter(1), TokenChunkSegmenter(3)]


@pytest.fixture(scope="module")
def char_tok():
    from metarl.models.tiny import build_char_tokenizer

    return build_char_tokenizer()


@pytest.fixture(scope="module")
def bpe_tok():
    """A small byte-level BPE: multi-character tokens ("ĠWait") and multi-token characters (emoji bytes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=330, special_tokens=["<pad>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["Let x = 2. Wait, but wait: is 2+2=4?\n\nAlternatively, hold on.\n\n<attempt>x</attempt>",
              "<verify>correct</verify> ok Wait Wait Wait done é é"]
    tok.train_from_iterator(corpus * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>")


def assert_partition(text: str, eps: list[Episode], num_tokens: int | None = None) -> None:
    check_partition(text, eps, num_tokens)
    assert "".join(e.text for e in eps) == text
    if text:
        assert all(e.end > e.start for e in eps)
    else:
        assert [(e.kind, e.start, e.end, e.text) for e in eps] == [("other", 0, 0, "")]
    if num_tokens is None:
        assert all(e.token_start is None for e in eps)


# ---------------------------------------------------------------------------------------------- partition


@FAST
@given(text=texts)
def test_every_segmenter_partitions_any_text(text):
    for seg in TEXT_SEGMENTERS:
        eps = segment(seg, text)
        assert_partition(text, eps)
        if not text:
            assert [(e.kind, e.start, e.end, e.text) for e in eps] == [("other", 0, 0, "")]


@FAST
@given(ids=st.lists(st.integers(0, 100), max_size=30))
def test_token_spans_partition_ids_char_tokenizer(char_tok, ids):
    text = char_tok.decode(ids, skip_special_tokens=True)
    for seg in ALL_SEGMENTERS:
        eps = segment(seg, text, ids, char_tok)
        assert_partition(text, eps, len(ids))
        # every non-special char token is exactly one character: spans decode to the episode text
        for e in eps:
            assert char_tok.decode(ids[e.token_start:e.token_end], skip_special_tokens=True) == e.text


@FAST
@given(data=st.data())
def test_token_spans_partition_ids_bpe(bpe_tok, data):
    ids = data.draw(st.lists(st.integers(0, len(bpe_tok) - 1), max_size=30))
    text = bpe_tok.decode(ids, skip_special_tokens=True)
    for seg in ALL_SEGMENTERS:
        eps = segment(seg, text, ids, bpe_tok)
        assert_partition(text, eps, len(ids))
        for e in eps[1:]:  # boundary rule: the last token boundary whose decoded prefix fits before the cut
            t, c = e.token_start, e.start
            assert len(bpe_tok.decode(ids[:t], skip_special_tokens=True)) <= c
            assert t == len(ids) or len(bpe_tok.decode(ids[:t + 1], skip_special_tokens=True)) > c


@FAST
@given(text=texts)
def test_token_spans_from_text_only(char_tok, bpe_tok, text):
    for tok in (char_tok, bpe_tok):
        n = len(tok(text, add_special_tokens=False).input_ids)
        for seg in ALL_SEGMENTERS:
            assert_partition(text, segment(seg, text, tokenizer=tok), n)


# ---------------------------------------------------------------------------------------------- MRT


def mrt_reference(text: str, max_steps: int = 99) -> list[str]:
    """Oracle: the MRT notebook's break_into_meta_steps for one text (written out independently)."""
    steps, out, prev, left = text.split("\n\n"), [], 0, max_steps
    for i, step in enumerate(steps):
        if left == 0:
            break
        if any(step.startswith(k) for k in MRT_KEYWORDS):
            if i - prev in (0, 1, 2):
                continue
            out.append("\n\n".join(steps[prev:i]).rstrip("\n"))
            left -= 1
            prev = i
    out.append("\n\n".join(steps[prev:]).rstrip("\n"))
    return out


mrt_texts = st.lists(st.sampled_from(["a", "b", "", "\n", " Wait", "Waiting", "wait", "x Wait", *MRT_KEYWORDS]),
                     max_size=14).map("\n\n".join)


@FAST
@given(text=mrt_texts, max_episodes=st.integers(0, 5))
def test_mrt_matches_reference_code(text, max_episodes):
    eps = MRTSegmenter(max_episodes=max_episodes)(text)
    assert [e.text.rstrip("\n") for e in normalize_pieces(text, eps)] == mrt_reference(text, max_episodes)


@FAST
@given(text=mrt_texts, group_size=st.integers(1, 4))
def test_mrt_grouping_merges_consecutive_episodes(text, group_size):
    single = normalize_pieces(text, MRTSegmenter()(text))
    grouped = normalize_pieces(text, MRTSegmenter(group_size=group_size)(text))
    assert [e.start for e in grouped] == [e.start for e in single][::group_size]
    assert [e.kind for e in grouped] == [e.kind for e in single][::group_size]


def paras(*ps: str) -> str:
    return "\n\n".join(ps)


@pytest.mark.parametrize("kw", MRT_KEYWORDS)
def test_mrt_each_keyword_starts_an_episode(kw):
    text = paras("p0", "p1", "p2", f"{kw} then", "p4")
    eps = segment(MRTSegmenter(), text)
    assert [e.text for e in eps] == ["p0\n\np1\n\np2\n\n", f"{kw} then\n\np4"]
    assert [e.kind for e in eps] == ["attempt", "other"]
    assert eps[1].info["keyword"] == kw


def test_mrt_min_gap_counts_from_last_accepted_boundary():
    # candidates at 1, 2 (dropped: <= 2 after paragraph 0), 4 (accepted: 4 - 0 > 2), 5, 6 (dropped), 7 (accepted)
    ps = ["a", "Wait 1", "Wait 2", "b", "Wait 4", "Wait 5", "Wait 6", "Wait 7"]
    eps = segment(MRTSegmenter(), paras(*ps))
    assert [e.text.rstrip("\n") for e in eps] == [paras(*ps[:4]), paras(*ps[4:7]), "Wait 7"]
    eps = segment(MRTSegmenter(min_gap=0), paras(*ps))  # every candidate after paragraph 0
    assert len(eps) == 7
    eps = segment(MRTSegmenter(min_gap=3), paras(*ps))  # 4 - 0 > 3, 7 - 4 = 3 dropped
    assert [e.start for e in eps] == [0, len(paras(*ps[:4])) + 2]


def test_mrt_keyword_in_first_paragraph_is_not_a_boundary():
    text = paras("Wait here", "a", "b", "c")
    assert len(segment(MRTSegmenter(), text)) == 1
    assert len(segment(MRTSegmenter(), paras("Wait here", "a", "b", "Wait again"))) == 2


@pytest.mark.parametrize("last", [" Wait", "\nWait", "x\nWait", "So Wait", "wait", "WAIT", "But, wait"])
def test_mrt_keyword_not_at_paragraph_start_is_no_boundary(last):
    text = paras("a", "b", "c", last)
    assert len(segment(MRTSegmenter(), text)) == 1


def test_mrt_keyword_prefix_of_longer_word_matches_like_mrt():
    # MRT uses str.startswith, so "Waiting" and "Alternatively," count; reproduced on purpose
    for word in ("Waiting", "Waitress", "Alternatively,", "But waiting"):
        assert len(segment(MRTSegmenter(), paras("a", "b", "c", word))) == 2


def test_mrt_triple_newline_leaves_newline_on_next_paragraph():
    # "c\n\n\nWait" splits into "c", "\nWait": not a candidate (no stripping, as in MRT)
    assert len(segment(MRTSegmenter(), "a\n\nb\n\nc\n\n\nWait")) == 1
    # four newlines make an empty paragraph that still counts towards the gap
    text = "a\n\n\n\nWait"  # paragraphs: "a", "", "Wait" -> i=2, dropped
    assert len(segment(MRTSegmenter(), text)) == 1
    assert len(segment(MRTSegmenter(), "a\n\n\n\n\n\nWait")) == 2  # i=3


def test_mrt_max_episodes_caps_boundaries_and_rest_is_last():
    ps = ["a", "b", "c", "Wait 3", "d", "e", "Wait 6", "f", "g", "Wait 9"]
    text = paras(*ps)
    assert len(segment(MRTSegmenter(), text)) == 4
    eps = segment(MRTSegmenter(max_episodes=2), text)
    assert [e.text.rstrip("\n") for e in eps] == [paras(*ps[:3]), paras(*ps[3:6]), paras(*ps[6:])]
    assert len(segment(MRTSegmenter(max_episodes=0), text)) == 1


def test_mrt_grouping_and_kinds():
    ps = ["a", "b", "c", "Wait 3", "d", "e", "But let me double-check 6", "f", "g", "Alternatively 9", "h", "i",
          "Wait 12"]
    text = paras(*ps)
    seg = MRTSegmenter(group_size=2, keyword_kinds={"But let me double-check": "verify", "Wait": "revise"})
    eps = segment(seg, text)
    assert [e.text.rstrip("\n") for e in eps] == [paras(*ps[:6]), paras(*ps[6:12]), "Wait 12"]
    assert [e.kind for e in eps] == ["attempt", "verify", "revise"]
    assert [e.info["keyword"] for e in eps] == [None, "But let me double-check", "Wait"]


def test_mrt_separators_end_the_previous_episode_and_crlf_is_not_a_break():
    eps = segment(MRTSegmenter(), paras("a", "b", "c", "Wait", ""))
    assert eps[0].text == "a\n\nb\n\nc\n\n" and eps[1].text == "Wait\n\n"
    crlf = "a\r\n\r\nb\r\n\r\nc\r\n\r\nWait"
    assert len(segment(MRTSegmenter(), crlf)) == 1


def test_mrt_bad_config_is_explained():
    with pytest.raises(ValueError, match="group_size"):
        MRTSegmenter(group_size=0)
    with pytest.raises(ValueError, match="not one of keywords"):
        MRTSegmenter(keyword_kinds={"Hmm": "verify"})
    with pytest.raises(ValueError, match="episode kind"):
        MRTSegmenter(first_kind="thinking")


# ---------------------------------------------------------------------------------------------- tags


def kinds_texts(seg, text):
    return [(e.kind, e.text) for e in segment(seg, text)]


def test_tags_basic_and_whitespace_goes_to_previous_episode():
    text = "  <attempt>x=4</attempt>\n<verify>correct</verify> \n<revise>x=5</revise>\n"
    assert kinds_texts(TagSegmenter(), text) == [
        ("attempt", "  <attempt>x=4</attempt>\n"), ("verify", "<verify>correct</verify> \n"),
        ("revise", "<revise>x=5</revise>\n")]


def test_tags_text_outside_is_other():
    assert kinds_texts(TagSegmenter(), "So: <attempt>4</attempt> done. <verify>ok</verify>") == [
        ("other", "So: "), ("attempt", "<attempt>4</attempt> "), ("other", "done. "), ("verify", "<verify>ok</verify>")]


def test_tags_unclosed_runs_to_next_known_opening_tag_or_end():
    eps = segment(TagSegmenter(), "<attempt>4 <verify>ok</verify><revise>5")
    assert [(e.kind, e.text, e.info["closed"]) for e in eps] == [
        ("attempt", "<attempt>4 ", False), ("verify", "<verify>ok</verify>", True), ("revise", "<revise>5", False)]
    # a closing tag after the next opening tag does not close the earlier episode
    assert kinds_texts(TagSegmenter(), "<attempt>a<attempt>b</attempt>") == [
        ("attempt", "<attempt>a"), ("attempt", "<attempt>b</attempt>")]


def test_tags_unknown_and_stray_closing_tags_are_plain_text():
    assert kinds_texts(TagSegmenter(), "<attempt>a <b>c</b> <think></attempt>") == [
        ("attempt", "<attempt>a <b>c</b> <think></attempt>")]
    assert kinds_texts(TagSegmenter(), "</verify>x<attempt>y</attempt>") == [
        ("other", "</verify>x"), ("attempt", "<attempt>y</attempt>")]
    assert kinds_texts(TagSegmenter(), "<foo>bar</foo>") == [("other", "<foo>bar</foo>")]
    assert kinds_texts(TagSegmenter(), "<Attempt>x</Attempt>") == [("other", "<Attempt>x</Attempt>")]


def test_tags_nested_are_flattened():
    assert kinds_texts(TagSegmenter(), "<attempt>a<verify>v</verify>b</attempt>") == [
        ("attempt", "<attempt>a"), ("verify", "<verify>v</verify>"), ("other", "b</attempt>")]


def test_tags_configurable_names_and_whitespace_only():
    seg = TagSegmenter({"attempt": "try", "verify": "check"})
    assert kinds_texts(seg, "<try>1</try><check>no</check><attempt>") == [
        ("attempt", "<try>1</try>"), ("verify", "<check>no</check>"), ("other", "<attempt>")]
    assert kinds_texts(TagSegmenter(["verify"]), "a<verify>b") == [("other", "a"), ("verify", "<verify>b")]
    assert kinds_texts(TagSegmenter(), " \n ") == [("other", " \n ")]
    with pytest.raises(ValueError, match="episode kind"):
        TagSegmenter({"answer": "answer"})
    with pytest.raises(ValueError, match="share a tag name"):
        TagSegmenter({"attempt": "x", "revise": "x"})
    with pytest.raises(ValueError, match="tag name"):
        TagSegmenter({"attempt": "<a>"})


# ---------------------------------------------------------------------------------------------- others


def test_paragraphs_keep_separators_with_preceding_step():
    assert [e.text for e in segment(ParagraphSegmenter(), "a\n\nb\n\n\n\nc\n\n")] == ["a\n\n", "b\n\n\n\n", "c\n\n"]
    assert [e.text for e in segment(ParagraphSegmenter(), "\n\nb\n\nc")] == ["\n\nb\n\n", "c"]
    crlf = "a\r\n\r\nb"
    assert len(segment(ParagraphSegmenter(), crlf)) == 1
    assert [e.text for e in segment(ParagraphSegmenter(sep="\r\n\r\n"), crlf)] == ["a\r\n\r\n", "b"]
    assert [e.text for e in segment(RegexSegmenter(r"(?:\r?\n){2,}", split="after"), crlf)] == ["a\r\n\r\n", "b"]


def test_regex_before_after_and_kinds():
    seg = RegexSegmenter(r"Check:", kind="verify")
    assert kinds_texts(seg, "x=1 Check: ok Check: yes") == [
        ("other", "x=1 "), ("verify", "Check: ok "), ("verify", "Check: yes")]
    assert kinds_texts(seg, "Check: a") == [("verify", "Check: a")]
    after = RegexSegmenter(r"\.", kind="attempt", split="after")
    assert kinds_texts(after, "a. b. c") == [("attempt", "a."), ("attempt", " b."), ("other", " c")]
    assert [e.text for e in segment(RegexSegmenter("(?m)^"), "a\nb\n")] == ["a\n", "b\n"]
    with pytest.raises(ValueError, match="not a valid regular expression"):
        RegexSegmenter("(")
    with pytest.raises(ValueError, match="'before' or 'after'"):
        RegexSegmenter("x", split="around")


def test_token_chunks_with_ids_trailing_eos_in_last(char_tok):
    ids = char_tok.encode("abcdefghij", add_special_tokens=False) + [char_tok.eos_token_id, char_tok.pad_token_id]
    text = char_tok.decode(ids, skip_special_tokens=True)
    eps = segment(TokenChunkSegmenter(3), text, ids, char_tok)
    assert [(e.text, e.token_start, e.token_end) for e in eps] == [
        ("abc", 0, 3), ("def", 3, 6), ("ghi", 6, 9), ("j", 9, 12)]
    eps = segment(TokenChunkSegmenter(3), "abcdefg", tokenizer=char_tok)
    assert [(e.token_start, e.token_end) for e in eps] == [(0, 3), (3, 6), (6, 7)]
    with pytest.raises(ValueError, match="needs a tokenizer"):
        segment(TokenChunkSegmenter(3), text)
    with pytest.raises(ValueError, match="positive integer"):
        TokenChunkSegmenter(0)


def test_token_chunk_cut_inside_a_character_moves_forward(bpe_tok):
    text = "a😀b"
    ids = bpe_tok.encode(text, add_special_tokens=False)
    assert len(ids) > 3  # the emoji is several byte tokens
    eps = segment(TokenChunkSegmenter(2), text, ids, bpe_tok)
    assert_partition(text, eps, len(ids))
    emoji_end = next(t for t in range(len(ids) + 1) if bpe_tok.decode(ids[:t]) == "a😀")
    assert [e.text for e in eps][:1] == ["a😀"] and eps[0].token_end == emoji_end


def test_straddling_token_goes_to_the_episode_holding_its_last_char(bpe_tok):
    text = "ok Wait"
    ids = bpe_tok.encode(text, add_special_tokens=False)
    pieces = bpe_tok.convert_ids_to_tokens(ids)
    assert "ĠWait" in pieces  # " Wait" is one token that straddles the cut before "Wait"
    eps = segment(RegexSegmenter("Wait"), text, ids, bpe_tok)
    assert [e.text for e in eps] == ["ok ", "Wait"]
    assert bpe_tok.decode(ids[eps[1].token_start:eps[1].token_end]) == " Wait"
    assert eps[0].token_end == pieces.index("ĠWait")


def test_char_to_token_boundaries_hand_computed(char_tok):
    ids = char_tok.encode("ab\n\ncd", add_special_tokens=False)
    ids = [char_tok.bos_token_id, *ids[:4], char_tok.eos_token_id, *ids[4:], char_tok.eos_token_id]
    # decoded prefix lengths: 0 0 1 2 3 4 4 5 6 6 -> cut 4 at t=6 (the mid EOS stays with "ab\n\n")
    assert char_to_token_boundaries("ab\n\ncd", [4], ids, char_tok) == [6]
    eps = segment(ParagraphSegmenter(), "ab\n\ncd", ids, char_tok)
    assert [(e.token_start, e.token_end) for e in eps] == [(0, 6), (6, 9)]


class NonLocalTokenizer:
    """A decoder whose output depends on the whole id list (one '#' per 10 ids, appended at the end)."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(97 + i % 26) for i in ids) + "#" * (len(ids) // 10)


@FAST
@given(n=st.integers(1, 60), data=st.data())
def test_char_to_token_boundaries_exact_even_for_non_local_decoders(n, data):
    tok, ids = NonLocalTokenizer(), list(range(n))
    text = tok.decode(ids)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=6)))
    brute = [max(t for t in range(n + 1) if len(tok.decode(ids[:t])) <= c) for c in cuts]
    assert char_to_token_boundaries(text, cuts, ids, tok) == brute


def test_segment_checks_text_matches_ids(char_tok):
    ids = char_tok.encode("ab cd", add_special_tokens=False) + [char_tok.eos_token_id]
    with pytest.raises(ValueError, match="not tokenizer.decode"):
        segment(ParagraphSegmenter(), "ab cd!", ids, char_tok)
    with pytest.raises(ValueError, match="without a tokenizer"):
        segment(ParagraphSegmenter(), "ab cd", ids)
    # text decoded keeping special tokens: detected automatically, EOS is text of the last episode
    eps = segment(RegexSegmenter("cd"), "ab cd</s>", ids, char_tok)
    assert [(e.text, e.token_start, e.token_end) for e in eps] == [("ab ", 0, 3), ("cd</s>", 3, 6)]
    with pytest.raises(ValueError, match="skip_special_tokens"):
        segment(ParagraphSegmenter(), "ab cd</s>", ids, char_tok, skip_special_tokens=True)


def test_empty_completion_with_only_eos(char_tok):
    for seg in ALL_SEGMENTERS:
        eps = segment(seg, "", [char_tok.eos_token_id] * 2, char_tok)
        assert [(e.kind, e.text, e.token_start, e.token_end) for e in eps] == [("other", "", 0, 2)]


# ---------------------------------------------------------------------------------------------- normalize, build


def test_normalize_pieces_accepts_every_form():
    text = "abcdef"
    forms = [
        [(0, 2), (2, 4, "verify"), (4, 6)],
        ["ab", ("cd", "verify"), "", "ef"],
        [Episode("other", 0, 2, ""), (2, 2), Episode("verify", 2, 4, "cd"), "ef"],
        ((a, b, k) for a, b, k in [(0, 2, "other"), (2, 4, "verify"), (4, 6, "other")]),
    ]
    for pieces in forms:
        eps = normalize_pieces(text, pieces)
        assert [(e.kind, e.start, e.end, e.text) for e in eps] == [
            ("other", 0, 2, "ab"), ("verify", 2, 4, "cd"), ("other", 4, 6, "ef")]
    assert [(e.kind, e.text) for e in normalize_pieces("", [])] == [("other", "")]
    assert [(e.kind, e.text) for e in normalize_pieces("", [(0, 0, "attempt")])] == [("other", "")]


@pytest.mark.parametrize("pieces, match", [
    ([(0, 2), (3, 6)], "previous piece ended at 2"),
    ([(0, 4), (2, 6)], "previous piece ended at 4"),
    ([(0, 2)], "do not partition"),
    ([(0, 9)], "spans"),
    ([(0, 6, "think")], "kind 'think'"),
    (["ab", "xx", "ef"], "string piece 1"),
    ([(0.0, 6)], "non-integer start"),
    (None, "returned NoneType"),
    ("abcdef", "returned str"),
    ([{"start": 0}], "expected an Episode"),
])
def test_normalize_pieces_errors_name_the_segmenter(pieces, match):
    with pytest.raises(ValueError, match=match) as info:
        normalize_pieces("abcdef", pieces, "my_seg")
    assert "my_seg" in str(info.value)


def sentences(text):
    """A custom segmenter as a user would write it: one episode per sentence, as strings."""
    import re

    return [m.group() for m in re.finditer(r"[^.]*(?:\.|$)", text) if m.group()]


def test_build_segmenter_config_nodes_and_custom_functions(char_tok):
    assert build_segmenter({"_target_": "metarl.segmenters.MRTSegmenter", "group_size": 5}).group_size == 5
    assert build_segmenter({"_target_": "metarl.segmenters.TokenChunkSegmenter", "k": 4}).k == 4
    assert isinstance(build_segmenter({"_target_": "metarl.segmenters.ParagraphSegmenter"}), ParagraphSegmenter)
    own = {"_target_": "test_segmenters.sentences", "_partial_": True}  # a function segmenter is used as it is
    assert [e.text for e in segment(own, "A b. C d. E")] == ["A b.", " C d.", " E"]
    with pytest.raises(ConfigError, match=r"test_segmenters\.sentences is a function.*_partial_: true"):
        build_segmenter({"_target_": "test_segmenters.sentences"})
    with pytest.raises(ConfigError, match=r"segmenter='tags': a segmenter is a mapping with `_target_`"):
        build_segmenter("tags")  # short names are gone: segmenter=tags selects conf/segmenter/tags.yaml
    with pytest.raises(ConfigError, match="Error locating target 'metarl.segmenters.Nope'"):
        build_segmenter({"_target_": "metarl.segmenters.Nope"})

    seen = {}

    def needs_tokenizer(text, tokenizer):
        seen["tok"] = tokenizer
        return [text]

    segment(needs_tokenizer, "abc", tokenizer=char_tok)
    assert seen["tok"] is char_tok
    segment(lambda text: [text], "abc", char_tok.encode("abc", add_special_tokens=False), char_tok)


def test_hydra_configs_build_every_segmenter():
    from pathlib import Path

    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[1] / "conf" / "segmenter"
    for name in ("tags", "mrt", "paragraphs", "tokens", "regex"):
        path = conf / f"{name}.yaml"
        assert path.read_text().startswith("# ")
        seg = build_segmenter(OmegaConf.load(path))
        assert type(seg).__name__ == {"tags": "TagSegmenter", "mrt": "MRTSegmenter", "paragraphs": "ParagraphSegmenter",
                                      "tokens": "TokenChunkSegmenter", "regex": "RegexSegmenter"}[name]
    mrt = build_segmenter(OmegaConf.load(conf / "mrt.yaml"))
    assert set(mrt.keywords) == set(MRT_KEYWORDS) and (mrt.min_gap, mrt.max_episodes, mrt.group_size) == (2, 99, 1)
