"""Field readers over morphemes: numbers with their counters, places, child counts, free text.

Each reader gets the morphemes of the clauses about one person (see `interview.py`) and
relies on the analyser's parts of speech and normalised forms, so a place is a run of
place nouns cut at particles ("貯金は200万で品川区に住んでる" -> 品川区, never "万で品川区"),
a number is a numeral with its counter, and "子ども/こども" are one word.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from app.brains.offline import interview_lexicon as lx
from app.brains.offline.japanese import Morpheme

Tokens = Sequence[Morpheme]


@dataclass(frozen=True, slots=True)
class Reading:
    value: str
    sure: bool  # False: said back as a question, stored only once the person confirms


# --- shared shapes ------------------------------------------------------------------------
NEGATORS: Final = frozenset({"ない", "無い", "ず", "ぬ"})
CORRECTION: Final = frozenset(
    {"矢張り", "やっぱ", "訂正", "間違い", "間違える", "正しい", "実は", "今", "現在", "最近"}
)
SUFFIXES: Final = frozenset("都道府県市区町村郡")


def negated_after(tokens: Tokens, i: int) -> bool:
    """Whether what follows token i denies it: 住んでいません, 東京じゃなくて, 32歳ではない."""
    return _said_after(tokens, i, lambda m: m.base in NEGATORS or m.normal in NEGATORS)


def _said_after(tokens: Tokens, i: int, sign: Callable[[Morpheme], bool]) -> bool:
    """Whether a morpheme with `sign` follows token i within its own phrase: the next few
    morphemes, up to a symbol, a noun or a conjunctive particle other than て/で."""
    for m in tokens[i + 1 : i + 7]:
        if sign(m):
            return True
        if m.is_symbol or m.is_noun or (m.pos[1] == "接続助詞" and m.surface not in "てで"):
            return False
    return False


def correcting(tokens: Tokens) -> bool:
    """A message that corrects itself or an earlier answer: its last reading wins."""
    return any(m.normal in CORRECTION or m.base in CORRECTION for m in tokens)


def pick(found: list[str], tokens: Tokens) -> str | None:
    if not found:
        return None
    return found[-1] if correcting(tokens) else found[0]


# --- age --------------------------------------------------------------------------------
AGE_NOT_AFTER: Final = frozenset(
    [
        "差",
        "以上",
        "以下",
        "未満",
        "まで",
        "から",
        "年下",
        "年上",
        "前後",
        "離れ",
        "違い",
        "頃",
        "時",
        "とき",
        "位",
        "児",
        "代",
    ]
)
AGE_NOT_OF: Final = frozenset(
    [
        "人",
        "方",
        "子",
        "子供",
        "娘",
        "息子",
        "男の子",
        "女の子",
        "頃",
        "時",
        "とき",
        "差",
        "年",
        "誕生日",
        "彼",
        "彼女",
        "妻",
        "夫",
        "相手",
        "時代",
    ]
)


# Whose age a clause may give besides the person's own (父は60歳, 友達が30歳で).
OTHER_PEOPLE: Final = frozenset(
    [
        "父",
        "母",
        "父親",
        "母親",
        "お父さん",
        "お母さん",
        "兄",
        "姉",
        "弟",
        "妹",
        "お兄さん",
        "お姉さん",
        "兄弟",
        "姉妹",
        "祖父",
        "祖母",
        "おじいちゃん",
        "おばあちゃん",
        "両親",
        "親",
        "友達",
        "友人",
        "上司",
        "同僚",
        "先輩",
        "後輩",
    ]
)


def _of_someone_else(tokens: Tokens, i: int) -> bool:
    """The clause before token `i` is about another person: `父は`, `友達の年齢は`."""
    for j in range(i - 1, -1, -1):
        if tokens[j].is_symbol:
            return False
        nxt = tokens[j + 1].surface
        if tokens[j].normal in OTHER_PEOPLE and nxt in ("は", "が", "も", "の"):
            return True
    return False


def age(tokens: Tokens, *, asked: bool) -> int | None:
    found: list[str] = []
    for i, m in enumerate(tokens):
        value = 20.0 if m.normal == "二十歳" else m.number
        if value is None or not value.is_integer() or _of_someone_else(tokens, i):
            continue
        counter = m.normal == "二十歳" or (i + 1 < len(tokens) and tokens[i + 1].normal == "歳")
        stated = i > 0 and _topic_before(tokens, i, ("年齢", "年"))
        if not (counter or stated):
            continue
        end = i + 1 if counter and m.normal != "二十歳" else i
        rest = tokens[end + 1 : end + 4]
        after = [t.normal for t in rest]
        if after[:1] and after[0] in AGE_NOT_AFTER:
            continue
        if (
            after[:1] in (["くらい"], ["ぐらい"])
            and after[1:2]
            and after[1] in {"の", *AGE_NOT_AFTER}
        ):
            continue  # 30歳くらいの人, 5歳くらいまで
        # 32歳の女性 is the person; 5歳の娘, 30歳の人 (and a clause cut after の) are not.
        if after[:1] == ["の"] and (len(rest) < 2 or not rest[1].is_noun or after[1] in AGE_NOT_OF):
            continue
        if not negated_after(tokens, end):
            found.append(str(int(value)))
    if not found and asked:
        found = [str(int(v)) for i, m in enumerate(tokens) if (v := _lone(tokens, i)) is not None]
    chosen = pick(found, tokens)
    return int(chosen) if chosen and 0 < int(chosen) < 130 else None


def _topic_before(tokens: Tokens, i: int, words: tuple[str, ...]) -> bool:
    """`年齢は 32`, `年齢: 32`: the numeral follows the topic word (and a particle or colon)."""
    j = i - 1
    if j >= 0 and tokens[j].surface in ("は", ":", "も", "が"):
        j -= 1
    return j >= 0 and tokens[j].normal in words


def _lone(tokens: Tokens, i: int) -> float | None:
    """A bare integer of an age's size (an answer to "おいくつ?")."""
    value = _bare(tokens, i)
    return value if value is not None and 10 <= value < 130 else None


# --- income -----------------------------------------------------------------------------
INCOME_WORDS: Final = frozenset(
    ["年収", "収入", "給料", "給与", "稼ぎ", "手取り", "月収", "月給", "年俸", "所得"]
)
NOT_INCOME: Final = frozenset(
    [
        "貯金",
        "貯蓄",
        "借金",
        "ローン",
        "家賃",
        "資産",
        "車",
        "家",
        "予算",
        "費用",
        "旅行",
        "値段",
        "価格",
        "ボーナス",
        "退職金",
        "奨学金",
    ]
)
RANGE_WORDS: Final = frozenset({"~", "〜", "-", "ー", "から"})
BOUNDS: Final = frozenset({"以上", "以下", "未満"})
MAN: Final = 10_000


def income(tokens: Tokens, *, asked: bool, text: str) -> str | None:
    if asked and lx.INCOME_PRIVATE.search(text):
        return "非公開"
    found: list[str] = []
    keyword, blocked, monthly = asked, False, False
    i = 0
    while i < len(tokens):
        m = tokens[i]
        if m.normal in INCOME_WORDS:
            keyword, blocked, monthly = True, False, m.normal in ("月収", "月給")
        elif m.normal in NOT_INCOME:
            blocked = True
        elif m.surface in "。!?\n":
            keyword, blocked = asked, False
        amount = _amount(tokens, i)
        if amount is None:
            i += 1
            continue
        value, end = amount
        low, j = None, end + 1
        if j < len(tokens) and tokens[j].normal in RANGE_WORDS and (high := _amount(tokens, j + 1)):
            low, (value, end) = value, high
            if low < MAN <= value:  # 600~700万: the first number shares the unit
                low *= MAN
        bound = tokens[end + 1].normal if end + 1 < len(tokens) else ""
        of_thing = bound == "の" and not keyword  # 300万円の車
        yen = tokens[end].normal == "円"  # 500万円です
        money = value >= MAN and (low is None or low >= MAN)
        wanted = keyword or yen
        if money and wanted and not blocked and not of_thing and not negated_after(tokens, end):
            start = f"{_man(low, bare=True)}〜" if low else ""
            found.append(
                f"{'月収' if monthly else ''}{start}{_man(value)}円{bound if bound in BOUNDS else ''}"
            )
        i = end + 1
    if not found and asked:  # a bare number after the income question means 万円
        lone = [int(v) for i in range(len(tokens)) if (v := _bare(tokens, i)) is not None]
        found = [f"{lone[0]}万円"] if lone and 100 <= lone[0] < MAN else []
    return pick(found, tokens)


def _amount(tokens: Tokens, i: int) -> tuple[float, int] | None:
    """A money amount at token i (500万, 500万円, 1.5億) -> (yen, index of its last token)."""
    if i >= len(tokens) or (value := tokens[i].number) is None:
        return None
    end = i
    if end + 1 < len(tokens) and tokens[end + 1].normal in ("万", "億"):  # split units
        end += 1
        value *= MAN if tokens[end].normal == "万" else MAN * MAN
    if end + 1 < len(tokens) and tokens[end + 1].normal == "円":
        end += 1
    if value < MAN and "円" not in (tokens[end].normal,):
        return (value, end) if value >= 1 else None  # a bare number: maybe the low end
    return value, end


def _bare(tokens: Tokens, i: int) -> float | None:
    """An integer with no counter or unit after it ("500", "500くらい")."""
    value = tokens[i].number
    nxt = tokens[i + 1] if i + 1 < len(tokens) else None
    if value is None or not value.is_integer():
        return None
    counted = nxt is not None and (nxt.pos[0] == "接尾辞" or nxt.pos[2].startswith("助数詞"))
    return None if counted else value  # 30代 (助数詞可能) is a counted number too


def _man(yen: float, *, bare: bool = False) -> str:
    """500万 (or 500 as the low end of a range whose high end says 万)."""
    man = yen / MAN if yen >= MAN else yen
    return f"{man:g}" if bare else f"{man:g}万"


# --- location -----------------------------------------------------------------------------
RESIDE_VERBS: Final = frozenset({"住む", "暮らす", "住める", "すむ", "くらす"})
MOVE_VERBS: Final = frozenset({"引っ越す", "越す", "移る", "引越す"})
LIVING_VERBS: Final = RESIDE_VERBS | MOVE_VERBS
RESIDE_NOUNS: Final = frozenset(
    {"在住", "住まい", "移住", "住み", "引っ越し", "独り暮らし", "暮らし"}
)
NOT_PLACE: Final = frozenset(
    [
        "実家",
        "家",
        "自宅",
        "近く",
        "一緒",
        "此処",
        "其処",
        "何処",
        "ここ",
        "そこ",
        "どこ",
        "寮",
        "社宅",
        "アパート",
        "マンション",
        "一戸建て",
        "田舎",
        "都会",
        "郊外",
        "海外",
        "地元",
        "一人",
        "独り暮らし",
        "家族",
        "両親",
        "親",
        "彼女",
        "彼",
        "妻",
        "夫",
        "相手",
        "同じ",
        "所",
        "とこ",
        "方",
        "辺",
        "辺り",
        "周辺",
        "中心",
        "駅",
        "側",
        "隣",
        "今",
        "現在",
        "ずっと",
        "昔",
        "前",
        "以前",
        "最近",
        "主",
        "部屋",
        "賃貸",
        "持ち家",
        "都内",
        "道内",
    ]
)
ADVERBIAL: Final = "副詞可能"


def location(tokens: Tokens, *, asked: bool, text: str) -> Reading | None:
    readings: list[Reading] = []
    cued = False  # a residence was spoken of: places elsewhere in the message are not it
    denied: set[str] = set()  # places said with a denied or past residence
    for i, m in enumerate(tokens):
        verb = m.pos[0] == "動詞" and m.base in LIVING_VERBS
        if not (verb or m.normal in RESIDE_NOUNS):
            continue
        cued = True
        reading = _place_before(tokens, i) or (
            _place_after(tokens, i) if m.normal == "住まい" else None
        )
        if negated_after(tokens, i) or (m.base in RESIDE_VERBS and _past(tokens, i)):
            denied.update([reading.value] if reading else [])
            continue
        if reading:
            readings.append(reading)
    if not readings and asked and (not cued or denied):
        # After "どちらにお住まい?": 「大阪には住んでないです、奈良です」 answers 奈良.
        readings = [r for r in _places_anywhere(tokens) if r.value not in denied]
        if not readings and not cued and (bare := _bare_answer(text)):
            readings = [Reading(bare, sure=False)]
    if not readings:
        return None
    sure = [r for r in readings if r.sure] or readings
    return sure[-1] if correcting(tokens) or len(sure) > 1 else sure[0]


def _past(tokens: Tokens, i: int) -> bool:
    """住んでいた, 住んでました: where the person lived, not where they live."""
    return _said_after(tokens, i, lambda m: m.normal == "た")


def _place_before(tokens: Tokens, i: int) -> Reading | None:
    j = i - 1
    skipped = 0
    while j >= 0 and tokens[j].is_particle and tokens[j].surface in ("に", "で", "へ", "は", "も"):
        j, skipped = j - 1, skipped + 1
    if skipped > 2:
        return None
    run: list[Morpheme] = []
    while j >= 0 and _placeish(tokens[j]):
        run.insert(0, tokens[j])
        j -= 1
    return _reading(run)


def _place_after(tokens: Tokens, i: int) -> Reading | None:
    j = i + 1
    while j < len(tokens) and (tokens[j].is_particle or tokens[j].surface == ":"):
        j += 1
    run: list[Morpheme] = []
    while j < len(tokens) and _placeish(tokens[j]):
        run.append(tokens[j])
        j += 1
        if j + 1 < len(tokens) and tokens[j].surface == "の" and tokens[j + 1].is_place:
            run, j = [], j + 1  # 千葉の船橋: the more precise place
    return _reading(run)


def _places_anywhere(tokens: Tokens) -> list[Reading]:
    """After "どちらにお住まい?": the place names said, except those denied or only passed."""
    readings, run = [], []
    for j, m in enumerate([*tokens, None]):
        if m is not None and _placeish(m):
            run.append(m)
            continue
        after = m.normal if m is not None else ""
        passing = after in ("出身", "生まれ", "育ち", "旅行") or negated_after(tokens, j - 1)
        if run and not passing and (reading := _reading(run)) and reading.sure:
            readings.append(reading)
        run = []
    return readings


def _placeish(m: Morpheme) -> bool:
    if m.is_place or (m.surface in SUFFIXES and m.pos[0] in ("接尾辞", "名詞")):
        return True
    if m.normal in NOT_PLACE and m.surface not in lx.LOCATION_ALIASES:
        return False
    return m.is_noun and m.pos[1] in ("固有名詞", "普通名詞") and m.pos[2] != ADVERBIAL


def _reading(run: list[Morpheme]) -> Reading | None:
    while run and not run[0].is_place and run[0].surface in SUFFIXES:
        run = run[1:]
    if not run:
        return None
    value = "".join(m.surface for m in run)
    if alias := lx.LOCATION_ALIASES.get(value):
        return Reading(alias, sure=True)
    if len(run) == 2 and run[1].surface in "都府県市" and run[0].surface in lx.KNOWN_PLACES:
        value = run[0].surface  # 神奈川県 -> 神奈川, 横浜市 -> 横浜
    if len(value) > 20 or not lx.NAME_WORD.fullmatch(value):
        return None
    if lx.NOT_A_PLACE.search(value):
        return None
    return Reading(value, sure=any(m.is_place for m in run) or value in lx.KNOWN_PLACES)


def _bare_answer(text: str) -> str | None:
    bare = lx.TAIL.sub("", text.strip(" 。!?"))
    if lx.NOT_AN_ANSWER.search(text) or len(bare) > 10 or not lx.NAME_WORD.fullmatch(bare):
        return None
    return None if lx.NOT_A_PLACE.search(bare) else bare


# --- children -------------------------------------------------------------------------------
BOY: Final = frozenset(["男の子", "息子", "長男", "次男", "三男", "男児", "男"])
GIRL: Final = frozenset(["女の子", "娘", "長女", "次女", "三女", "女児", "女"])
COUNTS: Final = MappingProxyType(
    {"一人": 1, "二人": 2, "三人": 3, "四人": 4, "五人": 5, "双子": 2, "三つ子": 3}
)


def child_genders(tokens: Tokens) -> list[str]:
    """Children given by count and gender: 男の子2人と女の子1人, 子ども3人（男2女1）,
    息子が二人, 男女一人ずつ, 2人の娘. Empty when no count is said."""
    out: list[str] = []
    each = any(m.normal == "ずつ" for m in tokens)
    pending: list[str] = []  # genders named, waiting for their count
    for i, m in enumerate(tokens):
        gender = _gender(m)
        if gender:
            pending += gender
            continue
        count = _count(tokens, i)
        if count is None:
            if not (m.is_particle or m.is_symbol):
                pending = [] if m.normal not in ("子", "子供") else pending
            continue
        if pending:
            for g in pending if each else pending[-1:]:
                out += [g] * count
            pending = []
        elif i + 2 < len(tokens) and tokens[i + 1].normal == "の":  # 3人の娘
            out += _gender(tokens[i + 2]) * count
    return out[:10]


def _gender(m: Morpheme) -> list[str]:
    if m.normal == "男女":
        return ["男の子", "女の子"]
    if m.normal in BOY:
        return ["男の子"]
    if m.normal in GIRL:
        return ["女の子"]
    return []


def _count(tokens: Tokens, i: int) -> int | None:
    m = tokens[i]
    if m.normal in COUNTS:
        return COUNTS[m.normal]
    value = m.number
    if value is None or not value.is_integer() or not 0 < value <= 5:
        return None
    nxt = tokens[i + 1].normal if i + 1 < len(tokens) else ""
    # 3人 / 男2女1 (a bare digit right after a gender word)
    after_gender = i > 0 and bool(_gender(tokens[i - 1]))
    return int(value) if nxt == "人" or after_gender else None


# --- free text ------------------------------------------------------------------------------
FRAME_WORDS: Final = tuple(
    sorted(
        [
            "理想",
            "相手",
            "お相手",
            "彼女",
            "彼氏",
            "彼",
            "妻",
            "夫",
            "奥さん",
            "奥様",
            "旦那",
            "主人",
            "パートナー",
            "恋人",
            "人",
            "方",
            "顔",
            "お顔",
            "顔立ち",
            "顔つき",
            "特徴",
            "見た目",
            "外見",
            "容姿",
            "イメージ",
            "感じ",
            "雰囲気",
            "の",
            "は",
            "が",
            ":",
            "、",
            ",",
            "さん",
        ],
        key=len,
        reverse=True,
    )
)


def description(tokens: Tokens) -> str:
    """Free text without the frame around it: "相手の顔の特徴は、切れ長の目です" -> 切れ長の目."""
    start = 0
    for i, m in enumerate(tokens):
        if m.surface in ("は", "が", ":") and _frame("".join(t.surface for t in tokens[:i])):
            start = i + 1
    text = "".join(m.surface for m in tokens[start:]).strip("、, ")
    return lx.TAIL.sub("", text).strip("、, ")


def _frame(prefix: str) -> bool:
    """Whether `prefix` only names what is described (相手の顔の特徴, 見た目)."""
    while prefix:
        word = next((w for w in FRAME_WORDS if prefix.startswith(w)), None)
        if word is None:
            return False
        prefix = prefix[len(word) :]
    return True


def variant_text(tokens: Tokens) -> str:
    """The text with kana-spelled nouns and na-adjectives in their normal spelling
    (きちょうめん -> 几帳面, こども -> 子供), so word lists need one spelling."""
    return "".join(
        m.normal
        if m.pos[0] in ("名詞", "形状詞") and lx.HIRAGANA_WORD.fullmatch(m.surface)
        else m.surface
        for m in tokens
    )
